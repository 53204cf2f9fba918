#!/usr/bin/env bash
# Dev-time check (not in CI): llama.cpp's server, through llama-cpp-python from PyPI, loads a GGUF LoRA
# adapter that `slmctl finetune --format gguf` wrote, next to SmolLM2's GGUF, and answers a chat request
# with it; the adapter changes the answer (greedy, same prompt, with and without the adapter).
#
#   bench/serve/llama-cpp-check.sh [ADAPTER.gguf]    (default: the first adapter of build/demo.db)
#
# Needs a C++ compiler: llama-cpp-python is an sdist, pip builds llama.cpp (a few minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${SLMCTL_LLAMA_VENV:-$HOME/.cache/slmctl/venv-llama-cpp}
base=${BASE:-$(scripts/fetch-models.sh)/SmolLM2-135M-Instruct.Q4_1.gguf}
adapter=${1:-}
if [[ -z "$adapter" ]]; then
  adapter=$(python3 - <<'PY'
import json, sqlite3
d = sqlite3.connect("build/demo.db")
for (p,) in d.execute("SELECT path FROM adapters ORDER BY id"):
    import os
    g = p if p.endswith(".gguf") else os.path.join(p, "adapter.gguf")
    if os.path.exists(g):
        print(g); break
PY
)
fi
[[ -f "$adapter" ]] || { echo "error: no GGUF adapter (give one, or run make demo first)" >&2; exit 1; }
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'llama-cpp-python[server]==0.3.36'
fi
port=${PORT:-8765}
"$venv/bin/python" -m llama_cpp.server --model "$base" --lora_path "$adapter" --n_ctx 2048 --port "$port" \
  --chat_format chatml >/tmp/llama-cpp-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null && break
  sleep 1
done
grep -i "lora" /tmp/llama-cpp-server.log | head -5 || true
prompt=$(python3 - "$adapter" <<'PY'
import json, sqlite3, sys
d = sqlite3.connect("build/demo.db")
row = d.execute("SELECT c.messages FROM adapters a JOIN splits s ON 1 JOIN cluster_members m ON m.call_id = s.call_id "
                "AND m.cluster_id = a.cluster_id JOIN calls c ON c.id = s.call_id WHERE s.split = 'test' LIMIT 1").fetchone()
msgs = json.loads(row[0]) if row else [{"role": "user", "content": "Send an email to bob@example.com saying hi"}]
msgs = [m for m in msgs if isinstance(m.get("content"), str)]
print(json.dumps({"messages": msgs, "max_tokens": 64, "temperature": 0}))
PY
)
with=$(curl -sf "http://127.0.0.1:$port/v1/chat/completions" -H 'Content-Type: application/json' -d "$prompt")
echo "with adapter:    $(echo "$with" | python3 -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"][:300])')"
kill $server; wait $server 2>/dev/null || true
"$venv/bin/python" -m llama_cpp.server --model "$base" --n_ctx 2048 --port "$port" --chat_format chatml \
  >/tmp/llama-cpp-server-base.log 2>&1 &
server=$!
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null && break
  sleep 1
done
without=$(curl -sf "http://127.0.0.1:$port/v1/chat/completions" -H 'Content-Type: application/json' -d "$prompt")
echo "without adapter: $(echo "$without" | python3 -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"][:300])')"
a=$(echo "$with" | python3 -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"])')
b=$(echo "$without" | python3 -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"])')
if [[ "$a" == "$b" ]]; then echo "FAIL: the adapter did not change the greedy answer"; exit 1; fi
echo "OK: llama.cpp's server loaded $adapter and answered with it"
