#!/usr/bin/env python3
"""CPU and context switches of a process, by thread, read from /proc (Linux). For hack/bench.sh.

  thread-cpu.py snap PID OUT          the counters of PID's threads now, as JSON in OUT
  thread-cpu.py watch PID OUT         the same, sampled every 20 ms until PID exits and then
                                      written (the last sample is within 20 ms of the exit: a
                                      process's threads vanish from /proc with it)
  thread-cpu.py diff BEFORE AFTER N   per-thread-kind CPU in us per event and context switches
                                      per 1,000 events over N events, as one line; BEFORE may
                                      be "-" (counted from the threads' start)
  thread-cpu.py broker BEFORE AFTER N the same for a Kafka broker, in three parts: the threads
                                      that serve requests (network and request handlers), the
                                      JVM's own (JIT compilers, GC), and the rest

Threads are grouped by name with their numbers dropped (rdk:broker1 and rdk:broker2 are
rdk:broker), so one line shows where a run's CPU went, which `time` cannot tell.
"""
import json
import os
import re
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")
# voluntary_ctxt_switches and nonvoluntary_ctxt_switches, the last lines of a task's status.
SWITCHES = re.compile(r"ctxt_switches:\s+(\d+)")


def sample(pid):
    threads = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                status = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        # The name is in parentheses and may hold spaces; the fields after it are fixed.
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        switches = sum(int(n) for n in SWITCHES.findall(status))
        threads[tid] = {
            "name": name,
            "cpu": (int(fields[11]) + int(fields[12])) / HZ,
            "switches": switches,
        }
    return threads


def kind(name):
    return re.sub(r"[-#]?\d+$", "", name).strip() or name


# A broker's JIT compiles and collects for as long as it runs, loaded or not: counted with
# the requests, it made the broker's CPU follow a run's duration more than its events.
def broker_part(name):
    if name.startswith("data-plane-kafk"):
        return "requests"
    if name.startswith(("C1 Compiler", "C2 Compiler", "GC Thread", "G1 ", "VM ", "Sweeper")):
        return "JVM (JIT, GC)"
    return "other"


def main():
    mode = sys.argv[1]
    if mode == "snap":
        json.dump(sample(sys.argv[2]) or {}, open(sys.argv[3], "w"))
    elif mode == "watch":
        # Written once, at the exit: the watcher runs on the cores it measures, and rewriting
        # the file at every sample took 10% of a core (now 8%, for the reads themselves).
        pid, out, last = sys.argv[2], sys.argv[3], {}
        while True:
            now = sample(pid)
            if not now:
                break
            last.update(now)
            time.sleep(0.02)
        with open(out, "w") as f:
            json.dump(last, f)
    elif mode in ("diff", "broker"):
        group = broker_part if mode == "broker" else kind
        before = {} if sys.argv[2] == "-" else json.load(open(sys.argv[2]))
        after, events = json.load(open(sys.argv[3])), int(sys.argv[4])
        cpu, switches = {}, 0
        for tid, t in after.items():
            b = before.get(tid, {"cpu": 0, "switches": 0})
            g = group(t["name"])
            cpu[g] = cpu.get(g, 0) + t["cpu"] - b["cpu"]
            switches += t["switches"] - b["switches"]
        busy = sorted(((v, k) for k, v in cpu.items() if v * 1e6 / events >= 0.01), reverse=True)
        if mode == "broker":
            print(" ".join(f"{cpu.get(k, 0) * 1e6 / events:.2f}" for k in ("requests", "JVM (JIT, GC)", "other")))
            return
        parts = ", ".join(f"{k} {v * 1e6 / events:.2f}" for v, k in busy)
        print(f"{parts} us/event; {switches * 1000 / events:.1f} context switches/1k events")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
