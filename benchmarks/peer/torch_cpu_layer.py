#!/usr/bin/env python3
"""The PyTorch peer of bench_cpu_layer: nn.TransformerEncoderLayer(norm_first=True) on the CPU.

Same shapes and mode as benchmarks/bench_cpu_layer.cpp: BERT-mini/small/base, T=128, B=16, float32,
training (dropout 0.1, GELU), batch_first. Times forward, backward (retained graph) and
forward+backward; prints one JSON object per line: {"size", "phase", "ms"} (median of the reps).

    /usr/bin/python3 benchmarks/peer/torch_cpu_layer.py [--threads N] [--reps R]
Needs torch (Debian: apt-get install python3-torch).
"""
import argparse
import json
import os
import statistics
import time

import torch

SIZES = [("mini", 256, 4), ("small", 512, 8), ("base", 768, 12)]
B, T = 16, 128


def timed(fn, reps, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])

    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--sizes", default="mini,small,base", help="comma-separated subset of mini,small,base")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    wanted = args.sizes.split(",")
    for name, H, heads in SIZES:
        if name not in wanted:
            continue
        layer = torch.nn.TransformerEncoderLayer(
            d_model=H, nhead=heads, dim_feedforward=4 * H, dropout=0.1, activation="gelu",
            batch_first=True, norm_first=True)
        layer.train()
        x = torch.randn(B, T, H, requires_grad=True)
        dy = torch.randn(B, T, H) * 1e-3

        def fwd():
            with torch.no_grad():
                return layer(x)

        y = layer(x)

        def bwd():
            y.backward(dy, retain_graph=True)

        def fwd_bwd():
            layer(x).backward(dy)

        for phase, fn in (("forward", fwd), ("backward", bwd), ("forward+backward", fwd_bwd)):
            ms = timed(fn, args.reps)
            print(json.dumps({"size": name, "phase": phase, "ms": ms,
                              "threads": torch.get_num_threads(), "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
