#!/usr/bin/env python3
"""`mpirun -np 2 pld-bert pretrain` against one process, on a tiny model (fp32 products, PLD with a
fast decay so layers drop within the run; dropout 0.1, whose masks are keyed by the row's place
in the global batch (per-sample layers: among the global batch's kept rows), so both runs draw the
same ones):

  1. 2 ranks x 4 sequences train the parameters of 1 rank x 8 sequences: after 10 AdamW steps the
     relative L2 difference of every tensor is <= 1e-5 (what differs is the order of fp32
     additions: each rank's weight gradients sum its own 128 token rows, the all-reduce adds the
     two; measured ~1e-7), the data position and the controller's decisions are identical, and
     the logged losses agree to 1e-7, and the evaluation, sharded over the ranks, counts the same
     masked tokens and gives the same loss (1e-6); in layer and in per-sample granularity;
  2. the 2-rank run twice gives the same bits;
  3. 2 ranks stopped at step 5 and resumed by 2 ranks end bit for bit where the uninterrupted
     2-rank run ends; resumed by 1 rank they end where the uninterrupted 1-rank run ends (same
     bound), and the resumed run says the checkpoint was written by 2 ranks;
  4. SIGTERM to mpirun stops both ranks after the same step with rank 0's checkpoint of it.

  bert_mpi.py MPIRUN PLD_BERT CORPUS WORK_DIR
"""
import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kill_resume import parse_checkpoint  # noqa: E402


def floats(b):
    return struct.unpack("<%df" % (len(b) // 4), b)


def compare(a_path, b_path, what):
    a, b = parse_checkpoint(a_path), parse_checkpoint(b_path)
    assert a["step"] == b["step"] and a["position"] == b["position"], (what, a["step"], b["step"], a["position"], b["position"])
    assert a["controller"] == b["controller"] or all(x.split()[0] != "step" or x == y for x, y in zip(a["controller"], b["controller"])), what
    worst = 0.0
    for ta, tb in zip(a["tensors"], b["tensors"]):
        assert ta[0] == tb[0]
        va, vb = floats(ta[1]), floats(tb[1])
        num = sum((x - y) ** 2 for x, y in zip(va, vb))
        den = sum(x * x for x in va)
        worst = max(worst, math.sqrt(num / den) if den else math.sqrt(num))
    assert worst <= 1e-5, f"{what}: parameters differ by relative L2 {worst:.3g} (bound 1e-5)"
    return worst


def losses(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(l)["loss"] for l in f if '"train"' in l]


def validation(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(l) for l in f if '"validation"' in l]


def main():
    mpirun, bert, corpus, work = sys.argv[1:5]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    env = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    vocab_dir = os.path.join(work, "vocab")
    subprocess.run([bert, "vocab", "--corpus", corpus, "--out", vocab_dir, "--vocab-size", "400"], check=True, capture_output=True, env=env)
    base = ["pretrain", "--corpus", corpus, "--vocab", os.path.join(vocab_dir, "vocab.txt"), "--layers", "3", "--hidden", "32", "--heads", "2",
            "--max-len", "32", "--batch", "8", "--steps", "10", "--warmup", "2", "--precision", "fp32", "--gamma", "0.3",
            "--eval-every", "0", "--eval-max-seqs", "16", "--log-every", "1", "--checkpoint-every", "0", "--seed", "5"]
    mpi = [mpirun, "-np", "2", "--oversubscribe", "--bind-to", "none", "-x", "OMP_NUM_THREADS"]

    def run(cmd, out, extra=()):
        r = subprocess.run(cmd + base + list(extra) + ["--out", out], capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, f"{' '.join(cmd[:3])} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        return r.stdout

    dropout = {"layer": ["--dropout", "0.1"], "sample": ["--dropout", "0.1"]}
    for granularity in ("layer", "sample"):
        g = ["--granularity", granularity] + dropout[granularity]
        one, two, again = (os.path.join(work, f"{granularity}-{n}") for n in ("one", "two", "two-again"))
        run([bert], one, g)
        log = run(mpi + [bert], two, g)
        assert "data parallel: 2 ranks over MPI, 4 of the 8 sequences" in log, log
        e = compare(os.path.join(one, "checkpoint.bin"), os.path.join(two, "checkpoint.bin"), granularity)
        la, lb = losses(one), losses(two)
        assert len(la) == len(lb) == 10 and all(abs(x - y) <= 1e-7 * max(1, abs(x)) for x, y in zip(la, lb)), (la, lb)
        # The evaluation is sharded over the ranks (batches dealt round-robin, sums added): the
        # same masked tokens, each counted once, and the one-process loss.
        va, vb = validation(one), validation(two)
        assert len(va) == len(vb) >= 1, (va, vb)
        for x, y in zip(va, vb):
            assert x["masked_tokens"] == y["masked_tokens"] and abs(x["mlm_loss"] - y["mlm_loss"]) <= 1e-6 * x["mlm_loss"], (x, y)
        dropped = sum(1 for l in open(os.path.join(one, "metrics.jsonl")) if '"train"' in l and '"layers":"111"' not in l)
        run(mpi + [bert], again, g)
        assert parse_checkpoint(os.path.join(two, "checkpoint.bin"))["tensors"] == parse_checkpoint(os.path.join(again, "checkpoint.bin"))["tensors"], \
            "two 2-rank runs differ"
        print(f"{granularity}: 2 ranks == 1 rank within {e:.2e} (steps with a layer dropped: {dropped}); reruns bitwise equal")
        assert granularity == "sample" or dropped > 0, "no layer was dropped: the test would not exercise PLD"

    # 2 ranks to step 5, then 2 ranks to the end: the uninterrupted 2-rank run, bit for bit.
    cut2 = os.path.join(work, "cut2")
    run(mpi + [bert], cut2, dropout["layer"] + ["--stop-at", "5"])
    run(mpi + [bert], cut2, dropout["layer"] + ["--resume", "auto"])
    assert parse_checkpoint(os.path.join(work, "layer-two", "checkpoint.bin"))["tensors"] == \
        parse_checkpoint(os.path.join(cut2, "checkpoint.bin"))["tensors"], "2-rank resume is not bit-exact"
    print("2 ranks to step 5 + 2 ranks to step 10 == 2 ranks throughout, bit for bit")

    # 2 ranks to step 5, then 1 rank to the end.
    cut = os.path.join(work, "cut")
    run(mpi + [bert], cut, dropout["layer"] + ["--stop-at", "5"])
    log = run([bert], cut, dropout["layer"] + ["--resume", "auto"])
    assert "written by 2 rank(s), this run has 1" in log, log
    e = compare(os.path.join(work, "layer-one", "checkpoint.bin"), os.path.join(cut, "checkpoint.bin"), "resume with another world size")
    print(f"2 ranks to step 5 + 1 rank to step 10 == 1 rank throughout within {e:.2e}")

    # SIGTERM to mpirun (a cluster's preemption): every rank stops after the same step, rank 0
    # writes the checkpoint of that step, and nothing hangs.
    term = os.path.join(work, "term")
    long_run = [a if a != "10" else "100000" for a in base]
    p = subprocess.Popen(mpi + [bert] + long_run + ["--log-every", "50", "--out", term], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env=env)
    seen = ""
    while "step " not in seen:
        line = p.stdout.readline()
        assert line, "the run ended before training:\n" + seen
        seen += line
    p.send_signal(signal.SIGTERM)
    rest, _ = p.communicate(timeout=120)
    seen += rest
    m = re.search(r"interrupted by SIGTERM after step (\d+): checkpoint .* saved", seen)
    assert m, "no clean stop after SIGTERM:\n" + seen[-2000:]
    ck = parse_checkpoint(os.path.join(term, "checkpoint.bin"))
    assert ck["step"] == int(m.group(1)), (ck["step"], m.group(1))
    print(f"SIGTERM to mpirun: both ranks stopped after step {ck['step']}, checkpoint written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
