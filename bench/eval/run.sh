#!/usr/bin/env bash
# bench/eval: calls/s of `slmctl eval` (base variant, greedy, batched) on a fixed set of held-out
# calls, side by side with the very same replay through HF transformers `generate`: slmctl dumps
# each generation batch (prompt ids, new-token limit: --dump-prompts) and peer_hf.py runs those
# batches with the same limits, greedy, left-padded, the same GGUF dequantized by transformers.
# Both sides count wall time of generation only (slmctl's tokenization and scoring excluded from
# its batch seconds too). Set: sample_logs' workflow operator, every cluster, N test calls each.
# Usage: bench/eval/run.sh [build] [calls-per-cluster]. Needs /work/venv-ref (torch, transformers, gguf).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
n=${2:-8}
slm=$build/slmctl
py=${PEER_PYTHON:-/work/venv-ref/bin/python}
out=bench/out/eval
mkdir -p "$out"
models=$(scripts/fetch-models.sh)
gguf="$models/SmolLM2-135M-Instruct.Q4_1.gguf"
db="$out/bench.db"
rm -f "$db" "$db"-* "$out/prompts.jsonl"
"$slm" collect sample_logs/workflow_operator.jsonl --db "$db" -q >/dev/null
"$slm" cluster --db "$db" -q >/dev/null
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%F)"
echo "== slmctl eval --variants base, $n test calls per cluster, batch 8"
t0=$(date +%s.%N)
"$slm" eval --db "$db" --all --variants base --max-calls "$n" --batch-size 8 --base "$gguf" \
  --dump-prompts "$out/prompts.jsonl" --json -q > "$out/slm.json"
t1=$(date +%s.%N)
echo "== transformers generate on the same batches"
"$py" bench/eval/peer_hf.py --gguf "$gguf" --prompts "$out/prompts.jsonl" > "$out/peer.json"
python3 - "$out" "$t0" "$t1" <<'PY'
import json, sys
out, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
batches = [json.loads(l) for l in open(f"{out}/prompts.jsonl")]
calls = sum(len(b["prompts"]) for b in batches)
slm_gen = sum(b["seconds"] for b in batches)
slm_tok = sum(b["generated_tokens"] for b in batches)
p = json.load(open(f"{out}/peer.json"))
print(f"calls {calls} in {len(batches)} batches, prompt tokens {sum(len(x) for b in batches for x in b['prompts'])}")
print(f"slmctl  generation {slm_gen:7.1f} s  {calls / slm_gen:6.2f} calls/s  {slm_tok / slm_gen:7.1f} new tok/s"
      f"   (whole `slmctl eval` command: {float(t1) - float(t0):.1f} s)")
print(f"HF      generation {p['seconds']:7.1f} s  {calls / p['seconds']:6.2f} calls/s  {p['generated_tokens'] / p['seconds']:7.1f} new tok/s")
print(f"ratio   slmctl / HF calls/s: {p['seconds'] / slm_gen:.2f}x   (goal >= 3x)")
print(f"same first answer tokens: {p['first_match']} of {calls} calls")
PY
