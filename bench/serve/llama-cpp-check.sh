#!/usr/bin/env bash
# Dev-time check (not in CI): llama.cpp, through llama-cpp-python 0.3.36 from PyPI (its Python API and
# its server), loads a GGUF LoRA adapter that `slmctl finetune --format gguf` wrote, next to SmolLM2's
# GGUF, and answers held-out calls of the adapter's cluster with it; compared with the same GGUF
# without the adapter and with slmctl's own answers (bench/serve/llama_cpp_check.py).
#
#   bench/serve/llama-cpp-check.sh [DB] [CLUSTER] [TOOL]   (default: build/demo.db after `make demo`,
#                                                            its send_sms cluster)
# llama-cpp-python is an sdist: the first run builds llama.cpp (about 10 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
db=${1:-build/demo.db}
tool=${3:-send_sms}
venv=${SLMCTL_LLAMA_VENV:-$HOME/.cache/slmctl/venv-llama-cpp}
base=$(scripts/fetch-models.sh)/SmolLM2-135M-Instruct.Q4_1.gguf
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import llama_cpp' 2>/dev/null; then
  python3 -m venv "$venv"
  CMAKE_ARGS="-DGGML_NATIVE=ON" "$venv/bin/pip" install -q 'llama-cpp-python[server]==0.3.36'
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$db" "$work/check.db"
cluster=${2:-$(build/slmctl cluster --db "$work/check.db" --run "$(python3 -c "
import sqlite3; print(sqlite3.connect('$work/check.db').execute(\"SELECT MAX(id) FROM runs WHERE command='cluster' AND status='ok'\").fetchone()[0])")" --json |
  python3 -c "import json,sys; print([c['id'] for c in json.load(sys.stdin)['clusters'] if c['label'].startswith('$tool')][0])")}
build/slmctl eval --db "$work/check.db" --cluster "$cluster" --variants customized --max-calls 10 \
  --dump-prompts "$work/prompts.jsonl" --json -q >"$work/eval.json"
adapter=$(python3 -c "
import json, os; v = json.load(open('$work/eval.json'))['clusters'][0]['variants'][0]['adapter']
print(v if v.endswith('.gguf') else os.path.join(v, 'adapter.gguf'))")
python3 -c "
import json, sqlite3
d = sqlite3.connect('$work/check.db')
run = json.load(open('$work/eval.json'))['run_id']
json.dump([o for (o,) in d.execute('SELECT output FROM eval_results WHERE run_id = ?', (run,))], open('$work/ours.json', 'w'))"
echo "adapter: $adapter"
"$venv/bin/python" bench/serve/llama_cpp_check.py "$base" "$adapter" "$work/prompts.jsonl" "$tool" "$work/ours.json"
