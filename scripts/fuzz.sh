#!/usr/bin/env bash
# Builds pld's libFuzzer targets (tests/fuzz/fuzz_*.cpp) with clang, AddressSanitizer and
# UndefinedBehaviorSanitizer, and runs each for a while on a copy of its committed seed corpus.
#
#   scripts/fuzz.sh [SECONDS]          every target for SECONDS each (default 60)
#   scripts/fuzz.sh --smoke            every target for 5 seconds (what CI runs)
#   PLD_FUZZ_TARGETS="vocab brown" scripts/fuzz.sh 600     only those targets
#
# A target's input is refused with pld::Error or accepted; a crash, any other exception, a leak,
# undefined behaviour, a timeout (10 s per input) or out-of-memory (2 GB) is a finding: the
# reproducer is saved under build/fuzz/findings/<target>/ and the script exits non-zero. The
# table at the end has executions and coverage per target (docs/hardening.md has a long run's).
# Needs clang (Debian clang-14 with libclang-rt-14-dev), installed here when missing.
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=60
[ "${1:-}" = "--smoke" ] && seconds=5
[[ "${1:-}" =~ ^[0-9]+$ ]] && seconds=$1
out=build/fuzz
mkdir -p "$out"

cxx=$(command -v clang++ || command -v clang++-14 || true)
if [ -z "$cxx" ] || ! printf '#include <cstdint>\n#include <cstddef>\nextern "C" int LLVMFuzzerTestOneInput(const std::uint8_t*, std::size_t) { return 0; }\n' | \
    "$cxx" -x c++ -fsanitize=fuzzer - -o "$out/.probe" 2>/dev/null; then
  echo "fuzz.sh: installing clang and its fuzzer runtime"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq && \
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev >/dev/null || {
      echo "fuzz.sh: cannot install clang" >&2; exit 1; }
  cxx=$(command -v clang++ || command -v clang++-14)
fi
bash scripts/setup-deps.sh >/dev/null

targets=${PLD_FUZZ_TARGETS:-"checkpoint vocab json_config controller_state brown plain_text schedule_cli"}
flags=(-std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
       -Iinclude -Iexamples/bert -Itools -I/usr/include/eigen3 -Wno-unknown-pragmas)
status=0
report=()
pids=()
# Build in parallel (two at a time), then run one after another.
build_one() {
  local t=$1
  "$cxx" "${flags[@]}" "tests/fuzz/fuzz_$t.cpp" -o "$out/fuzz_$t" >"$out/build_$t.log" 2>&1
}
jobs=$(nproc 2>/dev/null || echo 2)
for t in $targets; do
  build_one "$t" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$jobs" ]; then wait "${pids[0]}" || true; pids=("${pids[@]:1}"); fi
done
wait
for t in $targets; do
  if [ ! -x "$out/fuzz_$t" ]; then
    echo "fuzz.sh: building fuzz_$t failed:"; tail -20 "$out/build_$t.log"; exit 1
  fi
done

for t in $targets; do
  work="$out/corpus/$t"
  mkdir -p "$work" "$out/findings/$t"
  cp -n tests/fuzz/corpus/"$t"/* "$work"/ 2>/dev/null || true
  log="$out/run_$t.log"
  echo "fuzz.sh: fuzz_$t for ${seconds}s"
  (cd "$out/findings/$t" && "../../fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
     -print_final_stats=1 "../../corpus/$t" >"../../run_$t.log" 2>&1)
  rc=$?
  execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1)
  cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+')
  if [ $rc -ne 0 ]; then
    status=1
    report+=("$(printf '%-18s %12s execs  cov %6s  FINDING (see %s, reproducer in %s)' "$t" "${execs:-?}" "${cov:-?}" "$log" "$out/findings/$t")")
    grep -E "ERROR|runtime error|SUMMARY|terminate called|what\(\)" "$log" | head -5
  else
    report+=("$(printf '%-18s %12s execs  cov %6s  clean' "$t" "${execs:-?}" "${cov:-?}")")
  fi
done
echo "----- fuzzing, ${seconds}s per target ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)) -----"
printf '%s\n' "${report[@]}"
exit $status
