#!/usr/bin/env bash
# The ablation resumes: in a finished --quick run directory, make one PLD run look interrupted
# (its last checkpoint kept, its summary and fine-tuning gone, as after a kill mid-pretraining:
# the checkpoint is at step 30 of 60) and another one killed before fine-tuning ended; rerun the
# script. It must skip every finished run, resume the first from its checkpoint, redo the
# fine-tuning of the second, and leave a complete report.
#   ablation_resume.sh BUILD_DIR RUN_DIR
set -euo pipefail
build=$1 run=$2
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here"
bert="$build/examples/bert/pld-bert"
a="$run/pld/seed1" b="$run/td_only/seed2"
[ -f "$a/pos/summary.json" ] && [ -f "$b/pos/summary.json" ] || { echo "needs a finished --quick run in $run"; exit 1; }
# Interrupted pretraining: rerun seed 1 of PLD to step 30 only (as if killed after that checkpoint).
rm -rf "$a"
mkdir -p "$a"
"$bert" pretrain --corpus tests/data/brown-slice --out "$a/pretrain" --layers 4 --hidden 32 --heads 2 --max-len 32 --batch 8 \
  --vocab-size 400 --eval-max-seqs 64 --warmup 6 --log-every 3 --eval-every 3 --checkpoint-every 3 --steps 60 --seed 1 \
  --resume auto --pld pld --theta-bar 0.5 --gamma 0.05 --lr 4e-3 --stop-at 30 >"$a/pretrain.log"
rm -f "$a/pretrain/summary.json"
rm -rf "$b/pos"
before=$(stat -c %Y "$run/preln_lr/seed1/pos/summary.json")
# Prose above the marker that quotes it must not be taken for it (the report keeps what follows
# the marker line and rewrites everything above).
sed -i '1a Prose that quotes the `<!-- discussion -->` marker.' "$run/results.md"
echo "Hand-written discussion kept across reports." >>"$run/results.md"
PLD_ABLATION_REBUILD=0 OMP_NUM_THREADS=1 bash scripts/ablation.sh --quick --build "$build" --out "$run" >"$run/resume.log"
grep -q "resumed from .* at step 30" "$a/pretrain.log" || { echo "PLD seed 1 did not resume from step 30"; tail "$a/pretrain.log"; exit 1; }
[ -f "$b/pos/summary.json" ] || { echo "TD only seed 2 was not fine-tuned again"; exit 1; }
[ "$(stat -c %Y "$run/preln_lr/seed1/pos/summary.json")" = "$before" ] || { echo "a finished run was redone"; exit 1; }
grep -c "^== " "$run/resume.log" | grep -qx 2 || { echo "expected exactly 2 runs to be worked on:"; grep "^== " "$run/resume.log"; exit 1; }
[ "$(grep -c '^<!-- discussion -->$' "$run/results.md")" = 1 ] || { echo "the report left more or less than one marker line"; exit 1; }
! grep -q "Prose that quotes" "$run/results.md" || { echo "the report kept prose from above the marker"; exit 1; }
grep -q "Hand-written discussion kept" "$run/results.md" || { echo "the report dropped the discussion below the marker"; exit 1; }
python3 tests/cli/check_ablation.py "$run" 2
echo "ablation resumed: 2 runs continued, the rest skipped"
