#!/usr/bin/env bash
# pld-bert training throughput of this checkout against another revision (default: the last one
# before oneDNN, 88cd979, whose pld::cpu ran Eigen on OpenBLAS), same configuration, same data, in
# one run of this script, alternating the two so machine noise hits both:
#   benchmarks/bert_engine_vs.sh [--rev REV] [--steps N] [--rounds R] [--runs LIST] [extra pld-bert flags]
# Defaults: the demo's model (BERT-mini, 16 x 128 tokens, PLD), 60 steps, 2 rounds; this checkout
# with --precision auto and with --precision fp32; the old binary as OpenBLAS runs it here and
# with OPENBLAS_CORETYPE=Prescott, the generic core Debian's OpenBLAS 0.3.21 picks on the Xeons it
# mis-detects (issue 13), so both cases show up in one run. Prints tokens/s and the ratios.
# --runs picks some of old,old-prescott,new-auto,new-fp32 (comma-separated; the first is the
# ratios' base): --rev 4f8ec00 --runs old,new-auto compares this checkout with any revision.
# The other revision is built in build/bench/rev-REV from a git worktree (needs its dependencies:
# libopenblas-openmp-dev for 88cd979).
set -euo pipefail
cd "$(dirname "$0")/.."
rev=88cd979
steps=60
rounds=2
runs=old,old-prescott,new-auto,new-fp32
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rev) rev="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    *) extra+=("$1"); shift ;;
  esac
done
bash scripts/setup-deps.sh >/dev/null
build="${PLD_BUILD_DIR:-build/release}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPLD_BUILD_TESTS=OFF -DPLD_BUILD_BENCHMARKS=OFF -DPLD_BERT_CUDA=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target pld-bert >/dev/null
old_src=build/bench/src-$rev old_build=build/bench/rev-$rev
if [ ! -x "$old_build/examples/bert/pld-bert" ]; then
  rm -rf "$old_src"
  git worktree add --detach -f "$old_src" "$rev" >/dev/null 2>&1 || { git worktree prune; git worktree add --detach -f "$old_src" "$rev" >/dev/null; }
  cmake -S "$old_src" -B "$old_build" -DCMAKE_BUILD_TYPE=Release -DPLD_BUILD_TESTS=OFF -DPLD_BUILD_BENCHMARKS=OFF -DPLD_BERT_CUDA=OFF >/dev/null
  cmake --build "$old_build" -j"$(nproc)" --target pld-bert >/dev/null
fi
bash scripts/fetch-brown.sh >/dev/null
root=build/bench/bert-engine
rm -rf "$root"
mkdir -p "$root"
common=(--size mini --steps "$steps" --pld pld --eval-every 0 --eval-max-seqs 16 --checkpoint-every 0 --log-every 1000)
for r in $(seq 1 "$rounds"); do
  for run in ${runs//,/ }; do
    envs=()
    case $run in
      old) bin="$old_build/examples/bert/pld-bert"; flags=() ;;
      old-prescott) bin="$old_build/examples/bert/pld-bert"; flags=(); envs=(OPENBLAS_CORETYPE=Prescott) ;;
      new-auto) bin="$build/examples/bert/pld-bert"; flags=(--precision auto) ;;
      new-fp32) bin="$build/examples/bert/pld-bert"; flags=(--precision fp32) ;;
      *) echo "bert_engine_vs: unknown run '$run' (old, old-prescott, new-auto, new-fp32)" >&2; exit 2 ;;
    esac
    out="$root/$run-$r"
    env "${envs[@]}" "$bin" pretrain "${common[@]}" "${flags[@]}" "${extra[@]}" --out "$out" >"$out.log" 2>&1 || { tail -3 "$out.log"; exit 1; }
    echo "round $r $run: $(python3 -c "import json; print('%.0f tokens/s' % json.load(open('$out/summary.json'))['tokens_per_s'])")"
  done
done
python3 - "$root" "$rounds" "$rev" "$runs" <<'PY'
import json, sys, statistics, subprocess
root, rounds, rev, runs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].split(",")
tps = {run: [json.load(open(f"{root}/{run}-{r}/summary.json"))["tokens_per_s"] for r in range(1, rounds + 1)]
       for run in runs}
engine = json.load(open(f"{root}/{runs[-1]}-1/summary.json")).get("engine", {})
cpu = subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"], capture_output=True, text=True).stdout.strip()
core = subprocess.run(["python3", "-c", "import ctypes, glob; l = ctypes.CDLL(sorted(glob.glob('/usr/lib/x86_64-linux-gnu/openblas*/libopenblas*.so*'))[0]); "
                       "l.openblas_get_corename.restype = ctypes.c_char_p; print(l.openblas_get_corename().decode())"],
                      capture_output=True, text=True).stdout.strip() or "?"
print()
print(f"machine: {cpu}; OpenBLAS detects the core as {core}; new engine: {engine}")
print("| binary | tokens/s (median of %d) | vs %s |" % (rounds, runs[0] if runs[0] != "old" else rev))
print("|---|---:|---:|")
base = statistics.median(tps[runs[0]])
for run, v in tps.items():
    m = statistics.median(v)
    print(f"| {run} | {m:.0f} | {m / base:.2f}x |")
PY
