#!/usr/bin/env bash
# bench/prefix: what computing each shared prompt prefix once buys, in one run, on two sets:
#   sample_logs  the workflow operator's send_email cluster (1.0-1.6 KB prompts, short answers),
#                steps of 32 examples (micro-batches of 4, 8 accumulated: each prefix runs once a step);
#   sample_logs_b4  the same cluster in steps of one micro-batch of 4 (finetune only);
#   long_prefix  bench/prefix/long_prefix.py: one airline-support agent node, a 4 KB policy and 14
#                tool schemas opening every call, short requests, one tool call as the answer.
# Per set, on SmolLM2-135M-Instruct:
#   finetune  slmctl with shared prefixes vs --no-share-prefixes on the same micro-batches (the
#             step time ratio; tokens processed vs per call), and HF transformers + PEFT (fp32) on the
#             batches slmctl dumped;
#   eval      slmctl eval --variants base with and without sharing (generation calls/s, prompt tokens
#             prefilled), and HF transformers `generate` on the prompts slmctl dumped.
# Usage: bench/prefix/run.sh [build] [finetune-steps] [eval-calls-per-cluster] [sets...]
# Needs a venv with torch (CPU), transformers, peft, gguf: PEER_PYTHON, else /work/venv-ref/bin/python.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
steps=${2:-3}
calls=${3:-8}
shift $(( $# < 3 ? $# : 3 ))
sets=("$@")
[[ ${#sets[@]} -gt 0 ]] || sets=(sample_logs long_prefix)
slm=$build/slmctl
py=${PEER_PYTHON:-/work/venv-ref/bin/python}
out=bench/out/prefix
mkdir -p "$out"
models=$(scripts/fetch-models.sh)
gguf="$models/SmolLM2-135M-Instruct.Q4_1.gguf"
load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(date -u '+%F %H:%M') UTC"
python3 bench/prefix/long_prefix.py --calls 240 > "$out/long_prefix.jsonl"
for set in "${sets[@]}"; do
  case $set in
    sample_logs) logs=sample_logs/workflow_operator.jsonl; pick=send_email; bs=4; accum=8; rows=0 ;;
    sample_logs_b4) logs=sample_logs/workflow_operator.jsonl; pick=send_email; bs=4; accum=1; rows=0 ;;
    # the peer runs these one row per forward (same step, gradients accumulated): four 2450-token
    # rows with full fp32 logits in one forward ran out of 24 GB
    long_prefix) logs=$out/long_prefix.jsonl; pick=""; bs=4; accum=1; rows=1 ;;
    *) echo "unknown set $set (sample_logs, sample_logs_b4, long_prefix)" >&2; exit 2 ;;
  esac
  d=$out/$set
  rm -rf "$d"; mkdir -p "$d"
  db=$d/bench.db
  "$slm" collect "$logs" --db "$db" -q >/dev/null
  "$slm" cluster --db "$db" --json > "$d/cluster.json"
  cluster=$(python3 - "$d/cluster.json" "$pick" <<'PY'
import json, sys
cs = [c for c in json.load(open(sys.argv[1]))["clusters"] if c["id"] >= 0]
pick = sys.argv[2]
c = next(c for c in cs if c["label"].startswith(pick)) if pick else max(cs, key=lambda c: c["size"])
print(c["id"])
PY
)
  ft="finetune --db $db --cluster $cluster --max-steps $steps --batch-size $bs --grad-accum $accum --rank 8 --alpha 16 --lr 2e-4 \
      --eval-every 0 --val-max 2 --max-tokens 4096 --seed 1 --json -q"
  echo "== $set: cluster $cluster, finetune $steps steps of $accum micro-batch(es) of $bs (load $(load))"
  "$slm" $ft --out "$d/ad-shared" --dump-batches "$d/batches.jsonl" > "$d/ft-shared.json"
  "$slm" $ft --out "$d/ad-plain" --no-share-prefixes > "$d/ft-plain.json"
  echo "   transformers + peft fp32 on the same batches (load $(load))"
  "$py" bench/finetune/peer_peft.py --gguf "$gguf" --batches "$d/batches.jsonl" --dtype fp32 --rank 8 --alpha 16 \
    --dropout 0 --lr 2e-4 --rows-per-forward $rows > "$d/peer-ft.json"
  python3 - "$d" "$set" <<'PY'
import json, sys
d, name = sys.argv[1:3]
J = lambda f: json.load(open(f"{d}/{f}"))
fs, fp, pf = J("ft-shared.json")["train"], J("ft-plain.json")["train"], J("peer-ft.json")
step = lambda t: t["train_s"] / max(1, t["steps"])
print(f"{name} finetune: tokens processed {fs['tokens']} of {fs['per_call_tokens']} per call "
      f"= {fs['tokens'] / fs['per_call_tokens']:.3f}x")
print(f"  step time: shared {step(fs):.2f} s, per-call {step(fp):.2f} s, peft fp32 {pf['train_s'] / pf['steps']:.2f} s"
      f"  -> speed-up {step(fp) / step(fs):.2f}x over per-call, {pf['train_s'] / pf['steps'] / step(fs):.2f}x over peft")
fmt = lambda xs: " ".join("%.4f" % x for x in xs)
print("  losses shared", fmt(c["train_loss"] for c in fs["curve"][1:]))
print("  losses plain ", fmt(c["train_loss"] for c in fp["curve"][1:]))
print("  losses peft  ", fmt(pf["losses"]))
PY
  if [[ $set == sample_logs_b4 ]]; then continue; fi  # the same eval as sample_logs
  ev="eval --db $db --all --variants base --max-calls $calls --batch-size 8 --max-prompt-tokens 4096 --base $gguf --json -q"
  echo "   eval base, $calls test calls per cluster (load $(load))"
  "$slm" $ev --dump-prompts "$d/prompts-shared.jsonl" > "$d/ev-shared.json"
  "$slm" $ev --no-share-prefixes --dump-prompts "$d/prompts-plain.jsonl" > "$d/ev-plain.json"
  echo "   transformers generate on the same prompts (load $(load))"
  "$py" bench/eval/peer_hf.py --gguf "$gguf" --prompts "$d/prompts-shared.jsonl" > "$d/peer-ev.json"
  echo "   (load $(load))"
  python3 - "$d" "$set" <<'PY'
import json, sys
d, name = sys.argv[1:3]
J = lambda f: json.load(open(f"{d}/{f}"))
es, ep, ph = J("ev-shared.json"), J("ev-plain.json"), J("peer-ev.json")
t = es["tokens"]
print(f"{name} eval: {t['calls']} calls, prompt tokens prefilled {t['prefill_tokens']} of {t['prompt_tokens']} "
      f"= {t['prefill_share']:.3f}x ({t['cached_tokens']} from the prefix cache); with the {t['generated_tokens']} "
      f"generated: {t['processed_share']:.3f}x of per-call processing")
def gen(f):
    bs = [json.loads(l) for l in open(f"{d}/{f}")]
    return sum(len(b["prompts"]) for b in bs), sum(b["seconds"] for b in bs)
# the floor for any prefix sharing: every distinct token prefix of the set's prompts computed once
# (a trie over all of them, as if the cache held everything), plus the generated tokens
trie, nodes = {}, 0
for b in (json.loads(l) for l in open(f"{d}/prompts-shared.jsonl")):
    for p in b["prompts"]:
        node = trie
        for x in p:
            if x not in node:
                node[x] = {}
                nodes += 1
            node = node[x]
print(f"  floor (each distinct prefix once over the whole set): prompt {nodes / t['prompt_tokens']:.3f}x, "
      f"with the generated {(nodes + t['generated_tokens']) / t['per_call_tokens']:.3f}x")
n, s_sh = gen("prompts-shared.jsonl")
n2, s_pl = gen("prompts-plain.jsonl")
print(f"  generation: shared {n / s_sh:.3f} calls/s ({s_sh:.1f} s), per-call {n2 / s_pl:.3f} calls/s ({s_pl:.1f} s), "
      f"HF generate {ph['rows'] / ph['seconds']:.3f} calls/s ({ph['seconds']:.1f} s)"
      f"  -> speed-up {s_pl / s_sh:.2f}x over per-call, {ph['seconds'] / s_sh:.2f}x over HF")
va = {c["idx"]: c for c in es["clusters"]}
vb = {c["idx"]: c for c in ep["clusters"]}
agree = [(x["value"], y["value"]) for i in va for x in va[i]["variants"] for y in vb.get(i, {"variants": []})["variants"]]
print(f"  base metric shared vs per-call per cluster: {' '.join(f'{a:.2f}/{b:.2f}' for a, b in agree)}; "
      f"HF first tokens equal to slmctl's: {ph['first_match']} of {ph['rows']}")
PY
done
