#!/usr/bin/env bash
# Builds bench/platform/matmul.cpp against the pinned libtorch (once, into OUT) and runs it:
# JSON lines of (M, N) x (N, N) GFLOP/s in fp32 and bf16. Shared by bench/platform and bench/finetune.
# Usage: bench/platform/matmul.sh OUT M N[,N...] THREADS
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$1
mkdir -p "$out"
shift
lt=$(scripts/fetch-libtorch.sh)
if [[ ! -x $out/matmul || bench/platform/matmul.cpp -nt $out/matmul ]]; then
  g++ -std=c++20 -O2 -isystem "$lt/include" -isystem "$lt/include/torch/csrc/api/include" bench/platform/matmul.cpp \
    -o "$out/matmul" -L"$lt/lib" -ltorch_cpu -lc10 -Wl,-rpath,"$lt/lib"
fi
"$out/matmul" "$@"
