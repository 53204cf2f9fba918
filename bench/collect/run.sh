#!/usr/bin/env bash
# bench/collect/run.sh [SIZE_MB]: generates a log of at least SIZE_MB (default 1024) with the
# sample_logs generator, then runs `slmctl collect --threads 1` and the Python baseline
# (baseline.py: json + re + sqlite3) on the same file and prints MB/s for both and the ratio.
#
# env: SLMCTL (default build/slmctl), BENCH_DIR (default a fresh /tmp dir), KEEP=1 keeps it,
#      SKIP_BASELINE=1 runs slmctl only, THREADS (default 1) for slmctl.
set -euo pipefail

SIZE_MB=${1:-1024}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SLMCTL=${SLMCTL:-$ROOT/build/slmctl}
THREADS=${THREADS:-1}
WORK=${BENCH_DIR:-$(mktemp -d /tmp/slmctl-bench-collect.XXXXXX)}
mkdir -p "$WORK"
[ -x "$SLMCTL" ] || { echo "error: $SLMCTL is not built (set SLMCTL=...)" >&2; exit 1; }
cleanup() { [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"; }
trap cleanup EXIT

# about 2 KB per generated call (5 main files); a few percent more so the file reaches SIZE_MB
CALLS=$(( SIZE_MB * 1000000 / 1950 + 100 ))
LOG=$WORK/bench.jsonl
if [ ! -s "$LOG" ] || [ "$(stat -c %s "$LOG")" -lt $(( SIZE_MB * 1000000 )) ]; then
    echo "generating $CALLS calls into $WORK/gen ..." >&2
    python3 "$ROOT/sample_logs/gen/generate.py" --calls "$CALLS" --out "$WORK/gen" >&2
    # the five log files and the malformed-lines file (labels.jsonl and README.md are not logs)
    cat "$WORK/gen/software_company.jsonl" "$WORK/gen/workflow_operator.jsonl" "$WORK/gen/gui_controller.jsonl" \
        "$WORK/gen/legacy_functions.jsonl" "$WORK/gen/finetune_form.jsonl" "$WORK/gen/bad/malformed.jsonl" > "$LOG"
    rm -rf "$WORK/gen"
fi
BYTES=$(stat -c %s "$LOG")
MB=$(python3 -c "print(f'{$BYTES/1e6:.1f}')")
echo "input: $LOG, $MB MB, $(wc -l < "$LOG") lines" >&2
cat "$LOG" > /dev/null  # both runs start with the file in the page cache

rm -f "$WORK"/slm.db*
echo "slmctl collect --threads $THREADS ..." >&2
# CPU seconds (user + sys) beside the wall clock: on a shared machine the wall clock also measures
# how much of a core the run was given. slmctl's CPU includes its start (libtorch loading, ~0.5 s),
# which matters only for small inputs; its MB/s uses the collect time from its summary.
cpu_of() { python3 -c "u, s = open('$1').read().split()[:2]; print(f'{float(u) + float(s):.1f}')"; }
/usr/bin/time -f "%U %S" -o "$WORK/slm.time" \
    "$SLMCTL" --db "$WORK/slm.db" --threads "$THREADS" -q collect --json "$LOG" > "$WORK/slm.json"
SLM_S=$(python3 -c "import json; print(json.load(open('$WORK/slm.json'))['seconds'])")
SLM_MBS=$(python3 -c "print(f'{$BYTES/1e6/$SLM_S:.1f}')")
SLM_CPU=$(cpu_of "$WORK/slm.time")
echo "slmctl:   $SLM_MBS MB/s ($SLM_S s wall, $SLM_CPU s CPU = $(python3 -c "print(f'{$BYTES/1e6/$SLM_CPU:.1f}')") MB per CPU-second)" \
     "$(python3 -c "import json; d=json.load(open('$WORK/slm.json')); print({k: d[k] for k in ('ingested','duplicate','quarantined')})")"

if [ "${SKIP_BASELINE:-0}" != 1 ]; then
    rm -f "$WORK"/py.db*
    "$SLMCTL" --db "$WORK/py.db" -q db init > /dev/null
    echo "python baseline ..." >&2
    /usr/bin/time -f "%U %S" -o "$WORK/py.time" \
        python3 "$ROOT/bench/collect/baseline.py" --db "$WORK/py.db" "$LOG" > "$WORK/py.json"
    PY_S=$(python3 -c "import json; print(json.load(open('$WORK/py.json'))['seconds'])")
    PY_MBS=$(python3 -c "print(f'{$BYTES/1e6/$PY_S:.2f}')")
    PY_CPU=$(cpu_of "$WORK/py.time")
    echo "baseline: $PY_MBS MB/s ($PY_S s wall, $PY_CPU s CPU = $(python3 -c "print(f'{$BYTES/1e6/$PY_CPU:.2f}')") MB per CPU-second)" \
         "$(python3 -c "import json; d=json.load(open('$WORK/py.json')); print({k: d[k] for k in ('ingested','duplicate','quarantined')})")"
    echo "ratio:    $(python3 -c "print(f'{$PY_S/$SLM_S:.1f}')")x wall, $(python3 -c "print(f'{$PY_CPU/$SLM_CPU:.1f}')")x CPU (input $MB MB, slmctl --threads $THREADS)"
fi
