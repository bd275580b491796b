#!/usr/bin/env bash
# Does training with bf16 products reach the fp32 run's quality? pld-bert pretrains the same
# model with --precision fp32 and --precision bf16 for several seeds (one thread each, one run at a
# time) and prints the final validation MLM loss of each, their means and spreads: the bf16 runs
# should sit within the seed-to-seed spread of the fp32 ones.
#   scripts/precision-check.sh [--seeds N] [--steps N] [--out DIR] [--corpus DIR] [--build DIR]
# Default: 3 seeds, 1000 steps of L=4 H=128 T=64 batch 16 with a 2000-token vocabulary on full
# Brown (~2 min a run on one core), evaluated on the whole validation split.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=3 steps=1000 out=build/precision corpus="" build="${PLD_BUILD_DIR:-build/release}"
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) seeds="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --corpus) corpus="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "precision-check: unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -z "$corpus" ]; then
  bash scripts/fetch-brown.sh >/dev/null
  corpus="${PLD_DATA_DIR:-$HOME/.cache/pld}/brown"
fi
bert="$build/examples/bert/pld-bert"
if [ ! -x "$bert" ]; then
  bash scripts/setup-deps.sh >/dev/null
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPLD_BUILD_TESTS=OFF -DPLD_BUILD_BENCHMARKS=OFF -DPLD_BERT_CUDA=OFF >/dev/null
  cmake --build "$build" -j"$(nproc)" --target pld-bert >/dev/null
fi
mkdir -p "$out"
for seed in $(seq 1 "$seeds"); do
  for p in fp32 bf16; do
    dir="$out/$p-seed$seed"
    [ -f "$dir/summary.json" ] && continue
    OMP_NUM_THREADS=1 "$bert" pretrain --corpus "$corpus" --out "$dir" --layers 4 --hidden 128 --heads 4 --max-len 64 --batch 16 \
      --vocab-size 2000 --lr 1e-3 --warmup 20 --steps "$steps" --seed "$seed" --precision "$p" --threads 1 \
      --eval-every "$steps" --eval-max-seqs 0 --checkpoint-every "$steps" --log-every 100 --resume auto >"$dir.log"
    echo "$p seed $seed: $(grep '^validation:' "$dir.log")"
  done
done
python3 - "$out" "$seeds" <<'PY'
import json, statistics, sys
out, seeds = sys.argv[1], int(sys.argv[2])
rows = {}
for p in ("fp32", "bf16"):
    rows[p] = [json.load(open(f"{out}/{p}-seed{s}/summary.json"))["validation_mlm_loss"] for s in range(1, seeds + 1)]
print("| products | " + " | ".join(f"seed {s}" for s in range(1, seeds + 1)) + " | mean | sample sd |")
print("|---|" + "---:|" * (seeds + 2))
for p, v in rows.items():
    sd = statistics.stdev(v) if len(v) > 1 else float("nan")
    print(f"| {p} | " + " | ".join(f"{x:.4f}" for x in v) + f" | {statistics.mean(v):.4f} | {sd:.4f} |")
diffs = [b - f for f, b in zip(rows["fp32"], rows["bf16"])]
print(f"bf16 - fp32, same seed: " + ", ".join(f"{d:+.4f}" for d in diffs) + f" (mean {statistics.mean(diffs):+.4f})")
PY
