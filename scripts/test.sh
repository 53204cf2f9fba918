#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, fetches the models, runs every
# test (doctest binaries + Python tests) through ctest, and ends with ctest's summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
scripts/build.sh
scripts/fetch-models.sh >/dev/null
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --timeout 1500 -j "${TEST_JOBS:-2}" "$@"
