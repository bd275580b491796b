#!/usr/bin/env bash
# The CPU layer benchmark beside its ceiling and its peer, as one table:
#   - builds bench_cpu_layer in Release (-O3 -march=native, OpenMP, oneDNN when found) in build/bench
#   - runs it (JSON to build/bench/cpu_layer.json)
#   - runs benchmarks/peer/torch_cpu_layer.py with the system python that has torch (Debian's
#     python3-torch on OpenBLAS, installed by setup-deps.sh --peer; fp32, and bf16 autocast where
#     the CPU multiplies bf16 natively) in the same call
#   - prints the side-by-side table (benchmarks/cpu_layer_table.py)
#   - runs benchmarks/cpu_layer_profile (where each case's step goes, product by product and pass by
#     pass, beside the GEMM ceiling) into build/bench/cpu_layer_profile.md and prints its headlines
# Usage: scripts/bench-cpu-layer.sh [extra Google Benchmark flags]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-deps.sh --peer
build="${PLD_BUILD_DIR:-build/bench}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPLD_BUILD_TESTS=OFF -DPLD_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target bench_cpu_layer cpu_layer_profile
"$build/benchmarks/bench_cpu_layer" --benchmark_out="$build/cpu_layer.json" --benchmark_out_format=json "$@"

peer="$build/torch_cpu_layer.jsonl"
: >"$peer"
torch_python=""
for py in /usr/bin/python3 python3; do
  if "$py" -c "import torch" >/dev/null 2>&1; then torch_python="$py"; break; fi
done
if [ -n "$torch_python" ]; then
  "$torch_python" benchmarks/peer/torch_cpu_layer.py | tee "$peer"
  # The BLAS torch's fp32 products ran on, read from the process's mappings (the reference BLAS
  # would make the peer ~50x slow: scripts/setup-deps.sh --peer installs OpenBLAS).
  "$torch_python" -c "import torch; torch.ones(64, 64) @ torch.ones(64, 64); print('peer: torch', torch.__version__, 'BLAS', sorted({l.split()[-1] for l in open('/proc/self/maps') if 'blas' in l.lower()}))"
else
  echo "bench-cpu-layer: no python with torch found (apt-get install python3-torch); peer column left empty"
fi
echo
python3 benchmarks/cpu_layer_table.py "$build/cpu_layer.json" "$peer"

echo
"$build/benchmarks/cpu_layer_profile" --steps 10 >"$build/cpu_layer_profile.md"
echo "where the time goes (full tables: $build/cpu_layer_profile.md):"
grep -E '^(# |### |forward\+backward|At the ceiling)' "$build/cpu_layer_profile.md"
