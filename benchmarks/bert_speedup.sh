#!/usr/bin/env bash
# Pretraining throughput with PLD against no dropping, same configuration, same data, same run of
# this script: the realised speedup t_none / t_pld beside the ideal implied by the kept fraction
# of layer work, t_none / (t_none - layer_time_none * (1 - kept_fraction_pld)), where
# layer_time_none is the time the no-dropping run spent inside the encoder layers.
#   benchmarks/bert_speedup.sh [--steps N] [--size mini|small|base] [extra pld-bert flags]
# Defaults: BERT-mini, 200 steps of 16 x 128 tokens, gamma 0.05 (theta near its floor after
# ~60 steps, so the run is mostly at PLD's steady state). Needs the Brown corpus
# (scripts/fetch-brown.sh). Writes build/bench/bert-speedup/{none,pld}/ and prints one table.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=200
size=mini
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) steps="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    *) extra+=("$1"); shift ;;
  esac
done
bash scripts/setup-deps.sh >/dev/null
build="${PLD_BUILD_DIR:-build/release}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPLD_BUILD_TESTS=OFF -DPLD_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target pld-bert >/dev/null
bash scripts/fetch-brown.sh >/dev/null
root=build/bench/bert-speedup
rm -rf "$root"
for preset in none pld; do
  echo "== $preset: $steps steps of BERT-$size"
  "$build/examples/bert/pld-bert" pretrain --size "$size" --steps "$steps" --pld "$preset" --gamma 0.05 \
    --eval-every 0 --eval-max-seqs 64 --checkpoint-every 0 --log-every 50 --out "$root/$preset" "${extra[@]}" |
    grep -E "^(step|done|model)"
done
python3 - "$root" <<'PY'
import json, sys
root = sys.argv[1]
none = json.load(open(root + "/none/summary.json"))
pld = json.load(open(root + "/pld/summary.json"))
kept = pld["mean_kept_fraction"]
t_none, t_pld, layer_none = none["train_s"], pld["train_s"], none["layer_s"]
ideal = t_none / (t_none - layer_none * (1 - kept))
real = t_none / t_pld
print()
print("| run | train s | layer s | layer share | kept layer fraction | tokens/s |")
print("|---|---:|---:|---:|---:|---:|")
for name, s in (("none", none), ("pld", pld)):
    print("| %s | %.1f | %.1f | %.1f%% | %.3f | %.0f |" % (name, s["train_s"], s["layer_s"], 100 * s["layer_s"] / s["train_s"],
                                                        s["mean_kept_fraction"], s["tokens_per_s"]))
print()
print("realised speedup %.3fx, ideal from the kept fraction %.3fx, realised / ideal %.3f (%+.1f%%)" %
      (real, ideal, real / ideal, 100 * (real / ideal - 1)))
PY
