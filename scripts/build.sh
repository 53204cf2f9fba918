#!/usr/bin/env bash
# Configures (once) and builds slmctl and its tests in ./build with Ninja and ccache.
# BUILD_DIR and extra CMake flags (CMAKE_ARGS) can be set from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo ${CMAKE_ARGS:-} >&2
fi
# 2 jobs: a libtorch translation unit takes ~1.3 GB and 30 s; more jobs than cores only thrash
jobs=${JOBS:-$(nproc)}
cmake --build "$build" -j "$jobs"
