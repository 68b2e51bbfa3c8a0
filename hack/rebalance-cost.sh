#!/usr/bin/env bash
# What a scale event costs the pipeline, on the real local Apache Kafka broker: eager
# assignment (librdkafka's default, range,roundrobin) against cooperative-sticky (the
# consumer's default), in the same run.
#
#   hack/rebalance-cost.sh
#
# For each assignor: a steady load of REBALANCE_RATE (5,000) events/s for REBALANCE_SECONDS
# (30) into REBALANCE_PARTITIONS (12) partitions, one replica running throughout, a second one
# joining a third of the way in and leaving (SIGTERM) two thirds of the way in: two scale
# events. Printed per assignor:
# - partitions revoked in all (each revoked partition pauses until its next owner has it),
# - the time from the first revocation of each event to the last assignment that ends it,
# - the end-to-end latency (produce time to output append time; hack/bench.sh's tool): p50,
#   p99 and max, so the pause as the events saw it.
source "$(dirname "$0")/lib.sh"
source "$HACK_DIR/bench-lib.sh"

rate="${REBALANCE_RATE:-5000}"
seconds="${REBALANCE_SECONDS:-30}"
partitions="${REBALANCE_PARTITIONS:-12}"

"$HACK_DIR/install-system-deps.sh"
need cargo python3
cd "$REPO_ROOT"
bench_build

state="$REPO_ROOT/target/rebalance-cost"
rm -rf "$state" && mkdir -p "$state"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  bench_stop_broker
}
trap cleanup EXIT
bench_broker

# replica NAME STRATEGY TOPIC_PREFIX: a consumer in the background, JSON logs in NAME.err;
# its pid in $started.
started=""
replica() {
  "$bin" --log-format json run --bootstrap-servers "$bootstrap" --group-id "$3-group" \
    --input-topic "$3-in" --output-topic "$3-out" --dead-letter-topic "$3-dlq" \
    --http-addr 127.0.0.1:0 -X "partition.assignment.strategy=$2" \
    >"$state/$1.out" 2>"$state/$1.err" &
  started=$!
  pids+=("$started")
}

# stop_replica PID: SIGTERM, then wait for its clean shutdown.
stop_replica() {
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

assigned() { grep -q '"partitions assigned"' "$state/$1.err"; }

# run_case NAME STRATEGY: writes the case's result line to NAME.result (not a subshell: the
# replicas must be this shell's children to be waited for).
run_case() {
  local name="$1" strategy="$2" first second load third=$((seconds / 3))
  topic "$name-in" "$partitions"
  topic "$name-dlq" "$partitions"
  topic "$name-out" "$partitions" --config message.timestamp.type=LogAppendTime
  replica "$name-1" "$strategy" "$name"
  first="$started"
  wait_for "assigned $name-1" 60 || die "$name: the first replica got no partitions (see $state/$name-1.err)"
  "$bin" --log-format json generate --bootstrap-servers "$bootstrap" --topic "$name-in" --rate "$rate" \
    --count "$((rate * seconds))" 2>"$state/$name-load.log" &
  load=$!
  sleep "$third"
  date +%s.%N >"$state/$name.join"
  replica "$name-2" "$strategy" "$name"
  second="$started"
  sleep "$third"
  date +%s.%N >"$state/$name.leave"
  stop_replica "$second"
  wait "$load" || die "$name: the load generator failed (see $state/$name-load.log)"
  sleep 3
  date +%s.%N >"$state/$name.stop"
  stop_replica "$first"
  local latency
  latency="$("$latency_tool" "$bootstrap" "$name-in" "$name-out")"
  python3 - "$state" "$name" "$strategy" "$latency" >"$state/$name.result" <<'PY'
import json, sys
from datetime import datetime

state, name, strategy, latency = sys.argv[1:]
def events(replica):
    out = []
    for line in open(f"{state}/{name}-{replica}.err"):
        try:
            v = json.loads(line)
        except ValueError:
            continue
        msg = v.get("fields", {}).get("message", "")
        ts = datetime.fromisoformat(v["timestamp"].replace("Z", "+00:00")).timestamp()
        if msg.startswith("partitions revoked"):
            revoked = v["fields"].get("partitions", "[]").strip("[]")
            out.append((ts, "revoke", len([p for p in revoked.split(",") if p.strip()])))
        elif msg == "partitions assigned":
            out.append((ts, "assign", int(v["fields"].get("partitions", 0))))
    return out

all_events = sorted(events(1) + events(2))
join, leave, stop = (float(open(f"{state}/{name}.{e}").read()) for e in ("join", "leave", "stop"))
def window(start, end):
    evs = [e for e in all_events if start <= e[0] < end]
    revoked = sum(n for _, kind, n in evs if kind == "revoke")
    revokes = [t for t, kind, n in evs if kind == "revoke" and n > 0]
    assigns = [t for t, kind, n in evs if kind == "assign" and n > 0]
    pause = (max(assigns) - min(revokes)) if revokes and assigns else 0.0
    return revoked, pause
j_rev, j_pause = window(join, leave)
l_rev, l_pause = window(leave, stop)
fields = dict(kv.split("=") for kv in latency.split())
print(f"{strategy:<20} join: {j_rev:>2} partitions revoked, {j_pause * 1000:6.0f} ms to reassign;"
      f" leave: {l_rev:>2} revoked, {l_pause * 1000:6.0f} ms;"
      f" latency p50 {fields['latency_p50_ms']} ms, p99 {fields['latency_p99_ms']} ms,"
      f" max {fields['latency_max_ms']} ms ({fields['matched']} events)")
PY
}

log "eager assignment (range,roundrobin): $rate events/s for ${seconds}s over $partitions partitions, a replica joining and leaving"
run_case eager "range,roundrobin"
log "cooperative-sticky: the same"
run_case coop cooperative-sticky
echo
cat "$state/eager.result" "$state/coop.result"
