#!/usr/bin/env bash
# Platform figures for bench/RESULTS.md (issue #9): fp32/bf16 matmul peaks from C++ through the pinned
# libtorch, what `--dtype auto` picks for SmolLM2 here (a fresh probe), and start-up times of commands
# that need no tensors vs one that loads the tensor half (libtorch). Usage: bench/platform/run.sh [build]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
slm=$build/slmctl
out=bench/out/platform
mkdir -p "$out"
lt=$(scripts/fetch-libtorch.sh)
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== matmul (1024, N) x (N, N) from C++, libtorch $(cat "$lt/VERSION")"
for t in 1 2; do bench/platform/matmul.sh "$out" 1024 576,1536,2048 $t; done
echo "== --dtype auto for SmolLM2-135M (fresh probe, empty cache)"
models=$(scripts/fetch-models.sh)
SLMCTL_CACHE=$(mktemp -d) "$slm" model info "$models/SmolLM2-135M-Instruct.Q4_1.gguf" --json |
  python3 -c 'import json,sys; j=json.load(sys.stdin); print(json.dumps(j["dtype_choice"]))'
echo "== start-up (best and median of 15 runs, seconds)"
db=$(mktemp -d)/s.db
"$slm" collect sample_logs/bad/malformed.jsonl --db "$db" -q >/dev/null 2>&1 || true
python3 - "$slm" "$db" <<'PY'
import subprocess, sys, time, statistics
slm, db = sys.argv[1], sys.argv[2]
cases = {
    "slmctl --version": [slm, "--version"],
    "slmctl db info": [slm, "db", "info", "--db", db],
    "slmctl collect (9 lines, new db)": None,
    "slmctl model --help (loads libtorch)": [slm, "model", "--help"],
}
import os, tempfile
for name, cmd in cases.items():
    ts = []
    for i in range(15):
        if cmd is None:
            d = tempfile.mkdtemp()
            c = [slm, "collect", "sample_logs/bad/malformed.jsonl", "--db", os.path.join(d, "c.db"), "-q"]
        else:
            c = cmd
        t0 = time.perf_counter()
        subprocess.run(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ts.append(time.perf_counter() - t0)
    print(f"{name:40s} best {min(ts):.3f}  median {statistics.median(ts):.3f}")
PY
