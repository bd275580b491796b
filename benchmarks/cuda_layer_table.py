#!/usr/bin/env python3
"""Side-by-side table of the CUDA layer benchmark and its PyTorch peers, every figure a ratio
measured in the same device call:

  cuda_layer_table.py BENCH.json PEER.json [--markdown]

BENCH.json is bench_cuda_layer's --benchmark_format=json output (medians are used when it has
repetitions), PEER.json is torch_gpu_layer.py --out. Columns: pld's forward+backward time, the
peers' times, pld's speedup over the fastest peer of the row (eager, SDPA or compiled),
pld's TFLOP/s as a share of the cuBLASLt GEMM ceiling, and a dropped layer's time over a kept one.
Then, when the JSON has BM_Stack, a BERT-base stack of 12 layers under PLD plans: its realised
speedup over keeping every layer beside the ideal (1 / the kept fraction of layer-rows).
"""
import argparse
import json
import re
import sys

NAME = re.compile(r"BM_Layer<[^>]*?(bf16|fp16|__nv_bfloat16|__half)>/model:(\d)/T:(\d+)/B:(\d+)/kept:(\d)")
MODELS = ["base", "large"]
DTYPES = {"bf16": "bf16", "__nv_bfloat16": "bf16", "fp16": "fp16", "__half": "fp16"}


STACK = re.compile(r"BM_Stack/mode:(\d)(?:/optimizer:(\d))?")
STACK_MODES = ["none", "pld per layer", "pld per sample"]


def load_stack(path):
    """{(mode name, with optimizer): (ms, kept fraction, TFLOP/s)} of BM_Stack (medians when there
    are repetitions)."""
    with open(path) as f:
        runs = json.load(f)["benchmarks"]
    has_median = any(r.get("aggregate_name") == "median" for r in runs)
    out = {}
    for r in runs:
        m = STACK.search(r["name"])
        if not m or (has_median and r.get("aggregate_name") != "median") or (not has_median and r.get("run_type") == "aggregate"):
            continue
        scale = {"ms": 1.0, "us": 1e-3, "ns": 1e-6, "s": 1e3}[r.get("time_unit", "ns")]
        out[(STACK_MODES[int(m.group(1))], m.group(2) == "1")] = (r["real_time"] * scale, r["kept"], r.get("TFLOP/s"))
    return out


def stack_lines(stack, ceiling):
    """BERT-base x12 under PLD: realised speedup over none against the ideal 1 / kept; with the
    optimizer, a training step of the stack and its share of the GEMM ceiling."""
    lines = []
    for opt in (False, True):
        if (STACK_MODES[0], opt) not in stack:
            continue
        none_ms, _, none_tf = stack[(STACK_MODES[0], opt)]
        what = "forward+backward+AdamW (skip dropped)" if opt else "forward+backward"
        mfu = f", {100 * none_tf / ceiling:.0f}% of the GEMM ceiling" if none_tf and ceiling else ""
        lines.append(f"stack (BERT-base, 12 layers, T=128, B=128, bf16, theta=0.5), {what}: none {none_ms:.2f} ms/step{mfu}")
        for mode in STACK_MODES[1:]:
            if (mode, opt) in stack:
                ms, kept, _ = stack[(mode, opt)]
                realised, ideal = none_ms / ms, 1.0 / kept
                lines.append(f"  {mode}: {ms:.2f} ms/step, {100 * kept:.1f}% of layer-rows kept, realised speedup {realised:.3f}x, "
                             f"ideal {ideal:.3f}x, realised / ideal {realised / ideal:.3f}")
    return lines


def load_bench(path):
    with open(path) as f:
        data = json.load(f)
    runs = data["benchmarks"]
    has_median = any(r.get("aggregate_name") == "median" for r in runs)
    layers, ceiling = {}, None
    for r in runs:
        if has_median and r.get("aggregate_name") != "median":
            continue
        if not has_median and r.get("run_type") == "aggregate":
            continue
        scale = {"ms": 1.0, "us": 1e-3, "ns": 1e-6, "s": 1e3}[r.get("time_unit", "ns")]
        ms = r["real_time"] * scale
        if r["name"].startswith("BM_GemmCeiling"):
            ceiling = r["TFLOP/s"]  # the counter is already a rate in TFLOP/s
            continue
        m = NAME.search(r["name"])
        if not m:
            continue
        dtype, model, seq, batch, kept = DTYPES[m.group(1)], MODELS[int(m.group(2))], int(m.group(3)), int(m.group(4)), m.group(5) == "1"
        entry = layers.setdefault((model, seq, batch, dtype), {})
        entry["kept_ms" if kept else "dropped_ms"] = ms
        if kept:
            entry["tflops"] = r["TFLOP/s"]
    return layers, ceiling


def load_peer(path):
    with open(path) as f:
        rows = json.load(f)
    out = {}
    for r in rows:
        if "ms" in r:  # rows with "error" (a failed torch.compile, say) have no time
            out.setdefault((r["model"], r["T"], r["B"], r["dtype"]), {})[r["peer"]] = r["ms"]
    return out


def table(layers, ceiling, peers):
    head = ["model", "T", "B", "dtype", "pld ms", "eager ms", "sdpa ms", "compiled ms", "pld speedup",
            "pld TFLOP/s", "of GEMM ceiling", "dropped / kept"]
    rows = []
    for key in sorted(layers, key=lambda k: (MODELS.index(k[0]), k[1], k[3])):
        e, p = layers[key], peers.get(key, {})
        kept = e.get("kept_ms")
        ref_name = min(p, key=p.get) if p else None  # the fastest peer of the row
        fmt = lambda v, f="{:.3f}": f.format(v) if v is not None else "-"
        speed = f"{p[ref_name] / kept:.2f}x vs {ref_name}" if kept and ref_name else "-"
        share = f"{100 * e['tflops'] / ceiling:.0f}%" if ceiling and "tflops" in e else "-"
        drop = f"{100 * e['dropped_ms'] / kept:.3f}%" if kept and "dropped_ms" in e else "-"
        rows.append([key[0], str(key[1]), str(key[2]), key[3], fmt(kept), fmt(p.get("eager")), fmt(p.get("sdpa")),
                     fmt(p.get("compiled")), speed, fmt(e.get("tflops"), "{:.0f}"), share, drop])
    return head, rows


def render(head, rows, ceiling, markdown):
    lines = []
    if markdown:
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
        lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.append(f"GEMM ceiling (cuBLASLt bf16 8192^3): {ceiling:.0f} TFLOP/s" if ceiling else "GEMM ceiling: not measured")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench")
    ap.add_argument("peer", nargs="?")
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    layers, ceiling = load_bench(a.bench)
    if not layers:
        print(f"cuda_layer_table.py: no BM_Layer results in {a.bench}", file=sys.stderr)
        return 1
    peers = load_peer(a.peer) if a.peer else {}
    head, rows = table(layers, ceiling, peers)
    print(render(head, rows, ceiling, a.markdown))
    for line in stack_lines(load_stack(a.bench), ceiling):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
