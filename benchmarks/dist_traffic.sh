#!/usr/bin/env bash
# Bytes all-reduced and step time per step, no dropping vs PLD, 2 MPI ranks on this machine
# (benchmarks/bench_dist_traffic.cpp). Builds it in build/bench.
#   benchmarks/dist_traffic.sh [--steps N] [--layers L]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-deps.sh >/dev/null
build="${PLD_BUILD_DIR:-build/bench}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPLD_BUILD_TESTS=OFF -DPLD_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target bench_dist_traffic >/dev/null
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc --all) cores"
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
  mpirun -np 2 --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 "$build/benchmarks/bench_dist_traffic" "$@"
