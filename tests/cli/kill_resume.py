#!/usr/bin/env python3
"""Killed runs lose nothing: pld-bert pretraining is killed with SIGKILL at random moments (during
steps, evaluations and checkpoint writes: it checkpoints every step), resumed with --resume auto
each time, and must end with the checkpoint of the uninterrupted run, bit for bit (parameters,
optimizer moments and steps, data position, the controller's decisions and totals; the wall-clock
fields excepted), and a metrics.jsonl with every logged step once. SIGTERM and SIGINT in between
must save a checkpoint and exit with 128 + the signal and a message.

  kill_resume.py PLD_BERT CORPUS WORK_DIR [--kills N] [--seed S]
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import time


def parse_checkpoint(path):
    """The checkpoint's content without its wall-clock fields (see examples/bert/checkpoint.hpp)."""
    with open(path, "rb") as f:
        b = f.read()
    assert b[:8] == b"PLDBERT\n", path
    (size,) = struct.unpack_from("<Q", b, 12)
    p = b[20:20 + size]
    at = 0

    def take(n):
        nonlocal at
        v = p[at:at + n]
        at += n
        return v

    def u64():
        return struct.unpack("<Q", take(8))[0]

    def string():
        return take(u64())

    key = string()
    step, pos = struct.unpack("<qQ", take(16))
    take(8)  # elapsed seconds: wall clock
    state = string().decode()
    # The controller's totals line holds its wall-clock seconds (5th field); the checksum covers it.
    lines = []
    for line in state.splitlines():
        f = line.split()
        if f and f[0] == "totals":
            f[5] = "<seconds>"
        if f and f[0] != "checksum":
            lines.append(" ".join(f))
    tensors = []
    for _ in range(u64()):
        name = string()
        values = take(u64() * 4)
        opt_step = take(8)
        m = take(u64() * 4)
        v = take(u64() * 4)
        tensors.append((name, values, opt_step, m, v))
    assert at == len(p), "unread bytes"
    return {"key": key, "step": step, "position": pos, "controller": lines, "tensors": tensors}


def train_steps(run_dir):
    steps = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            j = json.loads(line)
            if j.get("split") == "train":
                steps.append(j["step"])
    return steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pld_bert")
    ap.add_argument("corpus")
    ap.add_argument("work")
    ap.add_argument("--kills", type=int, default=25)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    vocab = os.path.join(a.work, "vocab", "vocab.txt")
    subprocess.run([a.pld_bert, "vocab", "--corpus", a.corpus, "--out", os.path.dirname(vocab), "--vocab-size", "400"],
                   check=True, capture_output=True, env=env)
    args = ["pretrain", "--corpus", a.corpus, "--vocab", vocab, "--layers", "2", "--hidden", "32", "--heads", "2", "--max-len", "32",
            "--batch", "4", "--steps", "60", "--warmup", "5", "--gamma", "0.05", "--eval-every", "10", "--eval-max-seqs", "16",
            "--log-every", "1", "--checkpoint-every", "1", "--sampling", "fixed_count", "--skip-dropped-updates"]

    ref = os.path.join(a.work, "reference")
    t0 = time.monotonic()
    subprocess.run([a.pld_bert] + args + ["--out", ref], check=True, capture_output=True, env=env)
    duration = time.monotonic() - t0
    t0 = time.monotonic()
    subprocess.run([a.pld_bert] + [x if x != "60" else "1" for x in args] + ["--out", os.path.join(a.work, "startup")],
                   check=True, capture_output=True, env=env)
    startup = time.monotonic() - t0  # reading the corpus, packing, building the model: before any step
    training = max(duration - startup, 0.01)

    run = os.path.join(a.work, "killed")
    cmd = [a.pld_bert] + args + ["--out", run, "--resume", "auto"]
    ck = os.path.join(run, "checkpoint.bin")
    kills = 0
    # Most attempts are killed during training: after their first progress line (--log-every 1:
    # one step done since the resume), a random part of the time steps/kills steps take. The
    # start-up time is not a good clock for that (on a fast machine it is many steps' time and
    # varies by more), so the line is. The delays are scaled by a factor that follows the
    # progress the kills let through (CI runs tests in parallel on a loaded machine), so that each
    # SIGKILL lets about steps/kills steps pass. Some attempts are killed during start-up.
    target = 60 / a.kills
    scale = 1.0
    last_step = 0
    signalled = {signal.SIGTERM: False, signal.SIGINT: False}
    attempts = 0
    at = []  # the checkpoint's step after each SIGKILL

    def first_step_line(p):
        """Reads p's output up to its first progress line: (what was read, whether that line is the
        last step's; None if the output ended without one)."""
        head = b""
        while True:
            line = p.stdout.readline()
            head += line
            if not line:
                return head, None
            m = re.match(rb"step (\d+)/(\d+)", line)
            if m:
                return head, m.group(1) == m.group(2)

    while True:
        attempts += 1
        assert attempts < 10 * a.kills + 50, "the run never finished"
        # One SIGTERM and one SIGINT once a quarter of the kills landed and a checkpoint exists
        # (early, so that steps remain for them: the end asserts that both were handled).
        graceful = None
        if os.path.exists(ck) and kills >= a.kills // 4:
            graceful = next((s for s, done in signalled.items() if not done), None)
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        if graceful:
            # Once training runs (a progress line): before it there is nothing to save and the
            # default action (terminate) is right. Never after the last step's line: the loop may
            # have checked for a signal for the last time already, and once the run returns its
            # handlers are gone, so the signal's default action would end a run that finished (CI
            # saw it: exit -15). A signal sent after step k < steps is seen by step k + 1's check.
            head, last_line = first_step_line(p)
            if last_line is False:
                p.send_signal(graceful)
            out, err = p.communicate(timeout=60)
            out = head + out
            if p.returncode == 0:  # the run had finished: no signal was sent
                break
            assert p.returncode == 128 + graceful, (p.returncode, err.decode())
            assert f"interrupted by {graceful.name}" in out.decode(), out.decode()
            signalled[graceful] = True
            last_step = parse_checkpoint(ck)["step"]
            continue
        if kills < a.kills:
            if rng.random() < 0.15:
                time.sleep(startup * rng.uniform(0.0, 0.9))  # during start-up (if it is as slow as measured)
            elif first_step_line(p)[1] is not None:
                time.sleep(scale * rng.uniform(0.0, 2.0 * training / a.kills))
            p.kill()
            out, err = p.communicate()
            if p.returncode == 0:  # it had finished
                break
            kills += 1
            at.append(parse_checkpoint(ck)["step"] if os.path.exists(ck) else 0)
            advance, last_step = at[-1] - last_step, at[-1]
            if advance > 2 * target:
                scale *= 0.75
            elif advance <= 1:
                scale = min(scale * 1.1, 2.0)
            continue
        out, err = p.communicate(timeout=120)
        if p.returncode != 0:
            sys.exit(f"resumed run failed ({p.returncode}): {err.decode()}")
        break
    a_ckpt = parse_checkpoint(os.path.join(ref, "checkpoint.bin"))
    b_ckpt = parse_checkpoint(os.path.join(run, "checkpoint.bin"))
    for k in ("key", "step", "position", "controller"):
        assert a_ckpt[k] == b_ckpt[k], f"{k} differs after {kills} kills: {a_ckpt[k]!r} vs {b_ckpt[k]!r}"
    assert len(a_ckpt["tensors"]) == len(b_ckpt["tensors"])
    for ta, tb in zip(a_ckpt["tensors"], b_ckpt["tensors"]):
        assert ta == tb, f"tensor {ta[0].decode()} differs after {kills} kills"
    assert train_steps(ref) == train_steps(run), (train_steps(ref), train_steps(run))
    leftovers = [f for f in os.listdir(run) if ".tmp." in f]
    print(f"checkpoint step after each SIGKILL: {at}; final delay scale {scale:.2f}")
    print(f"{attempts} starts, {kills} SIGKILLs, SIGTERM/SIGINT handled: {signalled}; final checkpoint (step {b_ckpt['step']}) equals the "
          f"uninterrupted run's bit for bit; metrics steps equal; temp files left: {leftovers}")
    assert kills >= a.kills // 2, f"only {kills} kills landed before the run finished"
    assert all(signalled.values()), f"the run finished before SIGTERM and SIGINT were both handled: {signalled}"
    return 0


if __name__ == "__main__":
    sys.exit(main())
