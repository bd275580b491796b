#!/usr/bin/env bash
# The test command: installs what is missing, configures, builds and runs every test.
#   scripts/test.sh            build in build/test (Release) and run ctest
#   PLD_BUILD_DIR=dir scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-deps.sh
build="${PLD_BUILD_DIR:-build/test}"
jobs="$(nproc 2>/dev/null || echo 2)"

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j"$jobs"
ctest --test-dir "$build" --output-on-failure -j"$jobs"
