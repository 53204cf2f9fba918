#!/usr/bin/env bash
# Proves that the CUDA build (-DSLMCTL_CUDA=ON against the pinned wheel's libtorch_cuda, nvcc and the
# CUDA toolkit) configures, compiles and links on a machine without a GPU, and that what it built
# loads and runs there: --version says "CUDA compiled: yes", --device cuda is a clear error (exit 1,
# "no CUDA device", a hint), and the CPU path of the tensor code works (a few CPU tests of the CUDA
# build's binaries). Separate from .ci/run (see bench/RESULTS.md "GPU path" for why and how long).
#
#   scripts/check-cuda-build.sh            the whole build (BUILD_DIR, default build-cuda; JOBS, default
#                                          all cores), then the checks below
#   scripts/check-cuda-build.sh --quick    configure + the one-file link check (tests/cuda-link-check.cpp:
#                                          libtorch_cuda linked, loaded, run) in a few minutes
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build-cuda}
quick=0
[[ ${1:-} == --quick ]] && quick=1
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$(cd .. && pwd)}
fail() { echo "check-cuda-build: FAILED: $*" >&2; exit 1; }
t0=$(date +%s)
if ((quick)); then
  libtorch=$(scripts/fetch-libtorch.sh --cuda)
  [[ -f $build/build.ninja ]] || cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSLMCTL_LIBTORCH="$libtorch" -DSLMCTL_CUDA=ON ${CMAKE_ARGS:-} >&2
else
  CMAKE_ARGS="-DSLMCTL_CUDA=ON ${CMAKE_ARGS:-}" BUILD_DIR=$build JOBS=${JOBS:-$(nproc)} scripts/build.sh
fi
grep -q '^SLMCTL_CUDA:BOOL=ON' "$build/CMakeCache.txt" || fail "$build is not configured with SLMCTL_CUDA=ON"
cmake --build "$build" -j "${JOBS:-$(nproc)}" --target cuda-link-check
t_build=$(($(date +%s) - t0))
ldd "$build/cuda-link-check" | grep -q 'libtorch_cuda.so' || fail "cuda-link-check does not link libtorch_cuda"
if ldd "$build/cuda-link-check" | grep -q 'not found'; then
  ldd "$build/cuda-link-check" | grep 'not found' >&2
  fail "cuda-link-check: libraries not found"
fi
"$build/cuda-link-check" || fail "cuda-link-check did not run"
if ((quick)); then
  echo "check-cuda-build --quick: ok (${t_build} s)"
  exit 0
fi
# linked against libtorch_cuda, and every library resolves at load time
ldd "$build/libslmctl-torch.so" | grep -q 'libtorch_cuda.so' || fail "libslmctl-torch.so does not link libtorch_cuda"
for b in "$build/slmctl" "$build/libslmctl-torch.so" "$build"/test-*; do
  [[ -x $b || $b == *.so ]] || continue
  if ldd "$b" | grep -q 'not found'; then
    ldd "$b" | grep 'not found' >&2
    fail "$b: libraries not found"
  fi
done
v=$("$build/slmctl" --version)
echo "$v"
[[ $v == *"CUDA compiled: yes"* ]] || fail "--version does not say CUDA compiled: yes"

set +e
err=$("$build/slmctl" model info tests/data/ref/tiny-llama --device cuda 2>&1 >/dev/null)
rc=$?
set -e
if [[ $v == *"CUDA devices: 0"* ]]; then
  [[ $rc -eq 1 && $err == *"no CUDA device"* && $err == *"hint:"* ]] ||
    fail "--device cuda without a GPU: want exit 1 with 'no CUDA device' and a hint, got $rc: $err"
  echo "--device cuda without a GPU: exit 1, $(echo "$err" | head -1)"
fi
"$build/slmctl" model info tests/data/ref/tiny-llama --device cpu --dtype fp32 >/dev/null || fail "the CPU path of the CUDA build"
"$build/test-model" --force-colors=0 -tc='CUDA*,--device cuda*,HF parity: tiny Llama*' | tail -3
"$build/test-clustering" --force-colors=0 -tc='*libtorch*,CUDA*' | tail -3
echo "check-cuda-build: ok (build ${t_build} s, all $(($(date +%s) - t0)) s)"
