#!/usr/bin/env bash
# Everything that needs a GPU, in modes that each fit one device call (<= 10 minutes) with margin:
#
#   scripts/device-check.sh tests   Release build for this GPU's architecture, the CUDA tests (GPU
#                                   layer vs the CPU layer in double, the training kernels vs
#                                   double) with the worst error per storage type, compute-sanitizer
#                                   memcheck on a short filter of them.
#   scripts/device-check.sh bench   the same build, then bench_cuda_layer (pld's layer, the cuBLASLt
#                                   GEMM ceiling, a dropped layer) and the PyTorch peer (eager, SDPA,
#                                   torch.compile) in the same call, and the side-by-side table.
#   scripts/device-check.sh train   pld-bert pretraining on the GPU (issue 16): BERT-base, T = 128,
#                                   batch 128, bf16, 300 steps each of --pld none, --pld pld and
#                                   none with half the layers (the layers' share of a step); Hugging
#                                   Face BertForMaskedLM (eager, torch.compile) and the bf16 GEMM
#                                   ceiling in the same call; an fp16 stability probe (fp16 with loss
#                                   scaling at a large lr: none, dd_only, pld). Table: train.txt.
#   scripts/device-check.sh all     tests and bench in one call (one machine start instead of two).
#
# Every step has its own time cap, and all of them together stay inside PLD_DEVICE_DEADLINE seconds
# (default 540, under the tool's 600 s per call): a step that would pass it gets the time left or
# is skipped and says so. The summary is printed last. What comes back is at most 8 files in $OUT
# (the device tool returns no more): summary.txt, errors.txt, logs.tar.gz (every log, packed), and
# with the benchmark bench.json, peer.json, table.txt and profile.txt (ncu, kernel by kernel).
#
# Here, once:  ../shared/device/pack-deps.sh     (Eigen, Catch2, Google Benchmark -> .device-deps)
# On the GPU:  device run "scripts/device-check.sh all"  carry [".device-deps"]  timeout_s 600
# (docs/cuda_layer.md has the exact calls and what to do with the output.)
#
# Without a GPU (CI's dry run: PLD_DEVICE_PREBUILT=<a build dir with the CUDA targets>) it skips
# the configure and build, runs up to the point where a device is needed, reports the device steps
# as skipped, and leaves the files it would return in $OUT; it exits 0 then (77 never leaks out).
set -uo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
case "$mode" in
  tests|bench|train|all) ;;
  *) echo "usage: scripts/device-check.sh tests|bench|train|all   (see the comment at the top)" >&2; exit 2 ;;
esac
out="${OUT:-build-gpu/out}"
mkdir -p "$out"
logs="$out/logs"  # packed into logs.tar.gz at the end, then removed
rm -rf "$logs" && mkdir -p "$logs"
t0=$(date +%s)
stamp() { echo "[device-check $mode +$(( $(date +%s) - t0 ))s] $*"; }
summary=()
note() { summary+=("$*"); }
failed=0
deadline="${PLD_DEVICE_DEADLINE:-540}"
# cap N: a step's timeout, N seconds or the time left before the deadline (less 15 s to pack up).
cap() {
  local left=$(( deadline - ($(date +%s) - t0) - 15 ))
  (( left < $1 )) && echo "$left" || echo "$1"
}
# out_of_time STEP: fewer than 20 s are left; the step is noted as skipped.
out_of_time() {
  (( $(cap 100000) >= 20 )) && return 1
  note "$1: SKIPPED (the ${deadline} s deadline is near)"; failed=1; return 0
}

finish() {
  stamp "done"
  tar -czf "$out/logs.tar.gz" -C "$out" logs 2>/dev/null && rm -rf "$logs"
  {
    echo "device-check $mode: $(( $(date +%s) - t0 )) s, GPU: ${gpu:-none}"
    printf '%s\n' "${summary[@]}"
    [ -f "$out/errors.txt" ] && cat "$out/errors.txt"
    [ -f "$out/table.txt" ] && cat "$out/table.txt"
    [ -f "$out/train.txt" ] && cat "$out/train.txt"
  } >"$out/summary.txt"
  echo "----- summary -----"
  cat "$out/summary.txt"
  exit "$failed"
}

gpu=""
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >"$logs/gpu.txt" 2>&1
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.')
fi
arch="${arch:-90}"

# --- build ------------------------------------------------------------------------------------------
build="${PLD_DEVICE_PREBUILT:-build-gpu}"
if [ -n "${PLD_DEVICE_PREBUILT:-}" ]; then
  stamp "using the prebuilt binaries in $build (no configure, no build)"
  note "build: prebuilt ($build)"
else
  prefix=()
  [ -d .device-deps ] && prefix=(-DCMAKE_PREFIX_PATH="$PWD/.device-deps")
  generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  targets=(pld_cuda_tests pld_cuda_host_tests)
  [ "$mode" = bench ] && targets=(bench_cuda_layer)
  [ "$mode" = train ] && targets=(pld-bert)
  [ "$mode" = all ] && targets+=(bench_cuda_layer)
  stamp "configure (CUDA architecture $arch)"
  if ! timeout "$(cap 60)" cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "${prefix[@]}" \
      -DCMAKE_CUDA_ARCHITECTURES="$arch" -DPLD_BUILD_EXAMPLES=ON -DPLD_ENABLE_TORCH=OFF -DPLD_BUILD_TOOLS=OFF \
      -DPLD_WARNINGS_AS_ERRORS=OFF >"$logs/configure.log" 2>&1; then
    tail -30 "$logs/configure.log"; note "configure: FAILED (logs/configure.log)"; failed=1; finish
  fi
  stamp "build ${targets[*]}"
  bt0=$(date +%s)
  if ! timeout "$(cap 200)" cmake --build "$build" -j"$(nproc)" --target "${targets[@]}" >"$logs/build.log" 2>&1; then
    grep -E "error" "$logs/build.log" | head -40; tail -20 "$logs/build.log"
    note "build: FAILED (logs/build.log)"; failed=1; finish
  fi
  note "build: $(( $(date +%s) - bt0 )) s (${targets[*]})"
  # Whether pld_cuda_tests holds the NCCL test (tests/cuda/test_cuda_nccl.cu: built where NCCL is found).
  note "configure: $(grep -o 'MPI [A-Z]*, NCCL [A-Z]*' "$logs/configure.log" | head -1)"
fi

# --- tests --------------------------------------------------------------------------------------------
run_tests() {
  stamp "CUDA host tests"
  if timeout "$(cap 60)" "$build/tests/pld_cuda_host_tests" >"$logs/host_tests.log" 2>&1; then
    note "host tests: passed"
  else
    note "host tests: FAILED (logs/host_tests.log)"; failed=1
  fi
  out_of_time "CUDA tests" && return
  stamp "CUDA tests"
  local t
  t=$(cap 150)
  timeout "$t" "$build/tests/pld_cuda_tests" -r compact >"$logs/tests.log" 2>&1
  local rc=$?
  case $rc in
    0) note "CUDA tests: passed" ;;
    77) note "CUDA tests: skipped (no CUDA device)" ;;
    124) note "CUDA tests: TIMED OUT after $t s (logs/tests.log)"; failed=1 ;;
    *) note "CUDA tests: FAILED, exit $rc (logs/tests.log)"; failed=1 ;;
  esac
  grep -vE "^rel-error" "$logs/tests.log" | tail -25
  # Worst relative L2 error per storage type over every case and tensor (the tolerances' evidence).
  awk '/^rel-error gpu/ { if ($5 + 0 > worst[$3]) { worst[$3] = $5 + 0; at[$3] = $4 } }
       END { for (s in worst) printf "worst relative error %s: %.3e (%s)\n", s, worst[s], at[s] }' "$logs/tests.log" >"$out/errors.txt"
  # pld-bert's GPU model against its CPU model: worst gradient error of a tensor's largest per
  # storage; after four optimizer steps, worst weight difference in units of lr.
  awk '/^rel-error bert-(model|train|resume)/ { printf "%s %s %s: %s\n", $2, $3, $4, $5 }' "$logs/tests.log" >>"$out/errors.txt"
  [ -s "$out/errors.txt" ] || rm -f "$out/errors.txt"
  if [ $rc -eq 77 ]; then
    note "memcheck: skipped (no CUDA device)"
  elif ! command -v compute-sanitizer >/dev/null; then
    note "memcheck: skipped (no compute-sanitizer)"
  elif ! out_of_time memcheck; then
    # The smaller cases: memcheck slows every kernel and API call by one to two orders. (racecheck
    # is left out: pld's kernels use no shared memory, so it would check only cuBLASLt.)
    filter='CUDA layer matches the CPU layer: per-sample rows*,A dropped CUDA layer*,CUDA layer misuse*,CUDA layer matches the CPU layer: tanh GELU*,CUDA layer stack*,GPU embedding*,GPU softmax*,GPU fused AdamW*,GPU BERT model equals the CPU model: fp32*'
    stamp "compute-sanitizer memcheck"
    t=$(cap 100)
    timeout "$t" compute-sanitizer --tool memcheck --error-exitcode 9 "$build/tests/pld_cuda_tests" "$filter" >"$logs/memcheck.log" 2>&1
    case $? in
      0) note "memcheck: clean" ;;
      124) note "memcheck: TIMED OUT after $t s (logs/memcheck.log)"; failed=1 ;;
      *) note "memcheck: FAILED (logs/memcheck.log)"; failed=1 ;;
    esac
    tail -3 "$logs/memcheck.log"
  fi
}

# --- bench --------------------------------------------------------------------------------------------
run_bench() {
  out_of_time benchmark && return
  stamp "benchmark"
  local t
  t=$(cap 150)
  timeout "$t" "$build/benchmarks/bench_cuda_layer" --benchmark_repetitions=3 \
    --benchmark_format=json --benchmark_out="$out/bench.json" --benchmark_out_format=json >"$logs/bench.log" 2>&1
  local rc=$?
  case $rc in
    0) note "benchmark: ran" ;;
    77) note "benchmark: skipped (no CUDA device)"; rm -f "$out/bench.json" ;;
    124) note "benchmark: TIMED OUT after $t s (logs/bench.log; bench.json holds what finished)"; failed=1 ;;
    *) note "benchmark: FAILED, exit $rc (logs/bench.log)"; failed=1 ;;
  esac
  if [ $rc -eq 77 ]; then
    note "PyTorch peer: skipped (no CUDA device)"
  elif ! out_of_time "PyTorch peer"; then
    stamp "PyTorch peer"
    # The script rewrites peer.json after every row, so a timeout keeps the rows that finished.
    t=$(cap 150)
    PYTHONUNBUFFERED=1 timeout "$t" python3 benchmarks/peer/torch_gpu_layer.py --budget $(( t * 3 / 4 )) --out "$out/peer.json" \
      >"$logs/peer.log" 2>&1
    case $? in
      0) note "PyTorch peer: ran" ;;
      3) note "PyTorch peer: ran, some peers failed (see peer.json 'error')" ;;
      124) note "PyTorch peer: TIMED OUT (peer.json holds the rows that finished)" ;;
      *) note "PyTorch peer: FAILED (logs/peer.log)" ;;
    esac
    tail -3 "$logs/peer.log"
  fi
  # Kernel by kernel (Nsight Compute, one metric, two steps of two cases): where the step's time goes.
  if [ $rc -eq 0 ] && command -v ncu >/dev/null && ! out_of_time "kernel profile"; then
    stamp "kernel profile (ncu)"
    t=$(cap 90)
    if timeout "$t" python3 benchmarks/cuda_layer_profile.py "$build/benchmarks/bench_cuda_layer" "$out/bench.json" \
        --out "$out/profile.txt" >"$logs/profile.log" 2>&1; then
      note "kernel profile: profile.txt"
    else
      note "kernel profile: FAILED or timed out (logs/profile.log)"; rm -f "$out/profile.txt"
    fi
  fi
  if [ -s "$out/bench.json" ]; then
    python3 benchmarks/cuda_layer_table.py "$out/bench.json" $([ -s "$out/peer.json" ] && echo "$out/peer.json") \
      >"$out/table.txt" 2>"$logs/table.log" || rm -f "$out/table.txt"
  fi
}

# --- train -------------------------------------------------------------------------------------------
# pld-bert's runs go to $build/train-runs (their checkpoints are large); their metrics and
# summaries travel in logs.tar.gz, the table in train.txt.
run_train() {
  local bin="$build/examples/bert/pld-bert"
  if [ ! -x "$bin" ]; then
    note "train: pld-bert was not built (examples need nlohmann-json: ../shared/device/pack-deps.sh)"; failed=1; return
  fi
  if [ -z "$gpu" ]; then
    note "train: skipped (no CUDA device)"; return
  fi
  local corpus="${PLD_DEVICE_CORPUS:-.device-deps/brown}"
  if [ ! -d "$corpus" ]; then
    note "train: no Brown corpus at $corpus (cp -r ~/.cache/pld/brown .device-deps/); using the committed slice"
    corpus=tests/data/brown-slice
  fi
  local runs="$build/train-runs"
  rm -rf "$runs" && mkdir -p "$runs" "$logs/train"
  local common=(--device cuda --corpus "$corpus" --size base --max-len 128 --batch 128 --warmup 30 --eval-every 0
                --eval-max-seqs 128 --log-every 20 --checkpoint-every 0 --max-loss 0 --dropout 0.1 --threads 4)
  # one NAME SECONDS ARGS...: a pld-bert run into $runs/NAME, its log and records kept.
  one() {
    local name=$1 secs=$2; shift 2
    out_of_time "train $name" && return 1
    stamp "pld-bert $name"
    local vocab=()
    [ -f "$runs/none/vocab.txt" ] && vocab=(--vocab "$runs/none/vocab.txt")
    timeout "$(cap "$secs")" "$bin" pretrain "${common[@]}" "${vocab[@]}" --out "$runs/$name" "$@" >"$logs/train/$name.log" 2>&1
    local rc=$?
    mkdir -p "$logs/train/$name"
    cp "$runs/$name"/*.json* "$logs/train/$name/" 2>/dev/null
    rm -f "$runs/$name/checkpoint.bin"
    case $rc in
      0) note "train $name: ran" ;;
      124) note "train $name: TIMED OUT (logs/train/$name.log)"; failed=1 ;;
      *) note "train $name: exit $rc: $(tail -1 "$logs/train/$name.log")" ;;
    esac
    tail -2 "$logs/train/$name.log"
  }
  one none 100 --pld none --steps 300 --vocab-size 30522 --lr 1e-4 || return
  one pld 100 --pld pld --gamma 0.02 --steps 300 --lr 1e-4
  one half 80 --pld none --layers 6 --steps 300 --lr 1e-4
  if ! out_of_time "Hugging Face peer"; then
    stamp "Hugging Face peer"
    local v
    v=$(wc -l <"$runs/none/vocab.txt" 2>/dev/null || echo 30522)
    PYTHONUNBUFFERED=1 timeout "$(cap 180)" python3 benchmarks/peer/hf_bert_pretrain.py --vocab "$v" --out "$out/peer_bert.json" \
      >"$logs/peer_bert.log" 2>&1
    case $? in
      0) note "Hugging Face peer: ran" ;;
      3) note "Hugging Face peer: ran, a mode failed (peer_bert.json 'error')" ;;
      124) note "Hugging Face peer: TIMED OUT (peer_bert.json holds what finished)" ;;
      *) note "Hugging Face peer: FAILED (logs/peer_bert.log)"; tail -3 "$logs/peer_bert.log" ;;
    esac
  fi
  # fp16 at ten times the lr: does PLD's schedule keep it stable where no dropping does not?
  for preset in none dd_only pld; do
    one "fp16-$preset" 60 --pld "$preset" --gamma 0.02 --precision fp16 --steps 150 --warmup 15 --lr 1e-3
  done
  python3 benchmarks/bert_gpu_table.py "$runs" "$out/peer_bert.json" >"$out/train.txt" 2>"$logs/train_table.log" || rm -f "$out/train.txt"
}

case "$mode" in
  tests) run_tests ;;
  bench) run_bench ;;
  train) run_train ;;
  all) run_tests; run_bench ;;
esac
finish
