#!/usr/bin/env python3
"""The PyTorch peer of bench_cpu_layer: nn.TransformerEncoderLayer(norm_first=True) on the CPU.

Same shapes and mode as benchmarks/bench_cpu_layer.cpp: BERT-mini/small/base, T=128, B=16, float32
parameters, training (dropout 0.1, GELU), batch_first; in fp32 and under
torch.cpu.amp.autocast(dtype=torch.bfloat16) (what a user with native bf16 would pick). Times
forward, backward (retained graph) and forward+backward; prints one JSON object per line:
{"size", "phase", "precision", "ms"} (median of the reps).

    /usr/bin/python3 benchmarks/peer/torch_cpu_layer.py [--threads N] [--reps R] [--precisions auto|fp32,bf16]
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


def native_bf16():
    """Whether the CPU multiplies bf16 in hardware (the flags Linux reports)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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
    ap.add_argument("--precisions", default="auto",
                    help="fp32 and/or bf16 (bf16: CPU autocast); auto: bf16 too where the CPU multiplies bf16 natively")
    args = ap.parse_args()
    if args.precisions == "auto":
        # Without native bf16 (AVX512-BF16 or AMX), torch 1.13's bf16 autocast runs 10-25x slower than
        # its fp32 (measured on an AVX2 AMD EPYC, session 12): no user would pick it, so it is not the peer.
        args.precisions = "fp32,bf16" if native_bf16() else "fp32"
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

        for precision in args.precisions.split(","):
            def cast():
                return torch.cpu.amp.autocast(enabled=precision == "bf16", dtype=torch.bfloat16)

            def fwd():
                with torch.no_grad(), cast():
                    return layer(x)

            with cast():
                y = layer(x)

            def bwd():
                y.backward(dy, retain_graph=True)

            def fwd_bwd():
                with cast():
                    out = layer(x)
                out.backward(dy)

            for phase, fn in (("forward", fwd), ("backward", bwd), ("forward+backward", fwd_bwd)):
                ms = timed(fn, args.reps)
                print(json.dumps({"size": name, "phase": phase, "precision": precision, "ms": ms,
                                  "threads": torch.get_num_threads(), "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
