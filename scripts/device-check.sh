#!/usr/bin/env bash
# Everything that needs a GPU, in one call (about 8 minutes on an H100/H200):
#   1. Release build with CUDA for this GPU's architecture (tests, benchmark);
#   2. the CUDA tests (GPU layer vs the CPU layer in double), then compute-sanitizer memcheck and
#      racecheck on the test binary;
#   3. bench_cuda_layer (pld's layer, the cuBLASLt GEMM ceiling, a dropped layer) and the PyTorch
#      peer (eager, SDPA, torch.compile) in the same call;
#   4. the side-by-side table, printed last.
# Logs and JSON go to $OUT (the device tool's folder) or build-gpu/out.
#
# Here, once:  ../shared/device/pack-deps.sh      (Eigen, Catch2, Google Benchmark -> .device-deps)
# Then:        device run: scripts/device-check.sh   with carry [".device-deps"]
#   PLD_DEVICE_QUICK=1   tests only (no sanitizer, no benchmarks)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-build-gpu/out}"
mkdir -p "$out"
t0=$(date +%s)
stamp() { echo "[device-check +$(( $(date +%s) - t0 ))s] $*"; }
status_tests=skipped status_memcheck=skipped status_racecheck=skipped status_bench=skipped status_peer=skipped

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$out/gpu.txt"
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.')
prefix=()
[ -d .device-deps ] && prefix=(-DCMAKE_PREFIX_PATH="$PWD/.device-deps")
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

stamp "configure (CUDA architecture ${arch:-90})"
cmake -S . -B build-gpu "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "${prefix[@]}" \
  -DCMAKE_CUDA_ARCHITECTURES="${arch:-90}" -DPLD_BUILD_EXAMPLES=OFF -DPLD_BUILD_TOOLS=OFF \
  -DPLD_WARNINGS_AS_ERRORS=OFF >"$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
stamp "build"
cmake --build build-gpu -j"$(nproc)" --target pld_cuda_tests pld_cuda_host_tests bench_cuda_layer \
  >"$out/build.log" 2>&1 || { grep -E "error" "$out/build.log" | head -40; tail -20 "$out/build.log"; exit 1; }

stamp "CUDA tests"
if build-gpu/tests/pld_cuda_host_tests >"$out/host_tests.log" 2>&1; then
  build-gpu/tests/pld_cuda_tests -r compact >"$out/tests.log" 2>&1
  case $? in 0) status_tests=passed ;; 77) status_tests="skipped (no CUDA device)" ;; *) status_tests=FAILED ;; esac
else
  status_tests="FAILED (host tests, see $out/host_tests.log)"
fi
grep -vE "^rel-error" "$out/tests.log" | tail -25
# Worst relative L2 error per storage type over every case and tensor (the tolerances' evidence).
awk '/^rel-error gpu/ { if ($5 + 0 > worst[$3]) { worst[$3] = $5 + 0; at[$3] = $4 } }
     END { for (s in worst) printf "worst relative error %s: %.3e (%s)\n", s, worst[s], at[s] }' "$out/tests.log" | tee "$out/errors.txt"

if [ -z "${PLD_DEVICE_QUICK:-}" ]; then
  if command -v compute-sanitizer >/dev/null; then
    # The smaller cases: memcheck slows every kernel and API call down by one to two orders.
    filter='CUDA layer matches the CPU layer: per-sample rows*,A dropped CUDA layer*,CUDA layer misuse*,CUDA layer matches the CPU layer: tanh GELU*'
    stamp "compute-sanitizer memcheck"
    timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 build-gpu/tests/pld_cuda_tests "$filter" >"$out/memcheck.log" 2>&1 \
      && status_memcheck=clean || status_memcheck=FAILED
    tail -3 "$out/memcheck.log"
    stamp "compute-sanitizer racecheck"
    timeout 180 compute-sanitizer --tool racecheck --error-exitcode 9 build-gpu/tests/pld_cuda_tests "$filter" >"$out/racecheck.log" 2>&1 \
      && status_racecheck=clean || status_racecheck=FAILED
    tail -3 "$out/racecheck.log"
  fi
  stamp "benchmark"
  build-gpu/benchmarks/bench_cuda_layer --benchmark_repetitions=3 --benchmark_min_time=0.3 \
    --benchmark_format=json --benchmark_out="$out/bench.json" --benchmark_out_format=json >"$out/bench.log" 2>&1 \
    && status_bench=ran || status_bench=FAILED
  stamp "PyTorch peer"
  PYTHONUNBUFFERED=1 timeout 300 python3 benchmarks/peer/torch_gpu_layer.py --out "$out/peer.json" >"$out/peer.log" 2>&1 \
    && status_peer=ran || status_peer=FAILED
  tail -3 "$out/peer.log"
fi

stamp "done"
echo "tests: $status_tests  memcheck: $status_memcheck  racecheck: $status_racecheck  benchmark: $status_bench  peer: $status_peer"
if [ -f "$out/bench.json" ]; then
  [ -f "$out/errors.txt" ] && cat "$out/errors.txt"
  python3 benchmarks/cuda_layer_table.py "$out/bench.json" $([ -f "$out/peer.json" ] && echo "$out/peer.json") | tee "$out/table.txt"
fi
[ "$status_tests" = passed ] && [ "$status_memcheck" != FAILED ] && [ "$status_racecheck" != FAILED ] && [ "$status_bench" != FAILED ]
