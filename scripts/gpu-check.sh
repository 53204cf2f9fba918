#!/usr/bin/env bash
# The GPU check (issue #15): one prepared script for a CUDA machine that can neither install packages
# nor download. It unpacks the carried Debian packages into a prefix (dpkg -x, never into /), builds
# slmctl with -DSLMCTL_CUDA=ON against the machine's own libtorch (the python3 torch's), runs the
# CUDA parity tests (doctest cases "CUDA*": CPU vs CUDA on the committed fixtures), then the GPU
# benches side by side with HF transformers (+ PEFT) on the same GPU in the same run:
#   peak     measured bf16 / fp32 matmul TFLOP/s (what MFU is taken against)
#   kmeans   1M x 384 unit vectors: FAISS on the CPU (all cores) vs the libtorch k-means on the GPU
#   decode   tokens/s at batch 1, 32, 256: slmctl model generate vs transformers generate
#   finetune LoRA tokens/s and MFU at the SmolLM2-135M and -1.7B shapes: slmctl finetune vs PEFT on
#            the very same micro-batches
# The models have SmolLM2's shapes and random weights, made there (bench/gpu/make_random_model.py).
# Every step has its own timeout and the whole run a deadline (8 minutes), so one hang costs only
# its step; logs, per-step JSON and summary.json (rewritten after every step) go into OUTDIR.
#
# On the GPU machine, through the `run` tool, after scripts/gather-gpu-carry.sh here:
#   run(command="scripts/gpu-check.sh $OUT/gpu", carry=[".cache/gpu-carry"], timeout_s=560)
# (.cache/gpu-carry is 21 MiB: 18 .debs, CMake, the tokenizer; with the 13 MiB source tree 34 of the
# 64 MiB.) The run's files come back under files_at; summary.json says what to copy into
# bench/RESULTS.md ("GPU path"). The deadline leaves a second try inside a 15-minute device budget.
#
# Here, without a GPU, the same steps on the CPU with tiny sizes (the plumbing, not the figures):
#   scripts/gpu-check.sh /tmp/gpu-dry --cpu-dry-run [--prebuilt build]
# --prebuilt DIR uses DIR's binaries instead of building (a CPU build with the targets slmctl,
# test-gpu, bench-kmeans); the configure step against the unpacked prefix still runs. --setup-only
# stops after that configure step. The HF peer runs only where python3 has torch, transformers and
# peft (else its steps say "skipped"). The dry run took 125 s here without the peer, 320 s with it.
#
# Environment: SLMCTL_GPU_CARRY (default .cache/gpu-carry), SLMCTL_GPU_WORK (default
# /tmp/slmctl-gpu-work: prefix, build, models), SLMCTL_GPU_DEADLINE_S (default 475; dry run 3600),
# SLMCTL_GPU_JOBS (default: nproc).
set -uo pipefail

usage() { echo "usage: scripts/gpu-check.sh OUTDIR [--cpu-dry-run] [--prebuilt BUILD_DIR] [--setup-only]" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
out=$1
shift
dry=0
prebuilt=""
setup_only=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --cpu-dry-run) dry=1 ;;
    --prebuilt) prebuilt=${2:?--prebuilt needs a build directory}; shift ;;
    --setup-only) setup_only=1 ;;
    *) usage ;;
  esac
  shift
done
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
carry=${SLMCTL_GPU_CARRY:-$root/.cache/gpu-carry}
work=${SLMCTL_GPU_WORK:-/tmp/slmctl-gpu-work}
jobs=${SLMCTL_GPU_JOBS:-$(nproc)}
if ((dry)); then
  device=cpu
  deadline_s=${SLMCTL_GPU_DEADLINE_S:-3600}
else
  device=cuda
  deadline_s=${SLMCTL_GPU_DEADLINE_S:-475}
fi
[[ -n $prebuilt ]] && prebuilt=$(cd "$prebuilt" && pwd)
t_start=$(date +%s)
prefix=$work/prefix
build=${prebuilt:-$work/build}
mkdir -p "$work"
: >"$out/steps.jsonl"

left() { echo $((deadline_s - ($(date +%s) - t_start))); }

# Writes summary.json from steps.jsonl and the step results (*.json) so far.
summarise() {
  python3 - "$out" "$dry" "$device" <<'PY' || true
import glob, json, os, sys
out, dry, device = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
steps = [json.loads(l) for l in open(os.path.join(out, "steps.jsonl")) if l.strip()]
def load(name):
    p = os.path.join(out, name)
    try:
        with open(p) as f:
            txt = f.read().strip().splitlines()
        return json.loads(txt[-1]) if txt else None
    except (OSError, ValueError, IndexError):
        return None
s = {"mode": "cpu-dry-run" if dry else "gpu", "device": device, "steps": steps,
     "facts": load("facts.json"), "peak": load("peak.json"), "kmeans": load("kmeans.json")}
dec = {}
for f in sorted(glob.glob(os.path.join(out, "decode-*.json"))):
    dec[os.path.basename(f)[len("decode-"):-len(".json")]] = load(os.path.basename(f))
s["decode"] = dec
ft = {}
for f in sorted(glob.glob(os.path.join(out, "finetune-*.json"))):
    ft[os.path.basename(f)[len("finetune-"):-len(".json")]] = load(os.path.basename(f))
s["finetune"] = ft
s["ok"] = all(x["status"] in ("ok", "skipped") for x in steps)
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(s, f, indent=1)
PY
}

# step NAME BUDGET_S CMD...: runs CMD with stdout+stderr in NAME.log under min(budget, time left),
# records {name, status, rc, seconds} in steps.jsonl. Returns CMD's status (124: timed out).
step() {
  local name=$1 budget=$2
  shift 2
  local l
  l=$(left)
  if ((l < 5)); then
    echo "{\"name\": \"$name\", \"status\": \"skipped\", \"reason\": \"out of time\"}" >>"$out/steps.jsonl"
    echo "== $name: skipped (out of time)"
    summarise
    return 125
  fi
  ((budget > l)) && budget=$l
  echo "== $name (budget ${budget}s, $(left)s left)"
  local t0 rc status
  t0=$(date +%s.%N)
  timeout -k 5 "$budget" "$@" >"$out/$name.log" 2>&1
  rc=$?
  status=ok
  ((rc == 124 || rc == 137)) && status=timeout
  [[ $rc -ne 0 && $status == ok ]] && status=failed
  local secs
  secs=$(python3 -c "import time,sys; print(round(time.time()-float(sys.argv[1]),2))" "$t0")
  echo "{\"name\": \"$name\", \"status\": \"$status\", \"rc\": $rc, \"seconds\": $secs}" >>"$out/steps.jsonl"
  echo "   $status (rc $rc, ${secs}s)"
  ((rc != 0)) && tail -n 15 "$out/$name.log" | sed 's/^/   | /'
  summarise
  return $rc
}
skip() {  # skip NAME REASON
  echo "{\"name\": \"$1\", \"status\": \"skipped\", \"reason\": \"$2\"}" >>"$out/steps.jsonl"
  echo "== $1: skipped ($2)"
  summarise
}

# ---- 1. the machine --------------------------------------------------------------------------
facts() {
  python3 - "$device" <<'PY'
import json, os, platform, shutil, subprocess, sys
def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception as e:
        return f"error: {e}"
f = {"date_utc": sh("date -u +%FT%TZ"), "host": platform.node(), "kernel": platform.release(),
     "os": sh(". /etc/os-release 2>/dev/null && echo \"$PRETTY_NAME\""), "glibc": platform.libc_ver()[1],
     "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(), "cores": os.cpu_count(),
     "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
     "load": sh("cut -d' ' -f1-3 /proc/loadavg"), "gxx": sh("g++ --version | head -1"),
     "nvcc": sh("nvcc --version | tail -2 | head -1") if shutil.which("nvcc") else None,
     "cmake": sh("cmake --version | head -1") if shutil.which("cmake") else None,
     "ninja": sh("ninja --version") if shutil.which("ninja") else None,
     "dpkg": bool(shutil.which("dpkg")), "python": sys.version.split()[0],
     "gpus": sh("nvidia-smi -L") if shutil.which("nvidia-smi") else None}
for mod in ("torch", "transformers", "peft", "safetensors"):
    try:
        m = __import__(mod)
        f[mod] = getattr(m, "__version__", "?")
    except Exception as e:
        f[mod] = None
try:
    import torch
    f["torch_cuda"] = torch.version.cuda
    f["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        f["gpu"] = torch.cuda.get_device_name(0)
        f["gpu_mem_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    f["torch_dir"] = os.path.dirname(torch.__file__)
except Exception:
    pass
print(json.dumps(f))
PY
}
step facts 60 bash -c "$(declare -f facts); device=$device; facts" && cp "$out/facts.log" "$out/facts.json"
have_py() { python3 -c "import $1" >/dev/null 2>&1; }
peer_ok=0
have_py torch && have_py transformers && have_py peft && have_py safetensors && peer_ok=1
if ((!dry)) && ! python3 -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "error: python3's torch sees no CUDA device" >&2
fi

# ---- 2. the carried packages into a prefix ---------------------------------------------------
unpack() {
  set -e
  [[ -d $carry/debs ]] || { echo "no $carry/debs: run scripts/gather-gpu-carry.sh where apt works, and carry it"; exit 1; }
  rm -rf "$prefix"
  mkdir -p "$prefix"
  for d in "$carry"/debs/*.deb; do
    if command -v dpkg >/dev/null; then
      dpkg -x "$d" "$prefix"
    else  # a machine without dpkg: the ar archive's data.tar.* by hand
      python3 - "$d" "$prefix" <<'PY'
import io, sys, tarfile
deb, dst = sys.argv[1], sys.argv[2]
b = open(deb, "rb").read()
assert b[:8] == b"!<arch>\n", deb
i = 8
while i < len(b):
    name = b[i:i + 16].decode().strip().rstrip("/")
    size = int(b[i + 48:i + 58].decode().strip())
    body = b[i + 60:i + 60 + size]
    if name.startswith("data.tar"):
        if name.endswith(".zst"):
            import zstandard
            body = zstandard.ZstdDecompressor().decompress(body, max_output_size=1 << 30)
            mode = "r:"
        else:
            mode = "r:*"
        with tarfile.open(fileobj=io.BytesIO(body), mode=mode) as t:
            t.extractall(dst)
    i += 60 + size + (size & 1)
PY
    fi
    echo "unpacked $(basename "$d")"
  done
  local lib=$prefix/usr/lib/x86_64-linux-gnu
  # absolute links (zlib1g-dev's libz.so -> /lib/...) made to point into the prefix
  find "$prefix" -type l | while read -r l; do
    t=$(readlink "$l")
    if [[ $t == /* ]]; then ln -sfn "$prefix$t" "$l"; fi
  done
  # what update-alternatives would do: OpenBLAS as libblas/liblapack
  for l in blas lapack; do
    ln -sf "openblas-openmp/lib$l.so.3" "$lib/lib$l.so.3"
    ln -sf "openblas-openmp/lib$l.so.3" "$lib/lib$l.so"
  done
  # faiss' exported target names /usr/lib/...: point it into the prefix
  sed -i "s#/usr/lib/x86_64-linux-gnu/libblas.so#$lib/libblas.so#g; s#/usr/lib/x86_64-linux-gnu/liblapack.so#$lib/liblapack.so#g" \
    "$lib/cmake/faiss/faiss-targets.cmake"
  # libgomp only where the machine has none (two OpenMP runtimes in one process misbehave)
  if { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep -q 'libgomp.so.1 '; then
    rm -f "$lib"/libgomp.so.1*
  fi
  # CMake: the machine's when >= 3.25, else the carried static one
  local v
  v=$(cmake --version 2>/dev/null | head -1 | grep -oE '[0-9]+\.[0-9]+' | head -1)
  if [[ -z $v ]] || ! python3 -c "import sys; a=tuple(map(int,'$v'.split('.'))); sys.exit(0 if a>=(3,25) else 1)"; then
    mkdir -p "$prefix/tools"
    tar -C "$prefix/tools" -xJf "$carry/cmake.tar.xz"
    echo "using the carried cmake: $("$prefix/tools/bin/cmake" --version | head -1)"
  fi
  du -sh "$prefix"
}
step unpack 60 bash -c "$(declare -f unpack); carry='$carry' prefix='$prefix'; unpack" || true
export PATH="$prefix/tools/bin:$PATH:$prefix/usr/bin"  # the machine's ninja first, else the carried one
# the carried runtime libraries for anything the machine lacks (libfmt9, OpenBLAS, libgfortran, ...)
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$prefix/usr/lib/x86_64-linux-gnu:$prefix/usr/lib/x86_64-linux-gnu/openblas-openmp:$prefix/lib/x86_64-linux-gnu"

# ---- 3. libtorch and the build ---------------------------------------------------------------
libtorch_prefix() {
  if ((dry)); then
    "$root/scripts/fetch-libtorch.sh"
    return
  fi
  # the machine's own torch, in place: its libraries find the nvidia-* wheels' through $ORIGIN, which
  # a prefix of links would break. Its bundled fmt headers come after Debian's fmt in every include
  # line (slm_common, which carries fmt::fmt, is linked before slm_libtorch), and a mismatch would
  # not link against libfmt.so.9
  python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))'
}
configure() {
  set -e
  local lt
  lt=$(libtorch_prefix | tail -1)
  echo "libtorch: $lt"
  local lib=$prefix/usr/lib/x86_64-linux-gnu
  local cuda_args=()
  if ((!dry)); then
    # executables that link libtorch_cuda need its dependencies at link time: the nvidia-* wheels' dirs
    local nv
    nv=$(python3 -c 'import os, torch
d = os.path.join(os.path.dirname(os.path.dirname(torch.__file__)), "nvidia")
print(":".join(sorted(os.path.join(d, x, "lib") for x in os.listdir(d) if os.path.isdir(os.path.join(d, x, "lib")))) if os.path.isdir(d) else "")')
    cuda_args=(-DSLMCTL_CUDA=ON -DCMAKE_CUDA_COMPILER="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")
    [[ -n $nv ]] && cuda_args+=(-DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$nv")
  fi
  # the dry run looks only in the prefix, never in /usr, to prove the carried set complete (this
  # machine has every -dev package); the GPU machine may fall back to its own
  local only_prefix=()
  ((dry)) && only_prefix=(-DCMAKE_FIND_USE_CMAKE_SYSTEM_PATH=OFF -DCMAKE_FIND_USE_SYSTEM_ENVIRONMENT_PATH=OFF
    -DCMAKE_CXX_COMPILER="$(command -v g++)")
  cmake -S "$root" -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLMCTL_LIBTORCH="$lt" "${cuda_args[@]}" \
    "${only_prefix[@]}" \
    -DCMAKE_PREFIX_PATH="$prefix/usr;$lib/cmake;$prefix/usr/share/cmake;$prefix/usr/lib/cmake" \
    -DCMAKE_LIBRARY_PATH="$lib" -DCMAKE_INCLUDE_PATH="$prefix/usr/include" \
    -DCMAKE_PROGRAM_PATH="$prefix/usr/bin" -DCMAKE_CXX_FLAGS="-isystem $prefix/usr/include"
  # every library the build found must come from the prefix or libtorch (or the CUDA toolkit)
  grep -E '^(TCMALLOC_LIB|SQLite3_LIBRARY|ZLIB_LIBRARY|fmt_DIR|faiss_DIR|CLI11_DIR|doctest_DIR|nlohmann_json_DIR|tomlplusplus_DIR)' \
    "$1/CMakeCache.txt"
}
targets=(slmctl test-gpu bench-kmeans)  # test-gpu: the CUDA cases of the model, clustering, finetune suites
if ((setup_only)); then  # facts, the prefix and the configure step only
  step configure 240 bash -c "$(declare -f libtorch_prefix configure); dry=$dry root='$root' work='$work' prefix='$prefix'; configure '$work/build-configure-only'"
  exit $?
fi
if [[ -n $prebuilt ]]; then
  # the prefix is still configured against (proves the carried set), in a scratch directory
  step configure 240 bash -c "$(declare -f libtorch_prefix configure); dry=$dry root='$root' work='$work' prefix='$prefix'; configure '$work/build-configure-only'"
  skip build "--prebuilt $prebuilt: its binaries as they are"
else
  step configure 120 bash -c "$(declare -f libtorch_prefix configure); dry=$dry root='$root' work='$work' prefix='$prefix'; configure '$build'"
  step build 330 cmake --build "$build" -j "$jobs" --target "${targets[@]}"
fi
slm=$build/slmctl

# ---- 4. the CUDA tests -------------------------------------------------------------------------
if [[ -x $build/test-gpu ]]; then
  export SLMCTL_BINARY=$slm
  # CUDA parity (model: logits, LoRA gradients, greedy tokens, embeddings; finetune: the loss curve;
  # clustering: k-means vs FAISS), the libtorch k-means on CPU tensors, the no-GPU errors (dry run)
  step test-gpu 120 "$build/test-gpu" --force-colors=0 -tc='CUDA*,*libtorch*,--device cuda*'
  if ((!dry)); then  # no test may skip for want of a GPU there
    if grep -l "no CUDA device visible" "$out"/test-*.log >/dev/null 2>&1; then
      echo "{\"name\": \"cuda-visible\", \"status\": \"failed\", \"reason\": \"a CUDA test skipped: no device visible\"}" >>"$out/steps.jsonl"
    fi
  fi
else
  skip tests "no test binaries"
fi

# ---- 5. the benches --------------------------------------------------------------------------
if ((dry)); then
  peak_size=512 km=(20000 384 16) dec_batches=(1 4) dec_tokens=8 shapes=(tiny) ft_steps=3 ft_batch=2
else
  peak_size=8192 km=(1000000 384 256) dec_batches=(1 32 256) dec_tokens=128 shapes=(135m 1.7b) ft_steps=30 ft_batch=8
fi
py_peer() { python3 "$root/bench/gpu/peer_hf.py" "$@"; }

if have_py torch; then
  step peak 60 python3 "$root/bench/gpu/peer_hf.py" peak --device "$device" --size "$peak_size" &&
    cp "$out/peak.log" "$out/peak.json"
else
  skip peak "no torch in python3"
fi

if [[ -x $build/bench-kmeans ]]; then
  step kmeans 150 "$build/bench-kmeans" "${km[@]}" "$device" && tail -1 "$out/kmeans.log" >"$out/kmeans.json"
else
  skip kmeans "bench-kmeans not built"
fi

# models of SmolLM2's shapes with random weights (the GGUF is too large to carry)
tok=$carry/tokenizer/tokenizer.json
[[ -f $tok ]] || tok=$root/../shared/data/tokenizers/smollm-135m/tokenizer.json
declare -A model_dir
for s in "${shapes[@]}"; do
  if { have_py torch && have_py safetensors; } || [[ $s == tiny ]]; then  # tiny: a pure-python writer
    model_dir[$s]=$work/models/$s
    step "model-$s" 90 python3 "$root/bench/gpu/make_random_model.py" --shape "$s" --tokenizer "$tok" \
      --out "${model_dir[$s]}" --device "$device" || unset "model_dir[$s]"
  else
    skip "model-$s" "no torch/safetensors in python3"
  fi
done

prompt="Write a short story about a robot who learns to paint."
decode_pair() {  # decode_pair SHAPE BATCH: slmctl then the peer, JSON lines into decode-SHAPE-bB.json
  local dir=$1 b=$2 ids
  "$slm" model generate "$dir" --prompt "$prompt" --batch "$b" --max-tokens "$dec_tokens" --ignore-eos \
    --device "$device" --dtype bf16 --json -q | python3 -c '
import json, sys
j = json.load(sys.stdin)
print(json.dumps({"engine": "slmctl", "batch": j["batch"], "generated_tokens": j["generated_tokens"],
                  "prefill_s": j["prefill_seconds"], "decode_s": j["decode_seconds"],
                  "tokens_per_s": j["tokens_per_second"], "ids0": j["results"][0]["ids"]}))'
  if ((peer_ok)); then
    ids=$("$slm" model tokenize "$dir" --text "$prompt" --json -q | python3 -c 'import json,sys; print(",".join(map(str, json.load(sys.stdin)["ids"])))')
    py_peer decode --device "$device" --model "$dir" --dtype bf16 --batch "$b" --tokens "$dec_tokens" --prompt-ids "$ids"
  fi
}
dec_shape=${shapes[0]}
if [[ -x $slm && -n ${model_dir[$dec_shape]:-} ]]; then
  for b in "${dec_batches[@]}"; do
    step "decode-$dec_shape-b$b" 90 bash -c "$(declare -f decode_pair py_peer); slm='$slm' prompt='$prompt' dec_tokens=$dec_tokens device=$device peer_ok=$peer_ok root='$root'; decode_pair '${model_dir[$dec_shape]}' $b" &&
      cp "$out/decode-$dec_shape-b$b.log" "$out/decode-$dec_shape-b$b.json.all" &&
      grep '^{' "$out/decode-$dec_shape-b$b.log" | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin]
s = next((r for r in rows if r.get("engine") == "slmctl"), None)
p = next((r for r in rows if r.get("engine") == "transformers.generate"), None)
o = {"slmctl": s, "peer": p}
if s and p:
    o["ratio"] = s["tokens_per_s"] / p["tokens_per_s"] if p["tokens_per_s"] else None
    a, b = s.get("ids0") or [], p.get("ids0") or []
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    o["greedy_prefix_agree"] = n
print(json.dumps(o))' >"$out/decode-$dec_shape-b$b.json"
  done
else
  skip decode "no slmctl or no model"
fi

# finetune: the send_email cluster of sample_logs, on each shape, then the peer on the same batches
ft_db=$work/ft.db
prep_db() {
  set -e
  rm -f "$ft_db" "$ft_db"-*
  "$slm" collect "$root/sample_logs/workflow_operator.jsonl" --db "$ft_db" -q
  "$slm" cluster --db "$ft_db" --json -q | python3 -c '
import json, sys
j = json.load(sys.stdin)
print(next(c["id"] for c in j["clusters"] if c["label"].startswith("send_email")))' >"$work/ft.cluster"
  cat "$work/ft.cluster"
}
ft_pair() {  # ft_pair SHAPE DIR
  set -e
  local s=$1 dir=$2 c
  c=$(cat "$work/ft.cluster")
  rm -rf "$work/adapter-$s" "$work/adapter-$s.checkpoint"
  "$slm" finetune --db "$ft_db" --cluster "$c" --base "$dir" --device "$device" --dtype bf16 \
    --max-steps "$ft_steps" --batch-size "$ft_batch" --rank 8 --alpha 16 --lr 2e-4 --eval-every 0 --val-max 4 \
    --max-tokens 1024 --warmup 0 --out "$work/adapter-$s" --dump-batches "$work/batches-$s.jsonl" --json -q \
    >"$work/slm-ft-$s.json"
  if ((peer_ok)); then
    py_peer finetune --device "$device" --model "$dir" --dtype bf16 --batches "$work/batches-$s.jsonl" \
      --rank 8 --alpha 16 --lr 2e-4 >"$work/peer-ft-$s.json"
  fi
  python3 - "$work/slm-ft-$s.json" "$work/peer-ft-$s.json" "$dir/config.json" "$out/peak.json" <<'PY'
import json, os, sys
slm_f, peer_f, cfg_f, peak_f = sys.argv[1:5]
s = json.load(open(slm_f))["train"]
c = json.load(open(cfg_f))
C, F, L, V = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
H, K = c["num_attention_heads"], c["num_key_value_heads"]
D = C // H
layer = C * H * D * 2 + C * K * D * 2 + 3 * C * F  # q, o, k, v, gate, up, down
def flops(tokens, loss_tokens):
    # matmul work with a frozen base: forward 2P + input gradients 2P per token; the LM head on loss
    # positions only (slmctl) -- counted the same for the peer, which computes more (full logits)
    return 4 * L * layer * tokens + 4 * C * V * loss_tokens
peak = None
try:
    peak = json.load(open(peak_f))["bf16_tflops"] * 1e12
except Exception:
    pass
o = {"shape": os.path.basename(os.path.dirname(cfg_f)), "params_matmul": L * layer + V * C}
fs = flops(s["tokens"], s["loss_tokens"])
o["slmctl"] = {"tokens_per_s": s["tokens_per_s"], "tokens": s["tokens"], "loss_tokens": s["loss_tokens"],
               "train_s": s["train_s"], "padding_share": s.get("padding_share"),
               "tflops": fs / s["train_s"] / 1e12 if s["train_s"] else None,
               "losses": [p["train_loss"] for p in s["curve"][1:]]}
if peak and s["train_s"]:
    o["slmctl"]["mfu"] = fs / s["train_s"] / peak
if os.path.exists(peer_f) and os.path.getsize(peer_f):
    p = json.loads(open(peer_f).read().strip().splitlines()[-1])
    o["peer"] = {k: p.get(k) for k in ("tokens_per_s", "tokens_per_s_after_first", "tokens", "train_s", "losses",
                                       "peak_mem_gb", "dtype")}
    if peak and p["train_s"]:
        o["peer"]["mfu"] = fs / p["train_s"] / peak
    if p["tokens_per_s"]:
        o["ratio"] = s["tokens_per_s"] / p["tokens_per_s"]
print(json.dumps(o))
PY
}
if [[ -x $slm ]] && step ft-db 60 bash -c "$(declare -f prep_db); slm='$slm' root='$root' work='$work' ft_db='$ft_db'; prep_db"; then
  for s in "${shapes[@]}"; do
    if [[ -n ${model_dir[$s]:-} ]]; then
      step "finetune-$s" 150 bash -c "$(declare -f ft_pair py_peer); slm='$slm' root='$root' work='$work' ft_db='$ft_db' out='$out' device=$device ft_steps=$ft_steps ft_batch=$ft_batch peer_ok=$peer_ok; ft_pair $s '${model_dir[$s]}'" &&
        tail -1 "$out/finetune-$s.log" >"$out/finetune-$s.json"
    else
      skip "finetune-$s" "no model"
    fi
  done
else
  skip finetune "no slmctl or no database"
fi

# ---- 6. the summary ----------------------------------------------------------------------------
summarise
python3 - "$out/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"== summary ({s['mode']}, {s['device']}): " + ", ".join(f"{x['name']} {x['status']}" for x in s["steps"]))
if s.get("peak"):
    print(f"peak bf16 {s['peak']['bf16_tflops']:.1f} TFLOP/s, fp32 {s['peak']['fp32_tflops']:.1f}")
k = s.get("kmeans")
if k and "faiss" in k:
    print(f"k-means {k['n']}x{k['d']} k={k['k']}: libtorch {k['torch']['seconds']:.2f} s, faiss {k['faiss']['seconds']:.2f} s "
          f"({k['speedup_torch_over_faiss']:.1f}x), inertia diff {100*k['inertia_rel_diff']:.2f}%")
for name, d in (s.get("decode") or {}).items():
    if d and d.get("slmctl"):
        r = f", peer {d['peer']['tokens_per_s']:.0f} tok/s, ratio {d['ratio']:.2f}x" if d.get("peer") else ""
        print(f"decode {name}: slmctl {d['slmctl']['tokens_per_s']:.0f} tok/s{r}")
for name, d in (s.get("finetune") or {}).items():
    if d and d.get("slmctl"):
        m = d["slmctl"].get("mfu")
        r = f", peft {d['peer']['tokens_per_s']:.0f} tok/s, ratio {d['ratio']:.2f}x" if d.get("peer") else ""
        print(f"finetune {name}: slmctl {d['slmctl']['tokens_per_s']:.0f} tok/s" + (f", MFU {100*m:.1f}%" if m else "") + r)
print("ok" if s["ok"] else "NOT ok: see the step logs")
PY
echo "== $out/summary.json ($(($(date +%s) - t_start)) s)"
