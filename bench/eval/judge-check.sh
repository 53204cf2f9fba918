#!/usr/bin/env bash
# Dev-time check (not in CI): `slmctl eval --judge` against a real OpenAI-compatible server, the one
# in llama-cpp-python 0.3.36 (PyPI), serving SmolLM2-135M-Instruct's GGUF as the judge, on the prose
# test calls of sample_logs' workflow operator. Prints per call the judge's reply and the score eval
# read from it (or why none), then each cluster's judge score beside its chrF.
#
#   bench/eval/judge-check.sh [build] [calls-per-cluster] [port]
# llama-cpp-python is an sdist: the first run builds llama.cpp (10-20 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
n=${2:-4}
port=${3:-18080}
venv=${SLMCTL_LLAMA_VENV:-$HOME/.cache/slmctl/venv-llama-cpp}
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import llama_cpp.server' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'llama-cpp-python[server]==0.3.36'
fi
gguf=$(scripts/fetch-models.sh)/SmolLM2-135M-Instruct.Q4_1.gguf
out=bench/out/judge
mkdir -p "$out"
db="$out/judge.db"
rm -f "$db" "$db"-*
"$venv/bin/python" -m llama_cpp.server --model "$gguf" --host 127.0.0.1 --port "$port" --n_ctx 4096 \
  --n_threads 1 >"$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/v1/models', timeout=2)" 2>/dev/null; then
    break
  fi
  sleep 1
done
"$build/slmctl" collect sample_logs/workflow_operator.jsonl --db "$db" -q >/dev/null
"$build/slmctl" cluster --db "$db" -q >/dev/null
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%F)"
echo "== slmctl eval --kind prose --variants base --max-calls $n --judge http://127.0.0.1:$port"
t0=$(date +%s)
"$build/slmctl" eval --db "$db" --all --kind prose --variants base --max-calls "$n" --threshold min_calls=1 \
  --judge "http://127.0.0.1:$port" --judge-model smollm2-135m --threads 1 --json >"$out/eval.json"
echo "eval took $(( $(date +%s) - t0 )) s"
python3 - "$db" "$out/eval.json" <<'PY'
import json, sqlite3, sys
d = sqlite3.connect(sys.argv[1])
rep = json.load(open(sys.argv[2]))
rows = d.execute("SELECT call_id, judge_score, details, output FROM eval_results WHERE run_id = ? ORDER BY call_id",
                 (rep["run_id"],)).fetchall()
scored = 0
for call, js, det, out in rows:
    det = json.loads(det)
    j = det.get("judge")
    if j is None:
        continue
    scored += js is not None
    reply = (j.get("reply") or "").replace("\n", " ")[:110]
    print(f"call {call:5d}  chrF {det.get('chrf', 0):.2f}  judge {'-' if js is None else f'{js:.2f}'}"
          f"  reply: {reply!r}{'  (' + j['error'] + ')' if 'error' in j else ''}")
print(f"{scored} of {sum(1 for r in rows if 'judge' in json.loads(r[2]))} answers got a score")
def iv(x):
    return "-" if not x else "%.2f [%.2f, %.2f]" % (x["value"], x["lo"], x["hi"])
for c in rep["clusters"]:
    for v in c.get("variants", []):
        print(f"cluster {c['idx']:3d} {c['label'][:30]:30s} n {v['n']:2d}  judge {iv(v.get('judge'))}"
              f"  chrF {iv(v.get('chrf'))}  no score {v.get('judge_failed', 0)}  main: {v['metric']}")
PY
