#!/usr/bin/env python3
"""The PyTorch peers of bench_cuda_layer: one Pre-LN encoder layer, forward+backward, training mode
(dropout 0.1), at the benchmark's shapes, timed with CUDA events (median of repeats):

  eager     nn.TransformerEncoderLayer(norm_first=True, activation=gelu, batch_first=True)
  sdpa      a hand-written Pre-LN layer: LayerNorm, one QKV Linear, F.scaled_dot_product_attention,
            out Linear, LayerNorm, Linear-GELU(tanh)-Linear, dropout on both residual branches
  compiled  the same hand-written layer under torch.compile

Writes one JSON object per (model, T, B, dtype, peer) to --out and prints them. --out is
rewritten (atomically) after every row, so a timeout loses only the row in progress; a peer that
fails (torch.compile errors, out of memory) becomes a row with "error" and the others go on.
--budget stops starting new rows after that many seconds. --device cpu --quick runs tiny shapes
on the CPU (no timing claims): a check that the script itself works.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

MODELS = {"base": (768, 12), "large": (1024, 16)}
SHAPES = [(128, 128), (512, 32)]  # (T, B), as bench_cuda_layer


def _math_attention(q, k, v, dropout_p=0.0):
    """Stand-in for torch < 2.0 (no SDPA), so --quick can check the script on old CPU builds."""
    p = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1)
    return F.dropout(p, dropout_p, dropout_p > 0) @ v


SDPA = getattr(F, "scaled_dot_product_attention", None)


class PreLnSdpa(nn.Module):
    """Pre-LN layer with PyTorch's fused attention; the same math as pld's layer (tanh GELU)."""

    def __init__(self, hidden, heads, ffn, dropout=0.1, eps=1e-12):
        super().__init__()
        self.heads, self.p = heads, dropout
        self.norm1 = nn.LayerNorm(hidden, eps=eps)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden, eps=eps)
        self.linear1 = nn.Linear(hidden, ffn)
        self.linear2 = nn.Linear(ffn, hidden)

    def forward(self, x):
        b, t, h = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        a = (SDPA or _math_attention)(q, k, v, dropout_p=self.p if self.training else 0.0)
        a = a.transpose(1, 2).reshape(b, t, h)
        x = x + F.dropout(self.out(a), self.p, self.training)
        f = self.linear2(F.gelu(self.linear1(self.norm2(x)), approximate="tanh"))
        return x + F.dropout(f, self.p, self.training)


def make(peer, hidden, heads, device, dtype):
    if peer == "eager":
        m = nn.TransformerEncoderLayer(hidden, heads, 4 * hidden, dropout=0.1, activation="gelu",
                                       layer_norm_eps=1e-12, batch_first=True, norm_first=True)
    else:
        m = PreLnSdpa(hidden, heads, 4 * hidden)
    m = m.to(device=device, dtype=dtype).train()
    if peer == "compiled":
        m = torch.compile(m)
    return m


def time_peer(m, x, dy, device, warmup, repeats):
    def step():
        x.grad = None
        m(x).backward(dy)

    for _ in range(warmup):
        step()
    times = []
    if device == "cuda":
        torch.cuda.synchronize()
        for _ in range(repeats):
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop))
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--dtypes", default="bf16,fp16", help="comma-separated: bf16, fp16")
    ap.add_argument("--compile-dtypes", default="bf16",
                    help="dtypes for which the compiled peer runs (each shape compiles anew: ~30 s)")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="tiny shapes, 2 repeats: checks the script, measures nothing")
    ap.add_argument("--out", default=None, help="write the results as a JSON list here (after every row)")
    ap.add_argument("--budget", type=float, default=0, help="seconds after which no new row starts (0: none)")
    ap.add_argument("--fail-compile", action="store_true", help=argparse.SUPPRESS)  # tests: a compile error is a row, not a crash
    a = ap.parse_args()
    if SDPA is None and not a.quick:
        print("torch_gpu_layer.py: this torch has no scaled_dot_product_attention (needs >= 2.0)", file=sys.stderr)
        return 1
    if a.device == "cuda" and not torch.cuda.is_available():
        print("torch_gpu_layer.py: no CUDA device", file=sys.stderr)
        return 77
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    models = {"tiny": (64, 4)} if a.quick else MODELS
    shapes = [(16, 2)] if a.quick else SHAPES
    repeats, warmup = (2, 1) if a.quick else (a.repeats, 5)
    results = []
    started = time.monotonic()

    def save():
        if a.out:
            tmp = a.out + ".tmp"
            with open(tmp, "w") as f:
                json.dump(results, f, indent=1)
            os.replace(tmp, a.out)

    save()  # an empty list at once: a run killed before its first row still leaves valid JSON
    failed = 0
    for name, (hidden, heads) in models.items():
        for seq, batch in shapes:
            for dname in a.dtypes.split(","):
                dtype = dtypes[dname]
                torch.manual_seed(0)
                x = torch.randn(batch, seq, hidden, device=a.device, dtype=dtype, requires_grad=True)
                dy = torch.randn_like(x)
                compiled = dname in a.compile_dtypes.split(",") and (not a.quick or a.fail_compile)
                peers = ["eager", "sdpa"] + (["compiled"] if compiled else [])
                for peer in peers:
                    if a.budget and time.monotonic() - started > a.budget:
                        print(f"torch_gpu_layer.py: budget of {a.budget:.0f} s spent; {name} T={seq} {dname} {peer} not run",
                              file=sys.stderr, flush=True)
                        continue
                    r = {"model": name, "T": seq, "B": batch, "dtype": dname, "peer": peer, "device": a.device,
                         "gpu": torch.cuda.get_device_name() if a.device == "cuda" else "cpu", "torch": torch.__version__}
                    try:
                        if peer == "compiled" and a.fail_compile:
                            raise RuntimeError("compile failure requested by --fail-compile")
                        m = make(peer, hidden, heads, a.device, dtype)
                        ms = time_peer(m, x, dy, a.device, warmup + (3 if peer == "compiled" else 0), repeats)
                        flops = 3 * (2 * batch * seq * hidden * 12 * hidden + 4 * batch * seq * seq * hidden)
                        r.update({"ms": ms, "tflops": flops / (ms * 1e-3) * 1e-12})
                        del m
                    except Exception as e:  # torch.compile (inductor, triton) or OOM: keep the other rows
                        failed += 1
                        r["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
                        if a.device == "cuda":
                            torch.cuda.empty_cache()
                    results.append(r)
                    print(json.dumps(r), flush=True)
                    save()
    return 0 if not failed else 3


if __name__ == "__main__":
    sys.exit(main())
