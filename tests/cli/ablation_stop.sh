#!/usr/bin/env bash
# Stopping an ablation loses nothing and leaves nothing running: start a --quick ablation with two
# runs at a time and long runs, once both runs train: SIGTERM to the script and its job shells (as
# pkill -f does), then in a second start SIGINT to the whole process group (a terminal's Ctrl-C); the
# script must exit 143, each pld-bert must have checkpointed ("interrupted by ..."), and no
# pld-bert may be left running.
#   ablation_stop.sh BUILD_DIR RUN_DIR
set -euo pipefail
build=$1 run=$2
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here"
for sig in TERM INT; do
  rm -rf "$run"
  PLD_ABLATION_REBUILD=0 OMP_NUM_THREADS=1 setsid bash scripts/ablation.sh --quick --build "$build" --out "$run" --jobs 2 --steps 100000 \
    --rows "preln_lr pld" >"$run.log" 2>&1 &
  script=$!
  logs=("$run/preln_lr/seed1/pretrain.log" "$run/pld/seed1/pretrain.log")
  for _ in $(seq 1 600); do
    n=0
    for l in "${logs[@]}"; do grep -qs "^step " "$l" && n=$((n + 1)); done
    [ "$n" = 2 ] && break
    sleep 0.1
  done
  [ "$n" = 2 ] || { echo "the two runs did not start training"; cat "$run.log"; kill -TERM -- "-$script" 2>/dev/null; exit 1; }
  if [ "$sig" = TERM ]; then
    pkill -TERM -f "scripts/ablation.sh .*--out $run"  # the script and its job shells, not the pld-berts (pkill -f)
  else
    kill -INT -- "-$script"  # the whole process group, pld-berts included (a terminal's Ctrl-C)
  fi
  rc=0
  wait "$script" || rc=$?
  [ "$rc" = 143 ] || { echo "ablation.sh exited $rc, expected 143"; cat "$run.log"; exit 1; }
  for l in "${logs[@]}"; do
    grep -qE "interrupted by SIG(TERM|INT)" "$l" || { echo "no checkpoint on the signal in $l"; tail -n 3 "$l"; exit 1; }
  done
  sleep 0.5
  if pgrep -f "pld-bert pretrain .*$run" >/dev/null; then
    echo "pld-bert left running:"; pgrep -af "pld-bert pretrain .*$run"; pkill -TERM -f "pld-bert pretrain .*$run"; exit 1
  fi
done
echo "ablation stopped by SIGTERM and by SIGINT: both runs checkpointed each time, nothing left running"
