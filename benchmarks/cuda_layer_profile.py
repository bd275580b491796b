#!/usr/bin/env python3
"""Where a CUDA layer step spends its time, kernel by kernel: runs bench_cuda_layer under Nsight
Compute (ncu) for one case, with one metric (gpu__time_duration.sum) over a window of launches
after the warm-up steps, and prints each kernel's share of the window's GPU time and its estimated
milliseconds per layer step (share x the step time the benchmark measured without ncu).

  cuda_layer_profile.py BENCH_BINARY BENCH_JSON [--case 'BM_Layer<pc::bf16>/model:0/T:128/B:128/kept:1']...
                        [--ncu ncu] [--out FILE]

ncu runs every kernel alone with its caches flushed and the clocks as found (--clock-control
none), so kernel times are a little longer than in the stream: read the shares, not the sums.
The window covers whole steps (launches per step from BENCH_JSON's 'launches/step' counter, which
counts pld's kernels and cuBLASLt calls). A kernel name is shortened to its function name.
"""
import argparse
import csv
import io
import json
import re
import subprocess
import sys

DEFAULT_CASES = ["BM_Layer<pc::bf16>/model:0/T:128/B:128/kept:1", "BM_Layer<pc::bf16>/model:1/T:512/B:32/kept:1"]


def bench_case(bench, case):
    """(step ms, launches per step) of CASE in the benchmark's JSON (median or first repetition)."""
    rows = [b for b in bench["benchmarks"] if b["name"].startswith(case + "/")]
    if not rows:
        raise SystemExit(f"cuda_layer_profile.py: {case} is not in the benchmark's JSON")
    med = [b for b in rows if b.get("aggregate_name") == "median"] or rows
    return float(med[0]["real_time"]), float(rows[0].get("launches/step", 0))


def short_name(name):
    """The kernel's function name without template arguments, parameters or namespaces."""
    name = re.sub(r"\(.*$", "", name)  # parameters
    depth, out = 0, ""
    for ch in name:  # drop template arguments
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif depth == 0:
            out += ch
    out = out.strip().split()[-1] if out.strip() else name
    return out.split("::")[-1][:60]


def profile(binary, case, launches, ncu):
    per_step = max(int(round(launches)), 1)
    # 3 warm-up steps in the benchmark, then a window of 2 whole steps.
    cmd = [ncu, "--clock-control", "none", "--metrics", "gpu__time_duration.sum", "--csv", "--print-units", "base",
           "--launch-skip", str(4 * per_step), "--launch-count", str(2 * per_step), binary,
           f"--benchmark_filter=^{re.escape(case)}/", "--benchmark_repetitions=1"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"cuda_layer_profile.py: ncu failed ({p.returncode}): {p.stderr.strip()[-400:]}")
    # ncu prints its own lines (==PROF==) and the benchmark's output before the CSV.
    lines = p.stdout.splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith('"ID"')), None)
    if start is None:
        raise SystemExit("cuda_layer_profile.py: no CSV in ncu's output: " + p.stdout[-400:])
    times = {}
    for row in csv.DictReader(io.StringIO("\n".join(lines[start:]))):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        k = short_name(row["Kernel Name"])
        t, n = times.get(k, (0.0, 0))
        times[k] = (t + float(row["Metric Value"].replace(",", "")), n + 1)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("bench_json")
    ap.add_argument("--case", action="append")
    ap.add_argument("--ncu", default="ncu")
    ap.add_argument("--out")
    a = ap.parse_args()
    with open(a.bench_json) as f:
        bench = json.load(f)
    text = []
    for case in a.case or DEFAULT_CASES:
        step_ms, launches = bench_case(bench, case)
        times = profile(a.binary, case, launches, a.ncu)
        total = sum(t for t, _ in times.values())
        if total <= 0:
            raise SystemExit(f"cuda_layer_profile.py: no kernel times for {case}")
        calls = sum(n for _, n in times.values())
        text.append(f"{case}: step {step_ms:.3f} ms (benchmark), {calls} kernels in a 2-step window, "
                    f"{launches:.0f} pld launches per step")
        text.append(f"  {'kernel':<60} {'calls/step':>10} {'share':>7} {'est. ms/step':>12}")
        for k, (t, n) in sorted(times.items(), key=lambda kv: -kv[1][0]):
            text.append(f"  {k:<60} {n / 2:>10.1f} {100 * t / total:>6.1f}% {step_ms * t / total:>12.3f}")
    out = "\n".join(text) + "\n"
    sys.stdout.write(out)
    if a.out:
        with open(a.out, "w") as f:
            f.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
