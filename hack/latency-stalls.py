#!/usr/bin/env python3
"""The latency runs of hack/bench.sh split into the broker's GC stalls and the rest.

  latency-stalls.py [--pooled] GC_LOG TIMELINE FROM_MS TO_MS [TIMELINE FROM_MS TO_MS ...]

Each TIMELINE is a run's "produced-at-ms latency-ms" lines (e2e_latency's
E2E_LATENCY_TIMELINE), of which the events produced from FROM_MS count (e2e_latency's
window_from_ms: its warm-up's end); the broker's pauses count when they end between FROM_MS
and TO_MS (its window_to_ms: the latest append of those events). Prints one line over all
the runs given:

  broker_gc_pauses, broker_gc_pause_max_ms, broker_gc_pause_total_ms
      the broker's collector pauses (GC_LOG and the parts the JVM rotated out): how many, the
      longest and their total
  stall_catch_up_ms
      the median over the stalls of how long after the pause ended the last event produced
      before its end was appended: how long the clients took to work off what the pause held
      back. Pauses closer than STALL_BEFORE_MS make one stall (G1's remark and cleanup pauses
      often follow a young one).
  quiet_p99_ms, quiet_events
      the p99 of the events produced away from every pause (from STALL_BEFORE_MS before it to
      QUIET_AFTER_MS after it): the latency the GC leaves alone
  pooled_p99_ms, events
      with --pooled, the p99 over all the runs' events (with one run, that run's p99)

A figure with nothing to measure (no pause, no quiet event) is left out of the line.

Why: a pause stops every client of the broker at once, and at 20,000 events/s the pauses set
the p99 of the pipeline and the pass-through alike (docs/benchmarks.md §8, stop 37). Split
this way, the two kinds compare on what each does itself: how fast it catches up after a
stall and its latency between stalls. The GC log's time is when the pause ended (G1 logs a
pause when it is over).
"""
import datetime
import glob
import math
import re
import statistics
import sys

# An event produced this long before a pause can still be waiting for the broker when it
# starts (in a fetch, a produce request or the consumer's own batch).
STALL_BEFORE_MS = 150
# Catching up after a pause took 20-50 ms on this machine: 300 ms is well past that.
QUIET_AFTER_MS = 300

PAUSE = re.compile(r"\[([^\]]+)\].* Pause .* ([0-9.]+)ms$")


def pauses(gc_log):
    """(start, end, length) of every pause in the log, in ms since the epoch, in order."""
    parts = sorted(glob.glob(gc_log + "*"))
    if not parts:
        sys.exit(f"latency-stalls.py: no GC log at {gc_log} (hack/kafka.sh writes one)")
    found = []
    for part in parts:
        with open(part) as f:
            for line in f:
                m = PAUSE.match(line.strip())
                if m:
                    end = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f%z")
                    end_ms = end.timestamp() * 1000
                    length = float(m.group(2))
                    found.append((end_ms - length, end_ms, length))
    return sorted(found)


def stalls(run_pauses):
    """(start, end) of each stall: pauses closer than STALL_BEFORE_MS merged."""
    merged = []
    for start, end, _ in run_pauses:
        if merged and start - STALL_BEFORE_MS <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def percentile(sorted_values, p):
    # e2e_latency's rank: Rust's round() takes halves away from zero, Python's to even.
    return sorted_values[math.floor((len(sorted_values) - 1) * p + 0.5)]


def main(args):
    pooled = args[:1] == ["--pooled"]
    if pooled:
        args = args[1:]
    if len(args) < 4 or (len(args) - 1) % 3:
        sys.exit(__doc__)
    all_pauses = pauses(args[0])
    lengths, catch_ups, latencies, quiet = [], [], [], []
    for i in range(1, len(args), 3):
        timeline, since, until = args[i], int(args[i + 1]), int(args[i + 2])
        with open(timeline) as f:
            events = [tuple(map(int, line.split())) for line in f]
        events = [(at, latency) for at, latency in events if at >= since]
        latencies += [latency for _, latency in events]
        lengths += [n for _, e, n in all_pauses if since <= e <= until]
        # A pause that ended before the window still slows its first events.
        near = stalls(
            p for p in all_pauses
            if p[1] + QUIET_AFTER_MS >= since and p[0] - STALL_BEFORE_MS <= until
        )
        for start, end in near:
            if since <= end <= until:
                appended = [at + lat for at, lat in events if start - STALL_BEFORE_MS <= at <= end]
                if appended:
                    catch_ups.append(max(appended) - end)
        quiet += [
            latency
            for at, latency in events
            if not any(s - STALL_BEFORE_MS <= at <= e + QUIET_AFTER_MS for s, e in near)
        ]
    if not latencies:
        sys.exit("latency-stalls.py: no event in any run's window")
    latencies.sort()
    quiet.sort()
    fields = {
        "broker_gc_pauses": len(lengths),
        "broker_gc_pause_max_ms": f"{max(lengths, default=0):.1f}",
        "broker_gc_pause_total_ms": f"{sum(lengths):.1f}",
    }
    if catch_ups:
        fields["stall_catch_up_ms"] = f"{statistics.median(catch_ups):.1f}"
    if quiet:
        fields["quiet_p99_ms"] = percentile(quiet, 0.99)
        fields["quiet_events"] = len(quiet)
    if pooled:
        fields["pooled_p99_ms"] = percentile(latencies, 0.99)
        fields["events"] = len(latencies)
    print(" ".join(f"{k}={v}" for k, v in fields.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
