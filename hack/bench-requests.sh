#!/usr/bin/env bash
# What a produce request costs the broker, apart from the records in it. librdkafka (the
# consumer's client, 2.12.1, and every release up to 2.15.0) puts one partition's batch in each
# produce request; the Java client puts every partition a broker leads in one. Both send events
# of the same generator, keyed by random UUIDs, at the same fixed rate, with the same settings
# (idempotent, acks=all, lz4, the linger; hack/ProduceLoad.java says where the Java client's
# differ in meaning), into topics of the same partitions, so while both keep the rate their
# batches per partition are of a size and mostly the requests differ.
#
#   hack/bench-requests.sh
#
# BENCH_REQUESTS_RATE (80,000) events/s for BENCH_REQUESTS_SECONDS (10) s into a topic of
# BENCH_REQUESTS_PARTITIONS (12: the pipeline's 6 output and 6 dead-letter partitions)
# partitions, linger BENCH_REQUESTS_LINGER_MS (5); BENCH_ROUNDS (3) rounds of both clients, in
# alternating order, after one unmeasured round. The broker is pinned to core 0 and the
# clients to core 1. Per run: the rate kept, the broker's request threads' CPU per event
# (hack/thread-cpu.py) and its produce requests per 1,000 events, read from its own
# RequestMetrics over JMX; then the median of each. See docs/benchmarks.md §8.
source "$(dirname "$0")/lib.sh"
source "$HACK_DIR/bench-lib.sh"

rate="${BENCH_REQUESTS_RATE:-80000}"
seconds="${BENCH_REQUESTS_SECONDS:-10}"
partitions="${BENCH_REQUESTS_PARTITIONS:-12}"
linger="${BENCH_REQUESTS_LINGER_MS:-5}"
rounds="${BENCH_ROUNDS:-3}"
events=$((rate * seconds))

"$HACK_DIR/install-system-deps.sh"
need cargo java taskset
cd "$REPO_ROOT"
bench_build
"$HACK_DIR/kafka.sh" fetch
kafka_home="$("$HACK_DIR/kafka.sh" home)"

state="$REPO_ROOT/target/bench-requests"
rm -rf "$state" && mkdir -p "$state"
trap bench_stop_broker EXIT
jmx_port="$(free_port)"
KAFKA_JMX_PORT="$jmx_port" bench_broker
pin_broker
log "pinned: the broker to core 0, the clients to core 1"
"$bin" generate --output "$state/events.jsonl" --rate 0 --count 100000 --variety --seed 1 2>/dev/null

# The broker's produce requests so far, summed over the request versions the clients used
# (the tool finds no metric, and fails, before the first produce request).
produce_requests() {
  { "$HACK_DIR/kafka.sh" tool "$state/kafka" org.apache.kafka.tools.JmxTool --one-time true \
    --object-name 'kafka.network:type=RequestMetrics,name=RequestsPerSec,request=Produce,*' \
    --attributes Count --jmx-url "service:jmx:rmi:///jndi/rmi://127.0.0.1:$jmx_port/jmxrmi" 2>/dev/null || true; } \
    | tail -n 1 | tr ',' '\n' | tail -n +2 | awk '{ n += $1 } END { print n + 0 }'
}

librdkafka() {
  taskset -c 1 "$bin" --log-format json generate --bootstrap-servers "$bootstrap" --topic "$1" \
    --rate "$rate" --count "$events" --variety --seed 1 -X "linger.ms=$linger" 2>&1 \
    | sed -n 's/.*"events_per_second":\([0-9.]*\).*/events_per_second=\1/p'
}

java_client() {
  taskset -c 1 java -cp "$kafka_home/libs/*" "$HACK_DIR/ProduceLoad.java" "$bootstrap" "$1" \
    "$state/events.jsonl" "$rate" "$events" "$linger"
}

# run CLIENT ROUND: one run into a topic of its own; prints and keeps its line.
run() {
  local client="$1" round="$2" topic="requests-$1-$2" before after said parts per_k requests_us
  local snaps="$state/$client-$round"
  topic "$topic" "$partitions"
  threads snap "$broker_pid" "$snaps.before"
  before="$(produce_requests)"
  said="$("$client" "$topic")" || die "$client failed"
  after="$(produce_requests)"
  [ "$after" -gt "$before" ] || die "the broker's produce request count did not grow ($before, then $after): is its JMX on port $jmx_port?"
  threads snap "$broker_pid" "$snaps.after"
  parts="$(threads broker "$snaps.before" "$snaps.after" "$events")" \
    || die "could not read the broker's threads (hack/thread-cpu.py)"
  read -r requests_us _ <<<"$parts"
  per_k="$(python3 -c "print(f'{($after - $before) * 1000 / $events:.2f}')")"
  echo "$client round $round: broker request threads ${requests_us} us/event, produce requests ${per_k}/1k-events; $said" \
    | tee -a "$state/runs"
}

log "warm-up round (not counted): $events events per client at $rate events/s"
run librdkafka 0 >/dev/null
run java_client 0 >/dev/null
: >"$state/runs"
for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) -eq 1 ]; then order=(librdkafka java_client); else order=(java_client librdkafka); fi
  for client in "${order[@]}"; do run "$client" "$round"; done
done

python3 - "$state/runs" "$rate" "$partitions" "$linger" <<'EOF'
import re, statistics, sys
runs, rate, partitions, linger = sys.argv[1:]
by = {}
for line in open(runs):
    client = line.split()[0]
    us = float(re.search(r"threads ([0-9.]+) us", line).group(1))
    per_k = float(re.search(r"requests ([0-9.]+)/1k", line).group(1))
    by.setdefault(client, []).append((us, per_k))
# Rounded as printed, so that the figure per request follows from the two lines above it.
med = {c: (round(statistics.median(u for u, _ in v), 2), round(statistics.median(k for _, k in v), 2))
       for c, v in by.items()}
l, j = med["librdkafka"], med["java_client"]
print(f"\nrequests    {rate} events/s, {partitions} partitions, linger.ms={linger}, broker on core 0 (medians of {len(by['librdkafka'])} rounds)")
print(f"            librdkafka (a partition per request): {l[0]:.2f} us/event in the broker's request threads, {l[1]:.2f} produce requests/1k events")
print(f"            Java client (a broker per request):   {j[0]:.2f} us/event, {j[1]:.2f} produce requests/1k events")
if l[1] > j[1]:
    print(f"            per request: {(l[0] - j[0]) * 1000 / (l[1] - j[1]):.0f} us of the broker's request threads; librdkafka / Java {l[0] / j[0]:.2f}x")
EOF
