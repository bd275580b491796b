#!/usr/bin/env bash
# The test command: installs what is missing, configures, builds and runs every test, then the
# same suites under AddressSanitizer + UndefinedBehaviorSanitizer in their own build directory,
# then a short libFuzzer smoke run of every fuzz target.
#   scripts/test.sh                     all three (CI runs this)
#   PLD_BUILD_DIR=dir scripts/test.sh   the main build in `dir` (default build/test, Release)
#   PLD_SANITIZE=0 / PLD_FUZZ=0         skip the sanitizer part / the fuzzing smoke run
#   PLD_CUDA_ARCHITECTURES="80;90"      the CUDA architectures of the main build (default 80)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-deps.sh
build="${PLD_BUILD_DIR:-build/test}"
jobs="$(nproc 2>/dev/null || echo 2)"

# Each phase says when it starts (seconds since this script began): CI's time budget is read off these.
echo "== 1/3 tests (Release, $build) [+${SECONDS}s]"
# The CUDA code for one architecture here, sm_80 (the oldest pld supports; its PTX also runs on
# newer GPUs): CI has no GPU and compiles it to check it; the second architecture of a default
# build (sm_90) was 32% of nvcc's time (session 20). scripts/device-check.sh builds for the lent
# GPU's own architecture.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="${PLD_CUDA_ARCHITECTURES:-80}"
cmake --build "$build" -j"$jobs"
echo "-- built [+${SECONDS}s]"
ctest --test-dir "$build" --output-on-failure -j"$jobs"

if [ "${PLD_SANITIZE:-1}" != 0 ]; then
  # Every C++ test program, pld-bert, pld-schedule and the minimal example built with ASan + UBSan
  # (any report fails the test: -fno-sanitize-recover, halt_on_error). Not here: the CUDA device
  # tests and benchmark (nvcc links them), pld-bert's GPU trainer (PLD_BERT_CUDA=OFF: nvcc's
  # objects would not be instrumented; the SIMT tests run its code instrumented), the packaging
  # and device-check tests (they drive other builds), the MPI tests (Open MPI's own allocations at
  # exit read as leaks), the LibTorch adapter (Debian's LibTorch is not built with ASan;
  # PLD_ENABLE_TORCH=OFF there), and the ablation script's tests (they test the script and its
  # report; the pld-bert runs they start take pretrain, resume, signals and finetune, which
  # pld-bert.kill-resume and pld_bert_tests run under the sanitizers, and were 134 s of this phase).
  # -O1, as ASan's documentation suggests: against -O2, the build took 6.6 instead of 10.6 minutes
  # on 2 cores and the tests 194 instead of 179 s (session 15).
  san="${PLD_SANITIZE_BUILD_DIR:-build/sanitize}"
  echo "== 2/3 tests under AddressSanitizer + UndefinedBehaviorSanitizer ($san) [+${SECONDS}s]"
  sanitize="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
  cmake -S . -B "$san" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS="$sanitize" \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" -DPLD_BUILD_BENCHMARKS=OFF -DPLD_WARNINGS_AS_ERRORS=OFF -DPLD_ENABLE_TORCH=OFF -DPLD_BERT_CUDA=OFF >/dev/null
  # One target (tests/CMakeLists.txt: pld_sanitizer_suite) so the programs build in parallel.
  cmake --build "$san" -j"$jobs" --target pld_sanitizer_suite
  echo "-- built [+${SECONDS}s]"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$san" --output-on-failure -j"$jobs" \
      -E '^(packaging\.|dist\.|ablation\.|cuda\.(layer|bench|device-check|peer|sanitizer))'
fi

if [ "${PLD_FUZZ:-1}" != 0 ]; then
  echo "== 3/3 fuzzing smoke run (scripts/fuzz.sh --smoke) [+${SECONDS}s]"
  bash scripts/fuzz.sh --smoke
fi
echo "== done [+${SECONDS}s]"
