#!/usr/bin/env python3
"""benchmarks/bert_gpu_table.py (the table of scripts/device-check.sh train) on runs a GPU call
would leave, made here on the CPU at a tiny size (the script reads the same files), with a peer
file of the shape hf_bert_pretrain.py writes: every row and ratio appears, a failed peer mode and
a diverged fp16 probe are reported as such. It checks the script, not any figure.
  usage: bert_gpu_table.py PLD_BERT CORPUS WORKDIR"""
import json
import os
import shutil
import subprocess
import sys

bert, corpus, work = sys.argv[1:4]
shutil.rmtree(work, ignore_errors=True)
runs = os.path.join(work, "runs")
os.makedirs(runs)
tiny = ["--corpus", corpus, "--layers", "2", "--hidden", "32", "--heads", "2", "--max-len", "32", "--batch", "8",
        "--vocab-size", "400", "--threads", "1", "--log-every", "5", "--eval-every", "0", "--steps", "30", "--precision", "fp32"]
for name, extra, ok in [("none", ["--pld", "none"], True), ("pld", ["--pld", "pld", "--gamma", "0.1"], True),
                        ("half", ["--pld", "none", "--layers", "1"], True),
                        ("fp16-none", ["--pld", "none", "--max-loss", "0.1"], False)]:  # "diverges" at once
    r = subprocess.run([bert, "pretrain", "--out", os.path.join(runs, name)] + tiny + extra, capture_output=True, text=True)
    if (r.returncode == 0) != ok:
        sys.exit(f"pld-bert {name}: exit {r.returncode}: {r.stderr.strip()}")
peer = os.path.join(work, "peer_bert.json")
with open(peer, "w") as f:
    json.dump({"gpu": "test", "gemm_ceiling": {"m": 256, "k": 32, "n": 128, "seconds": 1e-6, "flops_per_s": 2.1e12},
               "rows": [{"mode": "eager", "attention": "sdpa", "tokens_per_s": 1000.0},
                        {"mode": "compiled", "error": "RuntimeError('no compiler')"}]}, f)
r = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "bert_gpu_table.py"), runs, peer],
                   capture_output=True, text=True)
print(r.stdout, r.stderr)
if r.returncode != 0:
    sys.exit(f"bert_gpu_table.py exited {r.returncode}")
for want in ["GEMM ceiling", "pld-bert none", "pld-bert pld", "HF eager (sdpa)", "HF compiled", "error: RuntimeError",
             "pld-bert none / fastest HF (eager)", "of ideal", "fp16-none: no summary"]:
    if want not in r.stdout:
        sys.exit(f"the table lacks '{want}'")
print("ok")
