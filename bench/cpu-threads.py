#!/usr/bin/env python3
"""Per-thread CPU and wake-ups of running programs, from /proc.

    bench/cpu-threads.py SECONDS [PROGRAM ...]
    bench/cpu-threads.py --line SECONDS [PROGRAM ...]

Samples every thread of every process whose name starts with one of the
PROGRAMs (default: chat-gateway chat-consumer chat-loadgen java ferretdb
redis-server postgres) twice, SECONDS apart, and prints per program and
thread name (digits folded, so a pool's threads add up; the threads that
kept the program's name, its main thread and libuv's pool, are one row):
CPU in cores, voluntary context switches per second (the thread slept and was woken:
one per wake-up of an event loop or of librdkafka's broker thread), and
involuntary ones (preempted). Run it beside a benchmark, e.g. during a
`bench/throughput.sh 2000` rate; docs/performance.md has what it showed.
With --line it prints one line instead: each program's cores, busiest
first, and the machine's busy cores (bench/throughput.sh adds it to every
rate).
"""

import collections
import os
import re
import sys
import time


def sample(prefixes):
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                prog = f.read().strip()
        except OSError:
            continue
        if not prog.startswith(prefixes):
            continue
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            base = f"/proc/{pid}/task/{tid}"
            try:
                with open(f"{base}/stat") as f:
                    stat = f.read()
                with open(f"{base}/status") as f:
                    status = f.read()
            except OSError:
                continue
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            vol = int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.M).group(1))
            invol = int(re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)", status, re.M).group(1))
            out[tid] = (prog, name, int(fields[11]) + int(fields[12]), vol, invol)
    return out


def busy_ticks():
    """All CPUs' busy ticks (all but idle and iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4]


def main():
    args = sys.argv[1:]
    line = args[:1] == ["--line"]
    if line:
        args = args[1:]
    if not args:
        sys.exit(__doc__)
    secs = float(args[0])
    progs = tuple(args[1:]) or ("chat-gateway", "chat-consumer", "chat-loadgen", "java", "ferretdb", "redis-server", "postgres")

    a, busy0 = sample(progs), busy_ticks()
    time.sleep(secs)
    b, busy1 = sample(progs), busy_ticks()
    hz = os.sysconf("SC_CLK_TCK")
    rows = collections.defaultdict(lambda: [0.0, 0.0, 0.0, set()])
    for tid, (prog, name, cpu, vol, invol) in b.items():
        _, _, cpu0, vol0, invol0 = a.get(tid, (prog, name, 0, 0, 0))
        # Threads that kept the program's name: its main thread and any
        # pool that does not name its threads (libuv's).
        key = (prog, "(unnamed: main, pools)" if name == prog else re.sub(r"\d+", "#", name))
        r = rows[key]
        r[0] += (cpu - cpu0) / hz / secs
        r[1] += (vol - vol0) / secs
        r[2] += (invol - invol0) / secs
        r[3].add(tid)
    if line:
        per = collections.Counter()
        for (prog, _), (cores, _, _, _) in rows.items():
            per["kafka" if prog == "java" else prog] += cores
        parts = [f"{prog} {cores:.2f}" for prog, cores in per.most_common() if cores >= 0.005]
        print(f"cores: {', '.join(parts)}; machine {(busy1 - busy0) / hz / secs:.2f} of {os.cpu_count()}")
        return
    print(f"{'program':16s} {'thread':24s} {'n':>3s} {'cores':>6s} {'woken/s':>8s} {'preempted/s':>11s}")
    for (prog, name), (cores, vol, invol, tids) in sorted(rows.items(), key=lambda kv: -kv[1][0]):
        if cores < 0.005 and vol < 10:
            continue
        print(f"{prog:16s} {name:24s} {len(tids):3d} {cores:6.2f} {vol:8.0f} {invol:11.0f}")


if __name__ == "__main__":
    main()
