#!/usr/bin/env bash
# Configures (once) and builds slmctl and its tests in ./build with Ninja and ccache, against the
# pinned libtorch that scripts/fetch-libtorch.sh installs. BUILD_DIR and extra CMake flags
# (CMAKE_ARGS) can be set from the environment; SLMCTL_LIBTORCH overrides the libtorch prefix;
# TARGETS (e.g. "slmctl": the tool without the test binaries) limits what is built.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
cuda_flag=""
[[ "${CMAKE_ARGS:-}" == *SLMCTL_CUDA=ON* ]] && cuda_flag=--cuda
libtorch=${SLMCTL_LIBTORCH:-$(scripts/fetch-libtorch.sh $cuda_flag)}
configured=""
if [[ -f "$build/CMakeCache.txt" ]]; then
  configured=$(sed -n 's/^SLMCTL_LIBTORCH:PATH=//p' "$build/CMakeCache.txt")
fi
if [[ ! -f "$build/build.ninja" || "$configured" != "$libtorch" ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLMCTL_LIBTORCH="$libtorch" ${CMAKE_ARGS:-} >&2
fi
# a libtorch translation unit takes ~1.4 GB and 25-35 s; more jobs than cores only thrash
jobs=${JOBS:-$(nproc)}
cmake --build "$build" -j "$jobs" ${TARGETS:+--target $TARGETS}
