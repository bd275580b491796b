#!/usr/bin/env python3
"""Learning curves of a few pld-bert pretraining runs side by side (a configuration search, or a
long PreLN-vs-PLD pair): validation MLM loss against steps, wall time and layer-steps, with the
unigram and ln V reference lines pld-bert computed, as SVG plots and a markdown table (stdout).

usage: curve_report.py [--unigram X] OUT_PREFIX LABEL=RUN_DIR [LABEL=RUN_DIR ...]
  writes OUT_PREFIX-steps.svg, OUT_PREFIX-time.svg, OUT_PREFIX-layersteps.svg; prints the table.
  A run still in progress is read as far as it got. The unigram line comes from the first run's
  summary.json (or <RUN_DIR>.log's startup line; --unigram gives it by hand).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ablation_report import layer_steps_until, load_jsonl, svg_plot  # noqa: E402

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def reference_lines(run_dir):
    """unigram and uniform lines from the summary, or from the log's startup line."""
    import json
    summary = os.path.join(run_dir, "summary.json")
    if os.path.exists(summary):
        s = json.load(open(summary))
        if "validation_unigram_loss" in s:
            return s["validation_unigram_loss"], s.get("validation_uniform_loss")
    log = run_dir.rstrip("/") + ".log"
    for path in (log, os.path.join(os.path.dirname(run_dir), os.path.basename(run_dir) + ".log")):
        if os.path.exists(path):
            for line in open(path):
                if line.startswith("reference lines"):
                    parts = line.replace(",", " ").split()
                    return float(parts[parts.index("unigram") + 1]), float(parts[parts.index("ln") + 2])
    return None, None


def curve(run_dir):
    metrics = load_jsonl(os.path.join(run_dir, "metrics.jsonl"))
    import json
    opts = json.load(open(os.path.join(run_dir, "options.json")))
    layers = opts.get("model", {}).get("layers") or opts.get("layers") or 0
    train = [m for m in metrics if m.get("split") == "train"]
    evals = [m for m in metrics if m.get("split") == "validation"]
    pts = [(e["step"], e["elapsed_s"], layer_steps_until(train, e["step"], layers), e["mlm_loss"], e.get("mlm_accuracy", float("nan")))
           for e in evals]
    return pts, layers


def main(argv):
    unigram_arg = None
    if len(argv) > 2 and argv[1] == "--unigram":
        unigram_arg = float(argv[2])
        argv = [argv[0]] + argv[3:]
    if len(argv) < 3:
        sys.exit(__doc__)
    prefix = argv[1]
    runs = []
    for arg in argv[2:]:
        label, _, path = arg.partition("=")
        pts, layers = curve(path)
        runs.append((label, path, pts, layers))
    unigram, uniform = reference_lines(runs[0][1])
    if unigram_arg is not None:
        unigram = unigram_arg
    refs = []
    if unigram:
        refs.append(("unigram", unigram))
        refs.append(("goal: unigram - 1.5", unigram - 1.5))
    for suffix, idx, xlabel in (("steps", 0, "optimizer step"), ("time", 1, "pretraining wall time (s)"), ("layersteps", 2, "layer-steps run")):
        series = [(label, COLORS[i % len(COLORS)], [p[idx] for p in pts], [p[3] for p in pts], False)
                  for i, (label, _, pts, _) in enumerate(runs)]
        svg_plot(f"{prefix}-{suffix}.svg", f"validation MLM loss vs {xlabel}", xlabel, "validation MLM loss", series, refs=refs)
    print("| run | evaluations | last step | wall s | layer-steps | val MLM loss | val acc | below unigram |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, _, pts, _ in runs:
        if not pts:
            print(f"| {label} | 0 | | | | | | |")
            continue
        s, t, ls, loss, acc = pts[-1]
        below = f"{unigram - loss:.2f}" if unigram else ""
        print(f"| {label} | {len(pts)} | {s} | {t:.0f} | {ls:.0f} | {loss:.3f} | {100 * acc:.1f}% | {below} |")
    # Time and layer-steps for each run to reach the first run's final loss (the baseline's).
    if runs[0][2]:
        target = runs[0][2][-1][3]
        print()
        print(f"To reach the first run's final validation loss {target:.3f} (first evaluation at or below it):")
        print()
        print("| run | step | wall s | layer-steps |")
        print("|---|---:|---:|---:|")
        for label, _, pts, _ in runs:
            hit = next((p for p in pts if p[3] <= target), None)
            print(f"| {label} | " + (f"{hit[0]} | {hit[1]:.0f} | {hit[2]:.0f} |" if hit else "not reached | | |"))


if __name__ == "__main__":
    main(sys.argv)
