#!/usr/bin/env python3
"""Turns a scripts/ablation.sh run directory into the results page and its SVG plots.

    python3 scripts/ablation_report.py RUN_DIR DOC.md

Reads RUN_DIR/<row>/seed<k>/{pretrain/summary.json, pretrain/metrics.jsonl, pretrain/options.json,
genre/summary.json, pos/summary.json} and RUN_DIR/run-info.txt; writes DOC.md with two tables
(quality and time-to-target: mean and sample standard deviation over seeds; unfinished runs are
counted and left out) and, in DOC's directory under results/ (or beside the doc for other names),
four SVG plots drawn here with the standard library only.

Time-to-target: target A is the PreLN (base lr) rows' final validation loss (mean over its seeds),
target B (easier) its validation loss at half its steps. A run reaches a target at its first
evaluation at or below it (read off the measured curve, no interpolation); the time is the
pretraining time then (no evaluation time), the layer-steps the layers that ran until then.
"""
import json
import re
import math
import os
import statistics
import sys

ROWS = [
    ("preln_lr", "PreLN (base lr)"),
    ("preln_large_lr", "PreLN (large lr)"),
    ("postln", "Post-LN (base lr)"),
    ("shallow", "Shallow (3/4 layers)"),
    ("random", "Random (keep = PLD mean)"),
    ("td_only", "TD only"),
    ("dd_only", "DD only"),
    ("pld", "PLD"),
]
COLORS = ["#1f77b4", "#ff7f0e", "#17becf", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#000000"]


def load_jsonl(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def mean_sd(xs):
    if not xs:
        return None, None
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def fmt(xs, digits=3, pct=False):
    m, s = mean_sd(xs)
    if m is None:
        return "-"
    k = 100.0 if pct else 1.0
    if len(xs) == 1:  # one seed: no spread to report
        return ("%.*f" % (digits, m * k)) + ("%" if pct else "")
    return ("%.*f ± %.*f" % (digits, m * k, digits, s * k)) + ("%" if pct else "")


def svg_plot(path, title, xlabel, ylabel, series, width=780, height=420, refs=()):
    """series: list of (label, color, xs, ys, dashed); refs: list of (label, y) horizontal lines."""
    left, right, top, bottom = 70, 240, 40, 50
    xs_all = [x for s in series for x in s[2]]
    ys_all = [y for s in series for y in s[3]] + [y for _, y in refs]
    if not xs_all:
        return
    x0, x1 = min(xs_all), max(xs_all)
    y0, y1 = min(ys_all), max(ys_all)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1
    pad = 0.05 * (y1 - y0)
    y0, y1 = y0 - pad, y1 + pad
    pw, ph = width - left - right, height - top - bottom

    def X(x):
        return left + (x - x0) / (x1 - x0) * pw

    def Y(y):
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    def ticks(a, b, n=5):
        step = 10 ** math.floor(math.log10((b - a) / n))
        for m in (1, 2, 5, 10):
            if (b - a) / (step * m) <= n:
                step *= m
                break
        t = math.ceil(a / step) * step
        out = []
        while t <= b + 1e-12:
            out.append(t)
            t += step
        return out

    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (width, height),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>' % (left, title)]
    for t in ticks(x0, x1):
        o.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>' % (X(t), top, X(t), top + ph))
        o.append('<text x="%.1f" y="%d" text-anchor="middle">%g</text>' % (X(t), top + ph + 16, round(t, 6)))
    for t in ticks(y0, y1):
        o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>' % (left, Y(t), left + pw, Y(t)))
        o.append('<text x="%d" y="%.1f" text-anchor="end">%g</text>' % (left - 6, Y(t) + 4, round(t, 6)))
    o.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="black"/>' % (left, top, pw, ph))
    o.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' % (left + pw / 2, height - 10, xlabel))
    o.append('<text x="16" y="%.1f" text-anchor="middle" transform="rotate(-90 16 %.1f)">%s</text>' % (top + ph / 2, top + ph / 2, ylabel))
    for label, y in refs:
        o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#888" stroke-dasharray="2,3"/>' % (left, Y(y), left + pw, Y(y)))
        o.append('<text x="%d" y="%.1f" fill="#555" font-size="11">%s %.2f</text>' % (left + 4, Y(y) - 4, label, y))
    for i, (label, color, xs, ys, dashed) in enumerate(series):
        pts = " ".join("%.1f,%.1f" % (X(x), Y(y)) for x, y in zip(xs, ys))
        o.append('<polyline fill="none" stroke="%s" stroke-width="2" %s points="%s"/>' % (color, 'stroke-dasharray="6,4"' if dashed else "", pts))
        for x, y in zip(xs, ys):
            o.append('<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>' % (X(x), Y(y), color))
        ly = top + 14 + 18 * i
        o.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2" %s/>' % (left + pw + 12, ly - 4, left + pw + 36, ly - 4, color, 'stroke-dasharray="6,4"' if dashed else ""))
        o.append('<text x="%d" y="%d">%s</text>' % (left + pw + 42, ly, label))
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


def svg_bars(path, title, ylabel, bars, width=780, height=380):
    """bars: list of (label, color, mean or None, sd, reached, total)."""
    left, top, bottom = 70, 40, 90
    pw, ph = width - left - 20, height - top - bottom
    vals = [b[2] + b[3] for b in bars if b[2] is not None]
    if not vals:
        return
    y1 = max(vals) * 1.1
    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (width, height),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>' % (left, title),
         '<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="black"/>' % (left, top, pw, ph),
         '<text x="16" y="%.1f" text-anchor="middle" transform="rotate(-90 16 %.1f)">%s</text>' % (top + ph / 2, top + ph / 2, ylabel)]
    for k in range(6):
        v = y1 * k / 5
        y = top + ph - v / y1 * ph
        o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>' % (left, y, left + pw, y))
        o.append('<text x="%d" y="%.1f" text-anchor="end">%.0f</text>' % (left - 6, y + 4, v))
    w = pw / max(1, len(bars))
    for i, (label, color, m, sd, reached, total) in enumerate(bars):
        x = left + i * w + w * 0.2
        o.append('<text x="%.1f" y="%d" text-anchor="middle" transform="rotate(20 %.1f %d)">%s</text>' % (x + w * 0.3, top + ph + 18, x + w * 0.3, top + ph + 18, label))
        if m is None:
            o.append('<text x="%.1f" y="%d" text-anchor="middle" fill="#a00">not reached</text>' % (x + w * 0.3, top + ph - 6))
            continue
        h = m / y1 * ph
        o.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>' % (x, top + ph - h, w * 0.6, h, color))
        lo, hi = top + ph - (m - sd) / y1 * ph, top + ph - (m + sd) / y1 * ph
        cx = x + w * 0.3
        o.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>' % (cx, lo, cx, hi))
        o.append('<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10">%d/%d</text>' % (cx, hi - 4, reached, total))
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


def layer_steps_until(train, step, layers):
    """Layer-steps run up to `step`, from the training records' kept fractions per logging window."""
    done, prev = 0.0, 0
    for t in train:
        if t["step"] > step:
            break
        done += t["kept_fraction"] * (t["step"] - prev) * layers
        prev = t["step"]
    return done


def time_to(run, target):
    """(pretraining seconds, layer-steps) at the first evaluation with loss <= target, or None."""
    layers = run["options"].get("model", {}).get("layers", 0)
    train = [m for m in run["metrics"] if m.get("split") == "train"]
    for m in run["metrics"]:
        if m.get("split") == "validation" and m["mlm_loss"] <= target:
            return m["elapsed_s"], layer_steps_until(train, m["step"], layers)
    return None


def machine_load(root):
    """{run directory: (seconds monitored, mean own cores, mean other cores, mean steal cores)} from
    scripts/load_monitor.py's samples (ablation.sh runs it beside the runs); {} without the file."""
    acc = {}
    for line in load_jsonl(os.path.join(root, "load.jsonl")) if os.path.exists(os.path.join(root, "load.jsonl")) else []:
        for run, own in line["runs"].items():
            a = acc.setdefault(run, [0.0, 0.0, 0.0, 0.0])
            dt = line["dt"]
            a[0] += dt
            a[1] += own * dt
            a[2] += line["other_cores"] * dt
            a[3] += line["steal_cores"] * dt
    return {run: (a[0], a[1] / a[0], a[2] / a[0], a[3] / a[0]) for run, a in acc.items() if a[0] > 0}


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    root, doc = argv[1], argv[2]
    doc_dir = os.path.dirname(os.path.abspath(doc))
    plot_dir = os.path.join(doc_dir, "results") if os.path.basename(doc) == "results.md" and os.path.basename(doc_dir) == "docs" else doc_dir
    os.makedirs(plot_dir, exist_ok=True)
    info = open(os.path.join(root, "run-info.txt")).read().strip().splitlines()
    if os.path.exists(os.path.join(root, "binary.txt")):  # the pld-bert copy the runs used (ablation.sh pins one)
        info += open(os.path.join(root, "binary.txt")).read().strip().splitlines()

    data, unfinished = {}, {}
    for key, _ in ROWS:
        seeds = sorted(d for d in os.listdir(os.path.join(root, key)) if d.startswith("seed")) if os.path.isdir(os.path.join(root, key)) else []
        runs = []
        unfinished[key] = 0
        for sd in seeds:
            base = os.path.join(root, key, sd)
            try:
                pre = json.load(open(os.path.join(base, "pretrain", "summary.json")))
                metrics = load_jsonl(os.path.join(base, "pretrain", "metrics.jsonl"))
                options = json.load(open(os.path.join(base, "pretrain", "options.json")))
                genre = json.load(open(os.path.join(base, "genre", "summary.json")))
                pos = json.load(open(os.path.join(base, "pos", "summary.json")))
                if pre.get("steps_done") != int(options.get("steps", pre.get("steps_done"))):
                    raise ValueError("pretraining stopped at step %s" % pre.get("steps_done"))
            except (OSError, ValueError) as e:
                print("ablation_report: %s/%s unfinished (%s); left out" % (key, sd, e), file=sys.stderr)
                unfinished[key] += 1
                continue
            # Pretraining seconds over every process of the run: summary.json's train_s counts only
            # the last one (a resumed run), the metrics' elapsed_s carries the checkpointed total.
            pre["train_s_total"] = max([m.get("elapsed_s", 0.0) for m in metrics] + [pre["train_s"]])
            runs.append({"pre": pre, "metrics": metrics, "options": options, "genre": genre, "pos": pos, "seed_dir": sd})
        data[key] = runs
    if not data.get("preln_lr"):
        print("ablation_report: no finished PreLN (base lr) run in %s" % root, file=sys.stderr)
        return 1

    base_time = statistics.mean(r["pre"]["train_s_total"] for r in data["preln_lr"])
    base_evals = [[m for m in r["metrics"] if m.get("split") == "validation"] for r in data["preln_lr"]]
    target_a = statistics.mean(e[-1]["mlm_loss"] for e in base_evals)
    half = [min(e, key=lambda m: abs(m["step"] - e[-1]["step"] / 2)) for e in base_evals]
    target_b = statistics.mean(m["mlm_loss"] for m in half)
    ref = data["preln_lr"][0]["pre"]
    unigram, uniform = ref.get("validation_unigram_loss"), ref.get("validation_uniform_loss")

    # Planned runs: run-info.txt's "planned runs:" line, or (older runs) the rows times --seeds.
    planned = None
    for l in info:
        m = re.match(r"planned runs: (\d+)", l) or (re.search(r"--seeds (\d+)", l) if l.startswith("command:") else None)
        if m and (planned is None or l.startswith("planned")):
            planned = int(m.group(1)) * (1 if l.startswith("planned") else len(ROWS))
    finished = sum(len(v) for v in data.values())
    lines = ["# PLD ablation at small scale", ""]
    if planned and finished < planned:
        lines += ["> **Partial table: %d of the %d planned runs have finished.** The rest are left out (the seeds column counts the "
                  "finished runs, and the started but unfinished ones in parentheses); `scripts/ablation.sh` with the same options "
                  "resumes them." % (finished, planned), ""]
    lines += ["Made by `scripts/ablation.sh` and `scripts/ablation_report.py`; every number below is from that run.", ""]
    lines += ["- " + l for l in info]
    if unigram is not None:
        lines += ["- reference lines on the validation masks: unigram cross-entropy %.3f nats (training-split token frequencies), "
                  "uniform ln V %.3f" % (unigram, uniform)]
    lines += ["- targets: A = PreLN (base lr) final validation loss %.3f; B = its loss at half its steps %.3f" % (target_a, target_b)]
    lines += ["", "Mean ± sample standard deviation over the finished seeds (a single value where one seed finished; unfinished runs are counted in the seeds column "
              "and left out). Validation MLM: fixed masks (the same for every run), all layers kept. Genre: accuracy and "
              "macro-F1 on the held-out test documents' passages (15 classes). POS: accuracy over words (12 coarse tags). "
              "Time: pretraining steps only (no evaluation); speedup = PreLN (base lr) time / row time.", "",
              "| row | seeds | val MLM loss | val MLM acc | genre acc | genre macro-F1 | POS acc | pretrain s | speedup | kept layer fraction |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    seeds_cell = lambda key, runs: "%d" % len(runs) + (" (+%d unfinished)" % unfinished[key] if unfinished[key] else "")
    for key, label in ROWS:
        runs = data.get(key, [])
        if not runs:
            lines.append("| %s | %s | not run | | | | | | | |" % (label, seeds_cell(key, runs)))
            continue
        t = [r["pre"]["train_s_total"] for r in runs]
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %.2fx | %.3f |" % (
            label, seeds_cell(key, runs),
            fmt([r["pre"].get("validation_mlm_loss", float("nan")) for r in runs]),
            fmt([r["pre"].get("validation_mlm_accuracy", float("nan")) for r in runs], 1, True),
            fmt([r["genre"]["test_accuracy"] for r in runs], 1, True),
            fmt([r["genre"]["test_macro_f1"] for r in runs], 3),
            fmt([r["pos"]["test_accuracy"] for r in runs], 1, True),
            fmt(t, 0 if statistics.mean(t) >= 100 else 2), base_time / statistics.mean(t),
            statistics.mean(r["pre"]["mean_kept_fraction"] for r in runs)))
    chance_g = statistics.mean(r["genre"]["majority_class_accuracy"] for r in data["preln_lr"])
    chance_p = statistics.mean(r["pos"]["majority_class_accuracy"] for r in data["preln_lr"])
    lines += ["", "Majority-class baselines on the same test splits: genre %.1f%%, POS %.1f%%." % (100 * chance_g, 100 * chance_p), ""]

    # Wall times are only comparable between runs that had their cores to themselves.
    load = machine_load(root)
    shared, monitored = [], 0
    for key, label in ROWS:
        for r in data.get(key, []):
            run = os.path.join(key, r["seed_dir"], "pretrain")
            if run not in load:
                continue
            monitored += 1
            secs, own, other, steal = load[run]
            if other > 0.1 or steal > 0.05:
                shared.append("%s %s (%.0f%% of its pretraining monitored: %.2f cores of other work, %.2f stolen, "
                              "the run itself %.2f cores)" % (label, r["seed_dir"],
                                                              min(100.0, 100 * secs / r["pre"]["train_s_total"]), other, steal, own))
    if monitored:
        lines += ["Machine load during pretraining (`load.jsonl`, scripts/load_monitor.py; %d of %d finished runs monitored): " % (
            monitored, finished) + ("runs that shared the machine with other work, whose wall times are inflated and should "
                                    "be compared by layer-steps: " + "; ".join(shared) + "." if shared else
                                    "no monitored run shared the machine with other work (under 0.1 cores on average)."), ""]

    lines += ["Time to quality: pretraining seconds and layer-steps until the first evaluation at or below the target "
              "(reached/total seeds; the mean is over the seeds that reached it).", "",
              "| row | time to A (s) | layer-steps to A | reached A | time to B (s) | layer-steps to B | reached B | A: PreLN time / row time |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    bars = []
    base_to_a = [x for x in (time_to(r, target_a) for r in data["preln_lr"]) if x]
    base_a = statistics.mean(x[0] for x in base_to_a) if base_to_a else None
    for i, (key, label) in enumerate(ROWS):
        runs = data.get(key, [])
        if not runs:
            lines.append("| %s | not run | | | | | | |" % label)
            continue
        ta = [x for x in (time_to(r, target_a) for r in runs) if x]
        tb = [x for x in (time_to(r, target_b) for r in runs) if x]
        ma = statistics.mean(x[0] for x in ta) if ta else None
        secs = lambda xs: fmt(xs, 0 if statistics.mean(xs) >= 100 else 2)
        lines.append("| %s | %s | %s | %d/%d | %s | %s | %d/%d | %s |" % (
            label, secs([x[0] for x in ta]) if ta else "not reached", fmt([x[1] for x in ta], 0) if ta else "-", len(ta), len(runs),
            secs([x[0] for x in tb]) if tb else "not reached", fmt([x[1] for x in tb], 0) if tb else "-", len(tb), len(runs),
            "%.2fx" % (base_a / ma) if (base_a and ma) else "-"))
        sa = mean_sd([x[0] for x in ta])
        bars.append((label, COLORS[i], sa[0], sa[1] or 0.0, len(ta), len(runs)))
    lines.append("")

    # Curves: validation MLM loss (mean over seeds at each evaluated step) against step and time.
    by_steps, by_time = [], []
    for i, (key, label) in enumerate(ROWS):
        runs = data.get(key, [])
        if not runs:
            continue
        evals = [[m for m in r["metrics"] if m.get("split") == "validation"] for r in runs]
        steps = sorted(set(m["step"] for m in evals[0]))
        ys, ts = [], []
        for s in steps:
            vals = [m["mlm_loss"] for e in evals for m in e if m["step"] == s]
            tv = [m["elapsed_s"] for e in evals for m in e if m["step"] == s]
            ys.append(statistics.mean(vals))
            ts.append(statistics.mean(tv))
        dashed = key.startswith("preln") or key.startswith("postln")
        by_steps.append((label, COLORS[i], steps, ys, dashed))
        by_time.append((label, COLORS[i], ts, ys, dashed))
    refs = [("unigram", unigram), ("ln V", uniform)] if unigram is not None else []
    refs += [("target A", target_a), ("target B", target_b)]
    svg_plot(os.path.join(plot_dir, "mlm_loss_vs_steps.svg"), "Validation MLM loss against steps", "step", "MLM loss", by_steps, refs=refs)
    svg_plot(os.path.join(plot_dir, "mlm_loss_vs_time.svg"), "Validation MLM loss against pretraining time", "seconds", "MLM loss", by_time,
             refs=refs)
    svg_bars(os.path.join(plot_dir, "time_to_target.svg"), "Pretraining seconds to target A (mean, ± sd; reached/total)", "seconds", bars)
    if data.get("pld"):
        tr = [m for m in data["pld"][0]["metrics"] if m.get("split") == "train"]
        steps = [m["step"] for m in tr]
        theta = [m["theta"] for m in tr]
        kept = [m["kept_fraction"] for m in tr]
        expected = [m["expected_kept_fraction"] for m in tr]
        svg_plot(os.path.join(plot_dir, "pld_theta_kept.svg"), "PLD: theta(t) and the layers kept (seed 1)", "step", "fraction",
                 [("theta(t)", "#d62728", steps, theta, False), ("expected kept (mean p_l)", "#2ca02c", steps, expected, False),
                  ("kept layers / L (window)", "#1f77b4", steps, kept, True)])
    rel = os.path.relpath(plot_dir, doc_dir)
    for name, caption in (("mlm_loss_vs_steps.svg", "Validation MLM loss against steps (mean over seeds), with the reference lines"),
                          ("mlm_loss_vs_time.svg", "Validation MLM loss against pretraining wall time (mean over seeds)"),
                          ("time_to_target.svg", "Pretraining seconds to target A per row"),
                          ("pld_theta_kept.svg", "PLD: theta(t), the expected kept fraction and the fraction of layers that ran, per logging window")):
        lines.append("![%s](%s)" % (caption, os.path.join(rel, name) if rel != "." else name))
        lines.append("")
    marker = "<!-- discussion -->"
    old = open(doc).read() if os.path.exists(doc) else ""
    # The marker on a line of its own (prose above it may quote it).
    at = ("\n" + old).find("\n" + marker + "\n")
    keep = old[at:] if at >= 0 else marker + "\n\n## Discussion\n\n(written by hand after reading the table)\n"
    with open(doc, "w") as f:
        f.write("\n".join(lines) + "\n" + keep)
    print("ablation_report: wrote %s and plots in %s" % (doc, plot_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
