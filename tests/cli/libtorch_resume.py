#!/usr/bin/env python3
"""pld_libtorch_bert: a run stopped half-way (--stop-at) and resumed repeats every gate decision of
the uninterrupted run, and its step counter and data position continue; bad input is one line on
stderr, exit 1, and leaves the checkpoint as it was.

usage: libtorch_resume.py PLD_LIBTORCH_BERT SCRATCH_DIR
"""
import hashlib
import os
import shutil
import subprocess
import sys

exe, scratch = sys.argv[1], sys.argv[2]
shutil.rmtree(scratch, ignore_errors=True)
os.makedirs(scratch)
common = ["--steps", "24", "--layers", "4", "--hidden", "32", "--heads", "2", "--max-len", "32", "--batch", "8",
          "--vocab-size", "400", "--threads", "1", "--baseline-steps", "0", "--eval-seqs", "16", "--gamma", "0.2",
          "--theta-bar", "0.3", "--print-plans", "--checkpoint-every", "5"]


def run(args, expect_rc=0):
    p = subprocess.run([exe] + args, capture_output=True, text=True, timeout=240)
    if p.returncode != expect_rc:
        sys.exit(f"FAIL: {' '.join(args)} exited {p.returncode}, expected {expect_rc}\n{p.stdout}\n{p.stderr}")
    return p


def plans(out):
    return [line for line in out.splitlines() if line.startswith("plan ")]


full = plans(run(common + ["--out", f"{scratch}/full"]).stdout)
first = run(common + ["--out", f"{scratch}/split", "--stop-at", "11"])
second = run(common + ["--out", f"{scratch}/split", "--resume"])
if "resumed from" not in second.stdout or "at step 11" not in second.stdout:
    sys.exit(f"FAIL: the second part did not resume at step 11:\n{second.stdout}")
split = plans(first.stdout) + plans(second.stdout)
if len(full) != 24 or split != full:
    sys.exit("FAIL: the resumed run's plans differ from the uninterrupted run's:\n" + "\n".join(full) + "\n---\n" + "\n".join(split))
dropped = sum(line.split()[2].count("0") for line in full)
if dropped == 0:
    sys.exit("FAIL: no layer was dropped in 24 steps: the test does not exercise the gate")

# Bad input: one line, exit 1, the checkpoint untouched.
ckpt = f"{scratch}/split/checkpoint.pt"
digest = hashlib.sha256(open(ckpt, "rb").read()).hexdigest()
for args, words in [(["--steps", "ten"], "is not a number"),
                    (["--bogus", "1"], "unknown option --bogus"),
                    (common + ["--out", f"{scratch}/split", "--resume", "--seed", "2"], "different"),
                    (common + ["--out", f"{scratch}/split", "--resume", "--layers", "3"], "different schedule"),
                    (common + ["--out", f"{scratch}/split", "--resume", "--hidden", "64"], "another model configuration")]:
    p = run(args, expect_rc=1)
    lines = p.stderr.strip().splitlines()
    if len(lines) != 1 or words not in lines[0]:
        sys.exit(f"FAIL: {args[:2]}...: expected one line with '{words}', got:\n{p.stderr}")
if hashlib.sha256(open(ckpt, "rb").read()).hexdigest() != digest:
    sys.exit("FAIL: a refused run changed the checkpoint")
print(f"ok: 24 plans equal after a resume at step 11 ({dropped} layer drops), bad input refused")
