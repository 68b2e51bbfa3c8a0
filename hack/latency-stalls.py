#!/usr/bin/env python3
"""The latency runs of hack/bench.sh split into the broker's GC stalls and the rest.

  latency-stalls.py GC_LOG TIMELINE FROM_MS TO_MS [TIMELINE FROM_MS TO_MS ...]

Each TIMELINE is a run's "produced-at-ms latency-ms" lines (e2e_latency's
E2E_LATENCY_TIMELINE), of which the events produced from FROM_MS count (e2e_latency's
window_from_ms: after its warm-up); the broker's pauses count from FROM_MS to TO_MS (its
window_to_ms: the last such event's append). Prints one line over all the runs given:

  broker_gc_pauses, broker_gc_pause_max_ms, broker_gc_pause_total_ms
      the broker's collector pauses (GC_LOG and the parts the JVM rotated out): how many, the
      longest and their total
  stall_excess_ms
      the median over the pauses of how much longer than the pause itself the worst latency of
      the events produced from STALL_BEFORE_MS before it to its end was: what the clients
      added while catching up
  quiet_p99_ms, quiet_events
      the p99 of the events produced away from every pause (from STALL_BEFORE_MS before it to
      QUIET_AFTER_MS after it): the latency the GC leaves alone
  pooled_p99_ms, events    (with more than one run) the p99 over all the runs' events

Why: a pause stops every client of the broker at once, and at 20,000 events/s the pauses set
the p99 of the pipeline and the pass-through alike (docs/benchmarks.md §8, stop 37). Split
this way, the two kinds compare on what each does itself: how fast it catches up after a
stall and its latency between stalls. The GC log's time is when the pause ended (G1 logs a
pause when it is over).
"""
import datetime
import glob
import re
import statistics
import sys

# An event produced this long before a pause can still be waiting for the broker when it
# starts (in a fetch, a produce request or the consumer's own batch).
STALL_BEFORE_MS = 150
# Catching up after a pause took 20-50 ms on this machine: this leaves it well behind.
QUIET_AFTER_MS = 300

PAUSE = re.compile(r"\[([^\]]+)\].* Pause .* ([0-9.]+)ms$")


def pauses(gc_log):
    """(start, end, length) of every pause in the log, in ms since the epoch."""
    found = []
    for part in sorted(glob.glob(gc_log + "*")):
        with open(part) as f:
            for line in f:
                m = PAUSE.match(line.strip())
                if m:
                    end = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f%z")
                    end_ms = end.timestamp() * 1000
                    length = float(m.group(2))
                    found.append((end_ms - length, end_ms, length))
    return found


def percentile(sorted_values, p):
    # The same rank as e2e_latency's.
    return sorted_values[round((len(sorted_values) - 1) * p)]


def main(args):
    if len(args) < 4 or (len(args) - 1) % 3:
        sys.exit(__doc__)
    all_pauses = pauses(args[0])
    lengths, excesses, latencies, quiet = [], [], [], []
    for i in range(1, len(args), 3):
        timeline, since, until = args[i], int(args[i + 1]), int(args[i + 2])
        with open(timeline) as f:
            events = [tuple(map(int, line.split())) for line in f]
        events = [(at, latency) for at, latency in events if at >= since]
        latencies += [latency for _, latency in events]
        run_pauses = [(s, e, n) for s, e, n in all_pauses if since <= e <= until]
        for start, end, length in run_pauses:
            stalled = [lat for at, lat in events if start - STALL_BEFORE_MS <= at <= end]
            if stalled:
                excesses.append(max(stalled) - length)
            lengths.append(length)
        quiet += [
            latency
            for at, latency in events
            if not any(s - STALL_BEFORE_MS <= at <= e + QUIET_AFTER_MS for s, e, _ in run_pauses)
        ]
    if not latencies:
        sys.exit("latency-stalls.py: no event in any run's window")
    latencies.sort()
    quiet.sort()
    fields = {
        "broker_gc_pauses": len(lengths),
        "broker_gc_pause_max_ms": f"{max(lengths, default=0):.1f}",
        "broker_gc_pause_total_ms": f"{sum(lengths):.1f}",
        "stall_excess_ms": f"{statistics.median(excesses):.1f}" if excesses else "0.0",
        "quiet_p99_ms": percentile(quiet, 0.99) if quiet else 0,
        "quiet_events": len(quiet),
    }
    if len(args) > 4:
        fields["pooled_p99_ms"] = percentile(latencies, 0.99)
        fields["events"] = len(latencies)
    print(" ".join(f"{k}={v}" for k, v in fields.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
