# What the benchmarks on the local broker share (bench.sh, bench-builds.sh, bench-bytes.sh,
# bench-requests.sh, rebalance-cost.sh), so that their drains are the same drains. Source it
# after lib.sh, with $state set to the script's own directory under target/.
#
#   bench_build               the checkout's release consumer and latency tool, as $bin and
#                             $latency_tool
#   bench_broker [HEAP]       a broker of the script's own in $state/kafka (heap: HEAP, else
#                             KAFKA_HEAP, else 1g); sets $bootstrap and $broker_pid.
#                             bench_stop_broker stops it.
#   topic NAME PARTITIONS...  a topic on it (hack/kafka.sh topic's arguments)
#   bench_load BIN EVENTS PARTITIONS
#                             the drains' topics (bench-in, bench-out, bench-pass, bench-dlq) and
#                             EVENTS generated events in bench-in: 1% malformed, fixed seed
#   drain_flags               after bench_load: the `run` flags every drain shares (the input,
#                             the dead-letter topic, stop after EVENTS, statistics every second);
#                             a drain adds its group, output and own flags
#   events_per_second FILE    the events/s of a consumer's report (its `throughput` line)
#   run_summary ERR           the fields of a run's "requests to the brokers" log line (in its
#                             JSON log ERR) as a JSON object, {} without one
#   pin_broker                every thread of the broker to core 0; the consumers then run on
#                             core 1 (`taskset -c 1`): production's shape on two cores
#   pin_if_asked              with BENCH_PIN set, pin_broker; sets $consumer_cpus, the prefix
#                             a consumer's command runs under (empty, or `taskset -c 1`)
#   threads ARGS              hack/thread-cpu.py: CPU by thread (snap, watch, diff, broker)

bench_build() {
  log "building release binaries"
  cargo build --release --locked -p fetch-consumer --bin fetch-consumer --example e2e_latency
  bin="$CARGO_TARGET/release/fetch-consumer"
  latency_tool="$CARGO_TARGET/release/examples/e2e_latency"
}

bench_broker() {
  KAFKA_HEAP="${1:-${KAFKA_HEAP:-1g}}" "$HACK_DIR/kafka.sh" start "$state/kafka" >/dev/null
  bootstrap="$(sed -n 's/^KAFKA_BOOTSTRAP=//p' "$state/kafka/env")"
  broker_pid="$(cat "$state/kafka/kafka.pid")"
}

bench_stop_broker() { "$HACK_DIR/kafka.sh" stop "$state/kafka"; }

topic() { "$HACK_DIR/kafka.sh" topic "$state/kafka" "$@" >/dev/null; }

bench_load() {
  local bin="$1" events="$2" partitions="$3" t
  for t in bench-in bench-out bench-pass bench-dlq; do topic "$t" "$partitions"; done
  log "loading $events events into bench-in ($partitions partitions)"
  "$bin" --log-format json generate --bootstrap-servers "$bootstrap" --topic bench-in --rate 0 \
    --count "$events" --variety --malformed 0.01 --seed 1 2>"$state/load.log" \
    || die "loading bench-in failed (see $state/load.log)"
  drain_flags=(--bootstrap-servers "$bootstrap" --input-topic bench-in --dead-letter-topic bench-dlq
    --http-addr 127.0.0.1:0 --max-records "$events" -X statistics.interval.ms=1000)
}

events_per_second() { sed -n 's/^throughput *\([0-9,]*\) events\/s.*/\1/p' "$1" | tr -d ,; }

# The run logs its summary line once, at its end; should a log hold two, the last counts.
run_summary() {
  python3 - "$1" <<'PY'
import json, sys
fields = {}
for line in open(sys.argv[1]):
    if '"requests to the brokers"' in line:
        fields = json.loads(line)["fields"]
print(json.dumps(fields))
PY
}

pin_broker() { taskset -a -p -c 0 "$broker_pid" >/dev/null; }

pin_if_asked() {
  consumer_cpus=()
  [ -n "${BENCH_PIN:-}" ] || return 0
  pin_broker
  consumer_cpus=(taskset -c 1)
  log "pinned: the broker to core 0, the consumers to core 1"
}

threads() { python3 "$HACK_DIR/thread-cpu.py" "$@"; }
