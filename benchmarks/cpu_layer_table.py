#!/usr/bin/env python3
"""Side-by-side table for the CPU layer: bench_cpu_layer's JSON and the torch peer's JSON lines.

    python3 benchmarks/cpu_layer_table.py OURS.json [PEER.jsonl]

Every ratio is between figures of the same run: layer GFLOP/s over the GEMM ceiling measured beside
it, torch time over ours, dropped layer time over kept layer time.
"""
import json
import sys

SIZES = ["mini", "small", "base"]
PHASES = [("forward", "BM_LayerForward"), ("backward", "BM_LayerBackward"),
          ("forward+backward", "BM_LayerForwardBackward")]


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        ours = json.load(f)
    rows = {}
    for b in ours["benchmarks"]:
        if b.get("run_type", "iteration") != "iteration":
            continue
        name = b["name"].split("/")[0]
        rows[(name, b["label"])] = b
    peer = {}
    if len(argv) > 2:
        with open(argv[2]) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    r = json.loads(line)
                    peer[(r["phase"], r["size"])] = r["ms"]

    def ms(b):
        scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b["time_unit"]]
        return b["real_time"] * scale

    ctx = ours.get("context", {})
    print("machine: %s CPUs at %s MHz; %s" % (ctx.get("num_cpus"), ctx.get("mhz_per_cpu"), ctx.get("date")))
    print()
    print("| size | phase | pld ms | tokens/s | GFLOP/s | % of GEMM ceiling | torch ms | torch / pld |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for size in SIZES:
        ceiling = rows.get(("BM_GemmCeiling", size))
        for phase, bench in PHASES:
            b = rows.get((bench, size))
            if not b:
                continue
            gf = b["GFLOP/s"]  # the counter is already in GFLOP per second
            cg = ceiling["GFLOP/s"] if ceiling else None
            tok = b["tokens/s"]
            t = peer.get((phase, size))
            print("| %s | %s | %.1f | %.0f | %.1f | %s | %s | %s |" % (
                size, phase, ms(b), tok, gf, "%.0f%%" % (100 * gf / cg) if cg else "-",
                "%.1f" % t if t else "-", "%.2fx" % (t / ms(b)) if t else "-"))
    print()
    print("| size | GEMM ceiling GFLOP/s | dropped layer fwd+bwd ms | dropped / kept |")
    print("|---|---:|---:|---:|")
    for size in SIZES:
        c, d, k = rows.get(("BM_GemmCeiling", size)), rows.get(("BM_LayerDropped", size)), rows.get(("BM_LayerForwardBackward", size))
        if c and d and k:
            cg = c["GFLOP/s"]
            print("| %s | %.1f | %.3f | %.2f%% |" % (size, cg, ms(d), 100 * ms(d) / ms(k)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
