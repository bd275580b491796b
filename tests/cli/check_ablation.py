#!/usr/bin/env python3
"""Checks a scripts/ablation.sh output directory: results.md has the table with every row run
with SEEDS seeds and finite numbers, and the three plots are well-formed SVG with data in them.
    check_ablation.py RUN_DIR SEEDS"""
import math
import os
import sys
import xml.etree.ElementTree as ET

root, seeds = sys.argv[1], int(sys.argv[2])
doc = open(os.path.join(root, "results.md")).read()
rows = [l for l in doc.splitlines() if l.startswith("| ") and not l.startswith("| row") and "---" not in l]
assert len(rows) == 7, "expected 7 table rows, got %d:\n%s" % (len(rows), doc)
for r in rows:
    cells = [c.strip() for c in r.strip("|").split("|")]
    assert len(cells) == 10, r
    assert cells[1] == str(seeds), "row %s ran %s seeds, expected %d" % (cells[0], cells[1], seeds)
    for c in cells[2:]:
        number = c.split()[0].rstrip("%x")
        assert math.isfinite(float(number)), "not a number in row %s: %s" % (cells[0], c)
for name in ("mlm_loss_vs_steps.svg", "mlm_loss_vs_time.svg", "pld_theta_kept.svg"):
    tree = ET.parse(os.path.join(root, name))
    lines = tree.getroot().findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) >= (7 if "mlm" in name else 3), "%s has %d lines" % (name, len(lines))
    for pl in lines:
        assert len(pl.get("points").split()) >= 2, name
print("ablation output OK: 7 rows x %d seeds, 3 plots" % seeds)
