#!/usr/bin/env bash
# The PLD ablation at small scale, on real data: every row pretrains the same model for the same
# number of steps with several seeds, then fine-tunes genre classification and POS tagging from
# each checkpoint; scripts/ablation_report.py writes the table and the plots.
#
#   scripts/ablation.sh            full run: BERT-mini, 400 steps x 16 x 128, 3 seeds (~1h45, 2 cores)
#   scripts/ablation.sh --quick    a tiny model on the committed Brown slice, 2 seeds (~1 minute)
# Options: --seeds N  --steps N  --out DIR (runs; default build/ablation[-quick])
#          --doc FILE (the results page; default docs/results.md, quick: DIR/results.md)
#          --corpus DIR  --build DIR  --skip-existing (reuse finished runs in DIR)
# Rows (Zhang & He 2020, Table 1, at this scale): PreLN with the base lr, PreLN with the large lr,
# Shallow (3/4 of the layers), Random (fixed keep ratio = PLD's mean over the run), TD only,
# DD only, PLD; all but the first use the large lr. Speedups are pretraining time against PreLN.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0; seeds=""; steps=""; out=""; doc=""; corpus=""; build="${PLD_BUILD_DIR:-build/release}"; skip=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --seeds) seeds="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --doc) doc="$2"; shift 2 ;;
    --corpus) corpus="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    --skip-existing) skip=1; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "ablation: unknown option $1" >&2; exit 2 ;;
  esac
done

if [ "$quick" = 1 ]; then
  seeds="${seeds:-2}"; steps="${steps:-60}"; out="${out:-build/ablation-quick}"; doc="${doc:-$out/results.md}"
  corpus="${corpus:-tests/data/brown-slice}"
  model=(--layers 4 --hidden 32 --heads 2 --max-len 32 --batch 8 --vocab-size 400)
  shallow_layers=3; lr=2e-3; lr_large=4e-3; gamma=0.05
  pre_extra=(--eval-every 20 --eval-max-seqs 64 --warmup 6 --log-every 10)
  ft_genre=(--epochs 8 --batch 8 --lr 3e-3 --log-every 1000)
  ft_pos=(--epochs 8 --batch 8 --lr 3e-3 --log-every 1000)
else
  seeds="${seeds:-3}"; steps="${steps:-400}"; out="${out:-build/ablation}"; doc="${doc:-docs/results.md}"
  model=(--size mini --max-len 128 --batch 16)
  shallow_layers=3; lr=5e-4; lr_large=1e-3; gamma=0.01
  pre_extra=(--eval-every 100 --eval-max-seqs 256 --warmup 40 --log-every 25)
  # Fine-tuning on a subset of the held-out training passages keeps each row's cost down: genre
  # needs a few passes to leave the majority class; POS learns within one.
  ft_genre=(--epochs 2 --batch 16 --lr 1e-3 --log-every 50 --max-train-seqs 1000)
  ft_pos=(--epochs 1 --batch 16 --lr 1e-3 --log-every 50 --max-train-seqs 600)
fi

bash scripts/setup-deps.sh >/dev/null
if [ -z "$corpus" ]; then
  bash scripts/fetch-brown.sh
  corpus="${PLD_DATA_DIR:-$HOME/.cache/pld}/brown"
fi
if [ ! -x "$build/examples/bert/pld-bert" ] || [ "${PLD_ABLATION_REBUILD:-1}" = 1 ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPLD_BUILD_TESTS=OFF -DPLD_BUILD_BENCHMARKS=OFF >/dev/null
  cmake --build "$build" -j"$(nproc)" --target pld-bert >/dev/null
fi
bert="$build/examples/bert/pld-bert"

# name|pretraining flags
rows=(
  "preln_lr|--pld none --lr $lr"
  "preln_large_lr|--pld none --lr $lr_large"
  "shallow|--pld none --lr $lr_large --layers $shallow_layers"
  "random|--pld random --keep-ratio pld-mean --theta-bar 0.5 --gamma $gamma --lr $lr_large"
  "td_only|--pld td_only --theta-bar 0.5 --gamma $gamma --lr $lr_large"
  "dd_only|--pld dd_only --theta-bar 0.5 --lr $lr_large"
  "pld|--pld pld --theta-bar 0.5 --gamma $gamma --lr $lr_large"
)
mkdir -p "$out"
start=$(date +%s)
{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem/{print $2}') GiB"
  echo "command: scripts/ablation.sh $([ "$quick" = 1 ] && echo --quick) --seeds $seeds --steps $steps"
  echo "corpus: $corpus"
  echo "model: ${model[*]}"
} >"$out/run-info.txt"
for row in "${rows[@]}"; do
  name="${row%%|*}"
  read -r -a flags <<<"${row#*|}"
  for seed in $(seq 1 "$seeds"); do
    dir="$out/$name/seed$seed"
    if [ "$skip" = 1 ] && [ -f "$dir/pos/summary.json" ]; then continue; fi
    rm -rf "$dir"
    mkdir -p "$dir"
    echo "== $name seed $seed ($(( ($(date +%s) - start) / 60 )) min so far)"
    # The model flags come first so a row's own --layers (Shallow) overrides them.
    "$bert" pretrain --corpus "$corpus" --out "$dir/pretrain" "${model[@]}" "${pre_extra[@]}" \
      --steps "$steps" --seed "$seed" --checkpoint-every 0 "${flags[@]}" >"$dir/pretrain.log"
    grep -E "^(validation|time per step)" "$dir/pretrain.log" || true
    "$bert" finetune --task genre --corpus "$corpus" --checkpoint "$dir/pretrain/checkpoint.bin" \
      --out "$dir/genre" --seed "$seed" "${ft_genre[@]}" >"$dir/genre.log"
    tail -n 1 "$dir/genre.log"
    "$bert" finetune --task pos --corpus "$corpus" --checkpoint "$dir/pretrain/checkpoint.bin" \
      --out "$dir/pos" --seed "$seed" "${ft_pos[@]}" >"$dir/pos.log"
    tail -n 1 "$dir/pos.log"
  done
done
echo "total: $(( ($(date +%s) - start) / 60 )) min" >>"$out/run-info.txt"
python3 scripts/ablation_report.py "$out" "$doc"
