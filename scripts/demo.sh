#!/usr/bin/env bash
# The main job. Today (issue 2 landed, the BERT example of issue 4 not yet): builds pld in
# Release, prints the PLD schedule of the paper's setting with its compute accounting, draws it to
# build/demo/pld_schedule.svg, solves theta_bar for a 1.3x ideal speedup, and runs the minimal
# controller example. When examples/bert lands this script runs BERT pretraining instead.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-deps.sh
build="${PLD_BUILD_DIR:-build/release}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPLD_BUILD_TESTS=OFF -DPLD_BUILD_BENCHMARKS=OFF
cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" --target pld-schedule pld_minimal

mkdir -p build/demo
echo "== PLD (Zhang & He 2020): theta_bar 0.5, gamma 0.001, BERT-base depth L = 12"
"$build/tools/pld-schedule/pld-schedule" --preset pld --layers 12 --total 100000 \
  --steps 0,500,1000,2000,5000,99999 --svg build/demo/pld_schedule.svg
echo
echo "== theta_bar for a 1.3x ideal speedup of the layer stack over 100k steps"
"$build/tools/pld-schedule/pld-schedule" --preset pld --layers 12 --total 100000 --plan 1.3 --steps 100000
echo
echo "== the controller around a toy layer stack (examples/minimal)"
"$build/examples/minimal/pld_minimal"
