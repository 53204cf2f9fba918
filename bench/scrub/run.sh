#!/usr/bin/env bash
# bench/scrub/run.sh [SLMCTL...]: collect MB/s on ~55 MB of long-prompt (20 KB) logs, --threads 1,
# wall and CPU (user+sys), for each slmctl binary given (default build/slmctl), 3 runs each, on two
# files: long.jsonl (every call's policy text drawn anew: nothing repeats, the worst case) and
# same.jsonl (one policy per agent node, as a real agent's logs hold it).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/slmctl-bench-scrub.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
python3 "$ROOT/bench/scrub/long_prompts.py" "$WORK/long.jsonl" "${SIZE_MB:-55}" >&2
python3 "$ROOT/bench/scrub/long_prompts.py" "$WORK/same.jsonl" "${SIZE_MB:-55}" --same-policy >&2
for file in long same; do
BYTES=$(stat -c %s "$WORK/$file.jsonl")
cat "$WORK/$file.jsonl" > /dev/null
echo "== $file.jsonl"
for bin in "${@:-$ROOT/build/slmctl}"; do
    for run in 1 2 3; do
        rm -f "$WORK"/b.db*
        /usr/bin/time -f "%U %S" -o "$WORK/t" "$bin" --db "$WORK/b.db" --threads 1 -q collect --json "$WORK/$file.jsonl" > "$WORK/s.json"
        python3 - "$bin" "$BYTES" "$WORK/s.json" "$WORK/t" <<'PY'
import json, sys
b, n, s, t = sys.argv[1], int(sys.argv[2]), json.load(open(sys.argv[3])), open(sys.argv[4]).read().split()
cpu = float(t[0]) + float(t[1])
print(f"{b}: {n/1e6:.1f} MB  {n/1e6/s['seconds']:.1f} MB/s wall ({s['seconds']:.2f} s)  {n/1e6/cpu:.1f} MB per CPU-s ({cpu:.2f} s user+sys, incl. start)  scrubbed {sum(s['scrubbed_by_kind'].values())}")
PY
    done
done
done
