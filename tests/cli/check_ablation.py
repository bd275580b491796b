#!/usr/bin/env python3
"""Checks a scripts/ablation.sh output directory: results.md has the quality table with every row
run with SEEDS seeds and finite numbers, the time-to-target table with every row, and the plots are
well-formed SVG with data in them (the loss plots with their reference lines).
    check_ablation.py RUN_DIR SEEDS"""
import math
import os
import sys
import xml.etree.ElementTree as ET

root, seeds = sys.argv[1], int(sys.argv[2])
doc = open(os.path.join(root, "results.md")).read()
table_rows = [l for l in doc.splitlines() if l.startswith("| ") and not l.startswith("| row") and "---" not in l]
rows = [r for r in table_rows if len(r.strip("|").split("|")) == 10]
ttt = [r for r in table_rows if len(r.strip("|").split("|")) == 8]
assert len(rows) == 8, "expected 8 quality rows, got %d:\n%s" % (len(rows), doc)
assert len(ttt) == 8, "expected 8 time-to-target rows, got %d:\n%s" % (len(ttt), doc)
for r in ttt:
    assert r.count("/") >= 2, "time-to-target row without reached/total counts: " + r
assert "target A" in doc and "unigram cross-entropy" in doc, "targets or reference lines missing"
for r in rows:
    cells = [c.strip() for c in r.strip("|").split("|")]
    assert len(cells) == 10, r
    assert cells[1] == str(seeds), "row %s ran %s seeds, expected %d" % (cells[0], cells[1], seeds)
    for c in cells[2:]:
        number = c.split()[0].rstrip("%x")
        assert math.isfinite(float(number)), "not a number in row %s: %s" % (cells[0], c)
# Pretraining seconds are the whole run's, also for a run resumed from a checkpoint (whose
# summary.json counts only its last process): the checkpointed total in metrics.jsonl.
import json
import statistics
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from ablation_report import ROWS  # noqa: E402
label_to_key = {label: key for key, label in ROWS}
for r in rows:
    cells = [c.strip() for c in r.strip("|").split("|")]
    key = label_to_key[cells[0]]
    totals = []
    for sd in sorted(d for d in os.listdir(os.path.join(root, key)) if d.startswith("seed")):
        with open(os.path.join(root, key, sd, "pretrain", "metrics.jsonl")) as f:
            totals.append(max(json.loads(l).get("elapsed_s", 0.0) for l in f if l.strip()))
    shown = float(cells[7].split()[0])
    assert abs(shown - statistics.mean(totals)) <= 0.0051, "row %s: pretrain s %s, the runs' total training seconds %.4f" % (
        cells[0], cells[7], statistics.mean(totals))
for name in ("mlm_loss_vs_steps.svg", "mlm_loss_vs_time.svg", "pld_theta_kept.svg"):
    tree = ET.parse(os.path.join(root, name))
    lines = tree.getroot().findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) >= (8 if "mlm" in name else 3), "%s has %d lines" % (name, len(lines))
    if "mlm" in name:
        refs = [l for l in tree.getroot().findall("{http://www.w3.org/2000/svg}line") if l.get("stroke-dasharray") == "2,3"]
        assert len(refs) == 4, "%s: expected 4 reference lines (unigram, ln V, targets), got %d" % (name, len(refs))
    for pl in lines:
        assert len(pl.get("points").split()) >= 2, name
ET.parse(os.path.join(root, "time_to_target.svg"))
print("ablation output OK: 8 rows x %d seeds, time-to-target table, 4 plots" % seeds)
