#!/usr/bin/env bash
# The README's demo command: the whole pipeline on sample_logs/ with SmolLM2-135M-Instruct.
# Stages that are not built yet are reported as such (exit 2 from slmctl), not faked.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
scripts/build.sh >/dev/null
models=$(scripts/fetch-models.sh)
slm=./build/slmctl
db=${DEMO_DB:-build/demo.db}
rm -f "$db" "$db-wal" "$db-shm"
export SLMCTL_DB=$db

step() { echo; echo "== $*"; }
try() {  # runs a stage; an unbuilt stage (exit 2) is reported and the demo goes on
  set +e
  "$@"
  rc=$?
  set -e
  if [[ $rc -eq 2 ]]; then echo "   (stage not built yet: skipped)"; elif [[ $rc -ne 0 ]]; then exit $rc; fi
}

step "slmctl --version"
$slm --version
step "S1+S2 collect: ingest sample_logs/ (scrub, validate, dedupe, quarantine)"
# every log file, bad/ included (its malformed lines land in quarantine); labels.jsonl is ground
# truth for tests and benches, not a log
logs=$(find sample_logs -name '*.jsonl' ! -name labels.jsonl | sort)
try $slm collect $logs
step "S3 cluster: recurring tasks and their SLM suitability"
try $slm cluster
step "S4 select: candidate small models per cluster (catalog + the local SmolLM2, probed on 2 val calls each)"
try $slm select --all --models "$models/SmolLM2-135M-Instruct.Q4_1.gguf" --no-cache --probe 2 --probe-max-tokens 64 --top 3
step "S5 finetune: LoRA on the two most suitable tool-call clusters (bounded for the demo: 16 steps of 4 calls, at most 5 minutes each)"
# the two clusters with the highest SLM suitability among tool-call clusters with at least 80 calls
run=$($slm db info --json | python3 -c 'import json,sys; print([r["id"] for r in json.load(sys.stdin)["runs"] if r["command"]=="cluster" and r["status"]=="ok"][-1])')
clusters=$($slm cluster --run "$run" --json | python3 -c '
import json, sys
cs = [c for c in json.load(sys.stdin)["clusters"] if c["id"] >= 0 and c["size"] >= 80
      and (c.get("stats") or {}).get("tool_call_share", 0) >= 0.8]
cs.sort(key=lambda c: -(c["suitability"] or 0))
print(" ".join(str(c["id"]) for c in cs[:2]))')
for cluster in $clusters; do
  try $slm finetune --cluster "$cluster" --base "$models/SmolLM2-135M-Instruct.Q4_1.gguf" --max-steps 16 \
    --batch-size 4 --max-tokens 768 --eval-every 8 --val-max 8 --lr 2e-3 --time-budget 5 --format both
done
step "eval: held-out calls, small model (base / icl / customized) vs the logged LLM answers (4 test calls per cluster)"
try $slm eval --all --max-calls 4 --html build/demo-report.html --md build/demo-report.md
echo "   HTML report: $(pwd)/build/demo-report.html"
step "the base model itself"
try $slm model info "$models/SmolLM2-135M-Instruct.Q4_1.gguf"
try $slm model generate "$models/SmolLM2-135M-Instruct.Q4_1.gguf" --chat "What is the capital of France?" --max-tokens 32
step "database"
$slm db info
