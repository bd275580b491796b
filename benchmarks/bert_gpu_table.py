#!/usr/bin/env python3
"""The table of scripts/device-check.sh train: pld-bert pretraining on the GPU against Hugging Face
in the same call, every figure a ratio of two measurements of that call.

  usage: bert_gpu_table.py RUNS_DIR [PEER_JSON]

RUNS_DIR holds pld-bert run directories (metrics.jsonl, summary.json): none (all layers), pld,
half (no dropping, half the layers: separates the layers' time from the rest), and fp16-* (the
fp16 stability probe). Rows that are missing are reported as missing.

Throughput is the steady state: the mean of the logged tokens/s after the first fifth of the
steps (the first steps make the cuBLASLt plans). Useful FLOPs per token count what BERT needs,
not what an implementation spends: per encoder layer 6 (4 H^2 + 2 H F) for the products and
12 T H for attention's two batched products (forward + backward = 3x forward), and the MLM head
(dense + decoder) on the masked 15% of the tokens; the same count divides pld-bert's and the
peer's time. MFU is against the GEMM ceiling measured in the same call (the layer's largest
product in bf16, peer.json), not against a datasheet.

Realised vs ideal PLD speedup (both over the same steady-state steps): the ideal is what the step would take if only the kept layers'
time shrank: t_rest + t_layers * kept, with t_layers and t_rest from the none and half runs
(t_none - t_half is the time of the layers the half run does not have).
"""
import json
import os
import sys


def load(run):
    try:
        with open(os.path.join(run, "summary.json")) as f:
            summary = json.load(f)
        with open(os.path.join(run, "options.json")) as f:
            options = json.load(f)
        train = []
        with open(os.path.join(run, "metrics.jsonl")) as f:
            for line in f:
                r = json.loads(line)
                if r.get("split") == "train":
                    train.append(r)
        return {"summary": summary, "options": options, "train": train}
    except (OSError, ValueError):
        return None


def late_mean(run, key, default):
    """The mean of a logged quantity after the first fifth of the steps (the steady state)."""
    steps = run["summary"]["steps_done"]
    late = [r[key] for r in run["train"] if r["step"] > steps / 5 and key in r]
    return sum(late) / len(late) if late else default


def steady_tps(run):
    return late_mean(run, "tokens_per_s", run["summary"].get("tokens_per_s", 0.0))


def steady_kept(run):
    return late_mean(run, "kept_fraction", run["summary"].get("mean_kept_fraction", 1.0))


def useful_flops_per_token(m, seq, mask_prob=0.15, kept=1.0):
    h, f, v, layers = m["hidden"], m["ffn"], m["vocab"], m["layers"]
    layer = 6 * (4 * h * h + 2 * h * f) + 12 * seq * h
    head = mask_prob * 6 * (h * h + h * v)
    return layers * kept * layer + head


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    runs_dir = sys.argv[1]
    peer = None
    if len(sys.argv) > 2:
        try:
            with open(sys.argv[2]) as f:
                peer = json.load(f)
        except (OSError, ValueError):
            peer = None
    runs = {name: load(os.path.join(runs_dir, name)) for name in sorted(os.listdir(runs_dir))} if os.path.isdir(runs_dir) else {}
    none, pld, half = runs.get("none"), runs.get("pld"), runs.get("half")
    ceiling = (peer or {}).get("gemm_ceiling", {}).get("flops_per_s")
    out = []
    if none:
        e = none["summary"].get("engine", {})
        m = none["options"]["model"]
        seq = m["max_len"]
        out.append(f"pld-bert on {e.get('gpu', '?')}, {e.get('precision', '?')}: L={m['layers']} H={m['hidden']} V={m['vocab']} "
                   f"T={seq} batch={none['options']['batch']}")
        if ceiling:
            out.append(f"GEMM ceiling (bf16, {peer['gemm_ceiling']['m']}x{peer['gemm_ceiling']['k']}x{peer['gemm_ceiling']['n']}, "
                       f"torch.matmul): {ceiling / 1e12:.1f} TFLOP/s")
        out.append(f"{'run':<22} {'tokens/s':>10} {'useful TFLOP/s':>15} {'of ceiling':>11}")
        rows = [("pld-bert none", none, 1.0)]
        if pld:
            rows.append(("pld-bert pld", pld, steady_kept(pld)))
        for name, run, kept in rows:
            tps = steady_tps(run)
            fl = useful_flops_per_token(m, seq, kept=kept) * tps
            out.append(f"{name:<22} {tps:>10.0f} {fl / 1e12:>15.1f} {(fl / ceiling if ceiling else float('nan')):>10.1%}")
        best_peer = None
        for r in (peer or {}).get("rows", []):
            if "error" in r:
                out.append(f"{'HF ' + r['mode']:<22} error: {r['error'][:80]}")
                continue
            fl = useful_flops_per_token(m, seq) * r["tokens_per_s"]
            out.append(f"{'HF ' + r['mode'] + ' (' + r.get('attention', '?') + ')':<22} {r['tokens_per_s']:>10.0f} {fl / 1e12:>15.1f} "
                       f"{(fl / ceiling if ceiling else float('nan')):>10.1%}")
            if best_peer is None or r["tokens_per_s"] > best_peer["tokens_per_s"]:
                best_peer = r
        if best_peer:
            out.append(f"pld-bert none / fastest HF ({best_peer['mode']}): {steady_tps(none) / best_peer['tokens_per_s']:.2f}x (goal >= 1.5x)")
        if pld and half:
            b_t = int(none["options"]["batch"]) * seq
            t_none, t_half = b_t / steady_tps(none), b_t / steady_tps(half)
            l_all, l_half = m["layers"], half["options"]["model"]["layers"]
            layers_t = (t_none - t_half) * l_all / (l_all - l_half)  # all L layers' time per step
            rest = t_none - layers_t
            kept = steady_kept(pld)
            ideal = t_none / (rest + layers_t * kept)
            realised = steady_tps(pld) / steady_tps(none)
            out.append(f"PLD: {kept:.1%} of layer-steps kept; layers {layers_t / t_none:.0%} of a no-drop step; speedup realised "
                       f"{realised:.3f}x, ideal {ideal:.3f}x -> {realised / ideal:.3f} of ideal (goal >= 0.98)")
    else:
        out.append("pld-bert none: missing (see logs)")
    probes = [(n, r) for n, r in runs.items() if n.startswith("fp16-")]
    if probes:
        out.append("fp16 stability probe (dynamic loss scaling):")
        for n, r in probes:
            if r is None:
                out.append(f"  {n}: no summary (diverged or failed: see logs)")
                continue
            s = r["summary"]
            last = r["train"][-1] if r["train"] else {}
            out.append(f"  {n}: {s.get('steps_done')} steps, {s.get('overflow_steps', 0)} overflow steps skipped, final scale "
                       f"{s.get('loss_scale', '?')}, last loss {last.get('loss', float('nan')):.3f}")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
