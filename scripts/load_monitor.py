#!/usr/bin/env python3
"""Records how busy the machine is while long runs go on, so their wall times can be trusted or
flagged: every INTERVAL seconds one JSON line with the machine's busy cores, the hypervisor's
steal, and the CPU cores used by each process whose command line names a directory under ROOT
(the ablation's runs), keyed by that directory. What is busy and is none of those runs is load
from elsewhere (a build, a test), which slows the runs and inflates their wall times.

  scripts/load_monitor.py ROOT OUT.jsonl [--interval S] [--while-pid PID]

Appends to OUT.jsonl; ends on SIGTERM/SIGINT or when process PID (the ablation) has gone.
scripts/ablation_report.py reads the file and marks runs that shared the machine."""
import json
import os
import re
import signal
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def machine_ticks():
    """(busy, steal, total) jiffies summed over all CPUs, from /proc/stat's first line."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq = fields[:7]
    steal = fields[7] if len(fields) > 7 else 0
    return user + nice + system + irq + softirq, steal, sum(fields[:8])


def run_processes(root):
    """{run directory: cpu ticks} for the processes whose command line has '--out ROOT/...'."""
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        args = [a.decode(errors="replace") for a in argv]
        out = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--out"), None)
        if out is None:
            continue
        rel = os.path.relpath(os.path.abspath(out), root)
        if rel.startswith(".."):
            continue
        # utime and stime are fields 14 and 15; the command name (field 2) may hold spaces.
        rest = stat[stat.rindex(")") + 2:].split()
        found[f"{rel}#{pid}"] = int(rest[11]) + int(rest[12])
    return found


def main():
    if len(sys.argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    root, path = os.path.abspath(sys.argv[1]), sys.argv[2]
    interval = float(sys.argv[sys.argv.index("--interval") + 1]) if "--interval" in sys.argv else 10.0
    watched = int(sys.argv[sys.argv.index("--while-pid") + 1]) if "--while-pid" in sys.argv else None
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    prev_t, prev_m, prev_p = time.time(), machine_ticks(), run_processes(root)
    while not stop:
        time.sleep(interval)
        if watched is not None:
            try:
                os.kill(watched, 0)
            except ProcessLookupError:
                break  # the ablation that started us has ended
        t, m, p = time.time(), machine_ticks(), run_processes(root)
        dt = t - prev_t
        span = max(m[2] - prev_m[2], 1)  # jiffies summed over CPUs in the interval
        cores = os.cpu_count() or 1
        busy = (m[0] - prev_m[0]) / span * cores
        steal = (m[1] - prev_m[1]) / span * cores
        runs = {}
        for key, ticks in p.items():
            if key in prev_p:  # present over the whole interval
                run = key.split("#")[0]
                runs[run] = runs.get(run, 0.0) + (ticks - prev_p[key]) / TICK / dt
        own = sum(runs.values())
        line = {"t": round(t, 1), "dt": round(dt, 2), "busy_cores": round(busy, 3),
                "steal_cores": round(steal, 3), "other_cores": round(max(busy - own, 0.0), 3),
                "runs": {k: round(v, 3) for k, v in sorted(runs.items())}}
        with open(path, "a") as f:
            f.write(json.dumps(line) + "\n")
        prev_t, prev_m, prev_p = t, m, p


if __name__ == "__main__":
    main()
