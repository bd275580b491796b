#!/usr/bin/env bash
# The CPU layer's forward+backward of this checkout against another revision, in one run: both
# bench_cpu_layer binaries alternate (R rounds, each a Google Benchmark run of the chosen cases)
# so the machine's noise hits both; prints each case's median time and new/old speedup.
#   benchmarks/cpu_layer_vs.sh [--rev REV] [--rounds R] [--filter REGEX]
# Defaults: REV 37e7b1c (the end of session 4), 3 rounds, forward+backward at small and base,
# fp32 and bf16. The other revision is built in build/bench/rev-REV from a git worktree.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=37e7b1c
rounds=3
filter='BM_LayerForwardBackward/size:[12]/'
while [ $# -gt 0 ]; do
  case "$1" in
    --rev) rev="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --filter) filter="$2"; shift 2 ;;
    *) echo "cpu_layer_vs: unknown option $1" >&2; exit 2 ;;
  esac
done
bash scripts/setup-deps.sh >/dev/null
new_build="${PLD_BUILD_DIR:-build/bench}"
cmake -S . -B "$new_build" -DCMAKE_BUILD_TYPE=Release -DPLD_BUILD_TESTS=OFF -DPLD_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$new_build" -j"$(nproc)" --target bench_cpu_layer >/dev/null
old_src=build/bench/src-$rev old_build=build/bench/rev-$rev
[ -d "$old_src" ] || git worktree add -f "$old_src" "$rev" >/dev/null
cmake -S "$old_src" -B "$old_build" -DCMAKE_BUILD_TYPE=Release -DPLD_BUILD_TESTS=OFF -DPLD_BUILD_EXAMPLES=OFF -DPLD_ENABLE_CUDA=OFF >/dev/null
cmake --build "$old_build" -j"$(nproc)" --target bench_cpu_layer >/dev/null
out=build/bench/vs-$rev
mkdir -p "$out"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; old $rev, new $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')"
for r in $(seq 1 "$rounds"); do
  for which in old new; do
    if [ "$which" = old ]; then bin="$old_build/benchmarks/bench_cpu_layer"; else bin="$new_build/benchmarks/bench_cpu_layer"; fi
    "$bin" --benchmark_filter="$filter" --benchmark_out="$out/$which-$r.json" --benchmark_out_format=json >/dev/null
  done
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
times = {}
for which in ("old", "new"):
    for r in range(1, rounds + 1):
        for b in json.load(open(f"{out}/{which}-{r}.json"))["benchmarks"]:
            times.setdefault(b["name"], {}).setdefault(which, []).append(b["real_time"])
size = {"0": "mini", "1": "small", "2": "base"}
print(f"| case | old ms (median of {rounds}) | new ms | new speedup |")
print("|---|---:|---:|---:|")
for name, t in times.items():
    parts = dict(p.split(":") for p in name.split("/")[1:3])
    label = f"{name.split('/')[0].replace('BM_Layer', '')} {size[parts['size']]} {'bf16' if parts['bf16'] == '1' else 'fp32'}"
    o, n = statistics.median(t["old"]), statistics.median(t["new"])
    print(f"| {label} | {o:.1f} | {n:.1f} | {o / n:.3f}x |")
PY
