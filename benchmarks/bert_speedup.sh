#!/usr/bin/env bash
# Pretraining throughput with PLD against no dropping, same configuration, same data, same run of
# this script: the realised speedup t_none / t_pld beside the ideal implied by the kept fraction
# of layer work, t_none / (t_none - layer_time_none * (1 - kept_fraction_pld)), where
# layer_time_none is the time the no-dropping run spent inside the encoder layers.
#   benchmarks/bert_speedup.sh [--steps N] [--size mini|small|base] [--rounds R] [extra pld-bert flags]
# Defaults: BERT-mini, 200 steps of 16 x 128 tokens, gamma 0.05 (theta near its floor after
# ~60 steps, so the run is mostly at PLD's steady state), one round. R rounds run each preset R
# times in alternating order (none pld, pld none, ...) and compare the means: on a shared machine
# one run's speed moves by +-5% (session 20: one pair of BERT-small runs gave 0.94 of the ideal,
# three of each gave 1.005), and the order alternates so that a drift does not favour one preset.
# Needs the Brown corpus (scripts/fetch-brown.sh). Writes build/bench/bert-speedup/<preset>-<round>/
# and prints one table.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=200
size=mini
rounds=1
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) steps="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    *) extra+=("$1"); shift ;;
  esac
done
case "$rounds" in
  '' | *[!0-9]* | 0) echo "bert_speedup.sh: --rounds takes a positive integer, not '$rounds'" >&2; exit 2 ;;
esac
bash scripts/setup-deps.sh >/dev/null
build="${PLD_BUILD_DIR:-build/release}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPLD_BUILD_TESTS=OFF -DPLD_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target pld-bert >/dev/null
bash scripts/fetch-brown.sh >/dev/null
root=build/bench/bert-speedup
rm -rf "$root"
for ((r = 1; r <= rounds; r++)); do
  order="none pld"
  [ $((r % 2)) -eq 0 ] && order="pld none"
  for preset in $order; do
    echo "== round $r/$rounds, $preset: $steps steps of BERT-$size"
    "$build/examples/bert/pld-bert" pretrain --size "$size" --steps "$steps" --pld "$preset" --gamma 0.05 \
      --eval-every 0 --eval-max-seqs 64 --checkpoint-every 0 --log-every 50 --out "$root/$preset-$r" "${extra[@]}" |
      grep -E "^(step|done|model)"
  done
done
python3 - "$root" "$rounds" <<'PY'
import json, sys
root, rounds = sys.argv[1], int(sys.argv[2])
runs = {p: [json.load(open("%s/%s-%d/summary.json" % (root, p, r))) for r in range(1, rounds + 1)] for p in ("none", "pld")}
mean = lambda p, k: sum(s[k] for s in runs[p]) / rounds
print()
print("| run | round | train s | layer s | layer share | kept layer fraction | ms per kept layer-step | tokens/s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for p in ("none", "pld"):
    for r, s in enumerate(runs[p], 1):
        print("| %s | %d | %.1f | %.1f | %.1f%% | %.3f | %.1f | %.0f |" % (p, r, s["train_s"], s["layer_s"], 100 * s["layer_s"] / s["train_s"],
                                                                          s["mean_kept_fraction"], 1000 * s["seconds_per_layer_step"], s["tokens_per_s"]))
t_none, t_pld, layer_none, kept = mean("none", "train_s"), mean("pld", "train_s"), mean("none", "layer_s"), mean("pld", "mean_kept_fraction")
ideal = t_none / (t_none - layer_none * (1 - kept))
real = t_none / t_pld
print()
print("%srealised speedup %.3fx, ideal from the kept fraction %.3fx, realised / ideal %.3f (%+.1f%%)" %
      ("means over %d rounds: " % rounds if rounds > 1 else "", real, ideal, real / ideal, 100 * (real / ideal - 1)))
if rounds > 1:
    def pair(n, q):  # one round's realised / ideal, its ideal from its own no-dropping run
        return n["train_s"] / q["train_s"] * (n["train_s"] - n["layer_s"] * (1 - q["mean_kept_fraction"])) / n["train_s"]
    pairs = [pair(runs["none"][i], runs["pld"][i]) for i in range(rounds)]
    print("realised / ideal of each round's pair: " + ", ".join("%.3f" % x for x in pairs))
PY
