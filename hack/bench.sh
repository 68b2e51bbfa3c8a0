#!/usr/bin/env bash
# Benchmarks on the real local Apache Kafka broker. Every figure comes with a baseline measured
# in the same run, because these machines are shared and noisy.
#
#   hack/bench.sh          throughput (pipeline vs pass-through), latency, memory
#
# 1. Throughput: BENCH_EVENTS (2,000,000) generated events in an input topic with
#    BENCH_PARTITIONS (6) partitions; the consumer drains them until every output is
#    acknowledged (`run --max-records`), once as the pipeline and once as a pass-through (same
#    clients and settings, each record's own key, bytes copied unchanged where the pipeline
#    cleans); best of BENCH_ROUNDS (2) each, after unmeasured drains that warm the broker's JIT
#    up (at most BENCH_WARMUP, 5, pairs). Each round also drains, after the pipeline, a
#    pass-through re-keyed by user_id (`--passthrough-key user-id`), as the pipeline keys its
#    output: a copy under its input's key lands in its input's partition number, the pipeline's
#    records spread over every partition, which batches worse the more partitions there are; the
#    goals are against the first, and a line prints the pipeline against the re-keyed one. Per
#    drain: the CPU per event of the consumer, by thread with its context switches
#    (hack/thread-cpu.py), and of the broker, split into its request threads, its JVM's own
#    (JIT, GC) and the rest; and the requests each client sent. The pipeline also runs with
#    insights publishing off (`--insights-topic ''`): publishing must cost at most 3%: the line
#    `insights on/off` prints the ratio round by round, with its median. And exactly once
#    (`--guarantee exactly-once`, transactions every 100 ms by default) against at least once:
#    the goal is >= 0.8x, round by round and their median, as for the insights; one more drain
#    per interval of BENCH_EOS_INTERVALS ("50ms 1s", no records limit) draws the curve. One more
#    pipeline drain per set of client settings in BENCH_TUNINGS (space-separated sets of
#    comma-separated librdkafka properties; by default a longer producer linger, fetches that
#    wait to fill, and both), with its latency (below).
#    The `goals` lines hold the efficiency goals, each marked met or missed, and a last one
#    counts them: the broker's request threads per event at most 1.2x the pass-through's and end
#    to end at least 0.75x, both as the median of the rounds' own ratios (each round's drains
#    share the machine's moment; the best of each kind can pair a quiet drain with a busy one,
#    and is printed beside them), decided unrounded (printed to 3 decimals); the consumer's CPU
#    per event at most the pass-through's plus 1.5x the core's (`process` over the same events,
#    no Kafka), from each kind's best drain, as printed; the p99 at the fixed rate (2. below)
#    no worse than the pass-through's; the pipeline drains' peak RSS under 100 MB. BENCH_PIN=1
#    pins the broker to core 0 and the consumers to core 1: production's shape, where the
#    broker has machines of its own. BENCH_PROFILE=1 adds a drain of each kind under a
#    system-wide `perf record` and prints where the samples fell.
# 2. Latency: at BENCH_LATENCY_RATE (20,000) events/s for BENCH_LATENCY_SECONDS (15), p50/p99
#    from the input's produce time to the output's append time (after a 2 s warm-up, so
#    BENCH_LATENCY_SECONDS must be more than 2; the all-events p99 is printed too), and the
#    broker's GC pauses meanwhile (how many, the longest, their total) with what each run's
#    latency was around them and apart from them (hack/latency-stalls.py): at least once and
#    the pass-through, medians of BENCH_LATENCY_ROUNDS (5) rounds each after one unmeasured
#    run, and each kind's rounds together; exactly once and each set of BENCH_TUNINGS, one run
#    each. Exactly once, a read_committed reader sees a record when its transaction commits:
#    add up to the commit interval and the commit itself
#    (fetch_consumer_transaction_commit_duration_seconds). Each run also prints its broker's
#    CPU per event, its request threads' and its other threads' but the JVM's own (a fetch that
#    waits is timed out by a broker thread that is not a request thread): at one rate, the
#    like-for-like broker comparison.
# 3. Memory: peak RSS of `process` over BENCH_MEMORY_EVENTS (10,000,000) events with as many
#    distinct users and IPs, against 10,000 events.
#
# The last line is machine-readable:
#   pipeline_vs_passthrough=<best-of ratio> pipeline_vs_passthrough_median=<median of the rounds' ratios> pipeline_eps=<n> passthrough_eps=<n> rss_mb=<n> goals_missed=<none, or the missed goals' names, comma-separated: broker, consumer, end-to-end, latency, memory>
source "$(dirname "$0")/lib.sh"
source "$HACK_DIR/bench-lib.sh"

events="${BENCH_EVENTS:-2000000}"
partitions="${BENCH_PARTITIONS:-6}"
rounds="${BENCH_ROUNDS:-2}"
latency_rate="${BENCH_LATENCY_RATE:-20000}"
latency_seconds="${BENCH_LATENCY_SECONDS:-15}"
latency_rounds="${BENCH_LATENCY_ROUNDS:-5}"
[[ "$rounds" =~ ^[0-9]+$ ]] && [ "$rounds" -ge 1 ] || die "BENCH_ROUNDS=$rounds: give a whole number of rounds, at least 1"
[[ "$latency_seconds" =~ ^[0-9]+$ ]] && [ "$latency_seconds" -gt 2 ] ||
  die "BENCH_LATENCY_SECONDS=$latency_seconds: give whole seconds, more than the latency tool's 2 s warm-up"
memory_events="${BENCH_MEMORY_EVENTS:-10000000}"
eos_intervals="${BENCH_EOS_INTERVALS:-50ms 1s}"
read -ra tunings <<<"${BENCH_TUNINGS:-linger.ms=20 fetch.wait.max.ms=10,fetch.min.bytes=1048576 linger.ms=20,fetch.wait.max.ms=10,fetch.min.bytes=1048576}"
# x_flags SET: the -X flags of a comma-separated set of properties, one word per line.
x_flags() { tr ',' '\n' <<<"$1" | sed 's/^/-X\n/'; }

"$HACK_DIR/install-system-deps.sh"
need cargo
cd "$REPO_ROOT"
bench_build

state="$REPO_ROOT/target/bench"
rm -rf "$state" && mkdir -p "$state"
trap bench_stop_broker EXIT
bench_broker 2g
bench_load "$bin" "$events" "$partitions"

pin_if_asked
# ratio A B [DIGITS]: A / B, rounded.
ratio() { python3 -c "print(f'{$1 / max($2, 1e-9):.${3:-2}f}')"; }
# verdict TEST X...: "met" if the Python expression TEST holds of x, the numbers X... as they
# are (not as printed, so that rounding decides nothing), with median() at hand; "missed" if
# it does not, or a number is missing or is not one.
verdict() {
  python3 - "$@" <<'PY'
import statistics, sys
test, *args = sys.argv[1:]
try:
    x = [float(a) for a in args]
    met = bool(x) and eval(test, {"median": statistics.median, "x": x})
except (ValueError, IndexError):
    met = False
print("met" if met else "missed")
PY
}
# median_of X...: the median of the numbers, to 3 decimals.
median_of() { python3 -c "import statistics, sys; print(f'{statistics.median(map(float, sys.argv[1:])):.3f}')" "$@"; }
# shown X...: the numbers to 3 decimals, as the goals lines print a round's ratio.
shown() { python3 -c "import sys; print(' '.join(f'{float(v):.3f}' for v in sys.argv[1:]))" "$@"; }

# Runs the consumer until it has drained the input; prints
# "<events/s> <peak RSS KiB> <consumer CPU us/event> <broker CPU us/event> <broker request
# threads' CPU us/event> <producer queue wait ms> <requests>", the last from the run's
# "requests to the brokers" line (statistics every second): produce and fetch requests per
# 1,000 events, records per produce batch, how long records waited in the producer's queue
# (and the most queued) and its requests' round trip, and produce batches (requests) by
# topic. A producer that keeps up waits about linger.ms; one that cannot keep up queues
# records far longer, in bigger batches.
# The consumer's CPU by thread and its context switches, and the broker's CPU in parts, go to
# $state/<name>.threads.
# drained NAME OUTPUT [ARGS...]: drain, its line kept in $state/NAME.line. A drain that fails
# stops the bench here, with its message; inside `read < <(drain ...)` its exit ended only the
# substitution, and the bench stopped later, silently, on the read that got no line.
drained() { drain "$@" >"$state/$1.line"; }

drain() {
  local name="$1" output="$2" timer consumer watcher
  shift 2
  threads snap "$broker_pid" "$state/$name.broker-before"
  "${consumer_cpus[@]}" /usr/bin/time -f '%M %U %S' -o "$state/$name.rss" "$bin" --log-format json run "${drain_flags[@]}" \
    --group-id "bench-$name-$RANDOM$RANDOM" --output-topic "$output" "$@" \
    >"$state/$name.out" 2>"$state/$name.err" &
  timer=$!
  until consumer="$(pgrep -P "$timer")"; do sleep 0.01; done
  threads watch "$consumer" "$state/$name.consumer" &
  watcher=$!
  wait "$timer" || die "$name run failed (see $state/$name.err)"
  wait "$watcher"
  threads snap "$broker_pid" "$state/$name.broker-after"
  local eps rss user sys broker_requests broker_jvm broker_other
  eps="$(events_per_second "$state/$name.out")"
  read -r rss user sys <"$state/$name.rss"
  read -r broker_requests broker_jvm broker_other < <(threads broker "$state/$name.broker-before" "$state/$name.broker-after" "$events")
  {
    echo "consumer threads: $(threads diff - "$state/$name.consumer" "$events")"
    echo "broker: requests $broker_requests, JVM (JIT, GC) $broker_jvm, other $broker_other us/event"
  } >"$state/$name.threads"
  python3 - "$(run_summary "$state/$name.err")" <<EOF
import json, sys
fields = json.loads(sys.argv[1])
per_k = lambda n: f"{n * 1000 / $events:.1f}"
requests = (f"produce={per_k(fields.get('produce_requests', 0))}/1k-events,"
            f"fetch={per_k(fields.get('fetch_requests', 0))}/1k-events,"
            f"records/batch={fields.get('records_per_produce_batch', '?')}, "
            f"queue wait={fields.get('produce_queue_wait_ms', '?')}ms "
            f"(peak {fields.get('produce_peak_queued', '?')} queued, "
            f"{fields.get('produce_peak_queued_mib', '?')} of {fields.get('produce_queue_limit_mib', '?')} MiB), "
            f"round trip={fields.get('produce_round_trip_ms', '?')}ms; "
            f"hold: {fields.get('hold_releases', '?')} releases of {fields.get('records_per_hold_release', '?')} records, "
            f"oldest waited {fields.get('hold_wait_mean_ms', '?')}ms mean, {fields.get('hold_wait_max_ms', '?')}ms max; "
            f"batches by topic: {fields.get('produce_batches_by_topic', '?')}")
broker = $broker_requests + $broker_jvm + $broker_other
print(${eps:-0}, $rss, f"{($user + $sys) * 1e6 / $events:.2f}", f"{broker:.2f}", "$broker_requests",
      fields.get('produce_queue_wait_ms', '?'), requests)
EOF
}

# Logs a drain's line and its threads' breakdown.
report() {
  log "$1"
  sed 's/^/    /' "$state/$2.threads" >&2
}

# The broker's JIT compiles the code paths the drains take, for the first several of them: in
# a fresh broker its compilers used more CPU than its request threads (up to 3.4 against 1.8
# us per event), and the pipeline's throughput climbed by a quarter over ten drains. Unmeasured
# drains first, a pass-through and a pipeline at a time, until a pipeline drain's JIT and GC
# cost under 0.2 us per event (at most BENCH_WARMUP, 5, pairs), so round 1 meets a warm broker.
log "warming the broker up: pass-through and pipeline drains, not measured, until its JIT is quiet"
for warm in $(seq "${BENCH_WARMUP:-5}"); do
  drain "warm-pass-$warm" bench-pass --passthrough >/dev/null
  drain "warm-pipe-$warm" bench-out >/dev/null
  read -r _ jvm _ < <(threads broker "$state/warm-pipe-$warm.broker-before" "$state/warm-pipe-$warm.broker-after" "$events")
  log "warm-up $warm: the broker's JIT and GC took $jvm us per event of the pipeline drain"
  python3 -c "import sys; sys.exit(0 if $jvm < 0.2 else 1)" && break
done

# CPU per event tells a CPU-bound run from one that waits: with the broker on the same cores,
# the ratio cannot beat pass-through CPU / pipeline CPU once both keep the cores busy.
# A single drain varies by ~20% with the machine, in either kind (and the broker's request
# threads per event by up to 2x with the cores shared, stop 38): the best of each kind can come
# from different moments, so each round's own ratios (end to end, the broker's, the insights'
# and exactly once's) are kept unrounded, and their medians decide the goals.
best_pass=0 best_pipe=0 best_quiet=0 best_eos=0 pipe_rss=0 pass_cpu="" pipe_cpu="" pass_wait="" pipe_wait="" eos_cpu=""
round_ratios=() broker_ratios=() insights_ratios=() eos_ratios=() rekeyed_ratios=() rekeyed_broker_ratios=()
for round in $(seq "$rounds"); do
  drained "pass-$round" bench-pass --passthrough
  read -r eps _ cpu broker requests_cpu queue_wait requests <"$state/pass-$round.line"
  round_pass="$eps" round_pass_requests="$requests_cpu"
  report "round $round: pass-through $eps events/s (CPU per event: consumer $cpu us, broker $broker us; requests $requests)" "pass-$round"
  [ "$eps" -gt "$best_pass" ] && best_pass="$eps" pass_cpu="$cpu" pass_broker="$broker" pass_requests="$requests_cpu" pass_wait="$queue_wait"
  drained "pipe-$round" bench-out
  read -r eps rss cpu broker requests_cpu queue_wait requests <"$state/pipe-$round.line"
  report "round $round: pipeline     $eps events/s (CPU per event: consumer $cpu us, broker $broker us; peak RSS $((rss / 1024)) MB; requests $requests)" "pipe-$round"
  [ "$eps" -gt "$best_pipe" ] && best_pipe="$eps" pipe_cpu="$cpu" pipe_broker="$broker" pipe_requests="$requests_cpu" pipe_wait="$queue_wait"
  round_ratios+=("$(ratio "$eps" "$round_pass" 6)")
  round_pipe="$eps" round_pipe_requests="$requests_cpu"
  broker_ratios+=("$(ratio "$requests_cpu" "$round_pass_requests" 6)")
  [ "$rss" -gt "$pipe_rss" ] && pipe_rss="$rss"
  # After the pipeline, so that the goals' pair of drains runs back to back.
  drained "rekeyed-$round" bench-pass --passthrough --passthrough-key user-id
  read -r eps _ cpu broker requests_cpu _ requests <"$state/rekeyed-$round.line"
  report "round $round: pass-through re-keyed by user_id $eps events/s (CPU per event: consumer $cpu us, broker $broker us; requests $requests)" "rekeyed-$round"
  rekeyed_ratios+=("$(ratio "$round_pipe" "$eps" 6)")
  rekeyed_broker_ratios+=("$(ratio "$round_pipe_requests" "$requests_cpu" 6)")
  drained "quiet-$round" bench-out --insights-topic ''
  read -r eps _ cpu broker _ _ _ <"$state/quiet-$round.line"
  report "round $round: pipeline, insights not published $eps events/s (CPU per event: consumer $cpu us, broker $broker us)" "quiet-$round"
  [ "$eps" -gt "$best_quiet" ] && best_quiet="$eps"
  insights_ratios+=("$(ratio "$round_pipe" "$eps" 6)")
  drained "eos-$round" bench-out --guarantee exactly-once
  read -r eps _ cpu broker _ _ requests <"$state/eos-$round.line"
  report "round $round: pipeline, exactly once (100ms) $eps events/s (CPU per event: consumer $cpu us, broker $broker us; requests $requests)" "eos-$round"
  [ "$eps" -gt "$best_eos" ] && best_eos="$eps" eos_cpu="consumer $cpu us + broker $broker us"
  eos_ratios+=("$(ratio "$eps" "$round_pipe" 6)")
done
eos_curve=""
for interval in $eos_intervals; do
  drained "eos-$interval" bench-out --guarantee exactly-once --commit-interval "$interval" --transaction-max-records 10000000
  read -r eps _ _ _ _ _ _ <"$state/eos-$interval.line"
  log "exactly once, transactions every $interval: $eps events/s"
  eos_curve="$eos_curve $interval: $eps ($(python3 -c "print(f'{$eps / max($best_pipe, 1):.2f}')")x);"
done
# Client settings against the broker's work. A consumer-bound pipeline sends a batch per
# partition every linger.ms (librdkafka puts one partition in each produce request), so the
# linger sets the produce requests; a consumer's fetch returns as soon as a record arrives
# (fetch.min.bytes=1), so at a steady rate it sends a fetch for every few appends, and
# fetch.wait.max.ms with a large fetch.min.bytes makes each fetch collect that long instead.
# The latency runs below show what each costs.
tuning_lines=()
for i in "${!tunings[@]}"; do
  mapfile -t flags < <(x_flags "${tunings[i]}")
  drained "tuning-$i" bench-out "${flags[@]}"
  read -r eps _ cpu broker requests_cpu _ requests <"$state/tuning-$i.line"
  report "pipeline, ${tunings[i]}: $eps events/s (CPU per event: consumer $cpu us, broker $broker us; requests $requests)" "tuning-$i"
  tuning_lines+=("${tunings[i]}: $eps events/s ($(ratio "$eps" "$best_pass")x pass-through), broker request threads $requests_cpu us/event ($(ratio "$requests_cpu" "$pass_requests")x pass-through's), consumer $cpu us/event; requests $requests")
done

# BENCH_PROFILE=1: one more drain of each kind under a system-wide `perf record` (consumer
# and broker together, 999 samples a second per core), and where the samples fell, by thread
# and symbol. The figures of docs/benchmarks.md §8's profile.
profile_of() {
  local name="$1" recorder
  shift
  perf record -a -F 999 -o "$state/$name.perf" >/dev/null 2>&1 &
  recorder=$!
  sleep 0.5
  drain "$name" "$@" >/dev/null
  kill -INT "$recorder" && wait "$recorder" || true
  perf report -i "$state/$name.perf" -n --sort comm,dso,sym --stdio >"$state/$name.report" 2>/dev/null
  awk '/^ +[0-9.]+%/ && n++ < 40' "$state/$name.report" >"$state/$name.profile"
  log "profile of a $name drain (share of all samples; per thread and symbol): $state/$name.profile"
  head -15 "$state/$name.profile" >&2
}
if [ -n "${BENCH_PROFILE:-}" ]; then
  need perf
  profile_of profile-pass bench-pass --passthrough
  profile_of profile-pipe bench-out
fi

# Prints the latency line of a consumer run at the fixed rate, with `$@` added to its flags:
# e2e_latency's figures and window; the CPU per event of the broker's request threads and of
# its other threads but the JVM's own, over the run (serving the load's producer too); the
# hold's waits; and the broker's GC pauses with the latency around them and apart from them
# (`stalls`). At a fixed rate the pipeline and the pass-through ask the same of the broker but
# for the dead letters and the insights: the like-for-like broker comparison.
latency_of() {
  local name="$1" out="$2" dlq="$3" consumer_pid broker_requests broker_other line
  shift 3
  log "latency ($name) at $latency_rate events/s for ${latency_seconds}s"
  topic "lat-in-$name" "$partitions"
  topic "$out" "$partitions" --config message.timestamp.type=LogAppendTime
  topic "$dlq" "$partitions"
  threads snap "$broker_pid" "$state/latency-$name.broker-before"
  "${consumer_cpus[@]}" "$bin" --log-format json run --bootstrap-servers "$bootstrap" --group-id "bench-latency-$name" \
    --input-topic "lat-in-$name" --output-topic "$out" --dead-letter-topic "$dlq" --http-addr 127.0.0.1:0 \
    "$@" >"$state/latency-$name.out" 2>"$state/latency-$name.err" &
  consumer_pid=$!
  # Load only once the consumer holds its partitions, or the first events wait for the group.
  for _ in $(seq 300); do
    grep -q '"partitions assigned"' "$state/latency-$name.err" && break
    sleep 0.1
  done
  grep -q '"partitions assigned"' "$state/latency-$name.err" ||
    die "the latency consumer got no partitions in 30 s (see $state/latency-$name.err)"
  "${consumer_cpus[@]}" "$bin" --log-format json generate --bootstrap-servers "$bootstrap" --topic "lat-in-$name" --rate "$latency_rate" \
    --count "$((latency_rate * latency_seconds))" 2>"$state/latency-load-$name.log"
  sleep 3
  kill -TERM "$consumer_pid" && wait "$consumer_pid" || true
  threads snap "$broker_pid" "$state/latency-$name.broker-after"
  read -r broker_requests _ broker_other < <(threads broker "$state/latency-$name.broker-before" "$state/latency-$name.broker-after" "$((latency_rate * latency_seconds))")
  line="$(E2E_LATENCY_TIMELINE="$state/latency-$name.timeline" "$latency_tool" "$bootstrap" "lat-in-$name" "$out")" ||
    die "e2e_latency could not measure the latency run $name"
  echo "$line broker_requests_us=$broker_requests broker_other_us=$broker_other $(hold_waits "$state/latency-$name.err") $(stalls "$name" "$line")"
}
# field KEY LINE: the value of KEY=... in a latency line (the whole key: `events` is not
# `quiet_events`).
field() { sed -n "s/\(.* \|^\)$1=\([0-9.-]*\).*/\2/p" <<<"$2"; }
# figure KEY LINE: field, or "-" for a figure with nothing to measure (no pause in a kind's
# rounds leaves the catch-up out).
figure() { field "$1" "$2" | grep . || echo -; }
# stalls [--pooled] NAME LINE [NAME LINE ...]: the broker's GC pauses over latency runs, each
# named as latency_of named it and over the window its LINE gives, and how the runs' latency
# fared around them and apart from them (hack/latency-stalls.py). Each pause stops every client
# at once, and at a fixed rate they set the p99 of both kinds (docs/benchmarks.md §8, stop 37).
stalls() {
  local runs=() pooled=()
  [ "$1" = --pooled ] && pooled=(--pooled) && shift
  while [ $# -gt 0 ]; do
    runs+=("$state/latency-$1.timeline" "$(field window_from_ms "$2")" "$(field window_to_ms "$2")")
    shift 2
  done
  python3 "$HACK_DIR/latency-stalls.py" "${pooled[@]}" "$state/kafka/gc.log" "${runs[@]}"
}
# hold_waits ERR: from a run's "requests to the brokers" line, how long the oldest record of
# each release of the hold waited in it, mean and most (what the hold added to latency).
hold_waits() {
  python3 - "$(run_summary "$1")" <<'PY'
import json, sys
fields = json.loads(sys.argv[1])
print(f"hold_wait_mean_ms={fields.get('hold_wait_mean_ms', '0.00')} hold_wait_max_ms={fields.get('hold_wait_max_ms', '0.00')}")
PY
}
# One latency line from several runs' lines: the median of each figure over the runs that
# have it (a run with no GC pause has no catch-up), except the runs' own windows, and every
# run's p99 as rounds_p99_ms.
latency_medians() {
  python3 - "$@" <<'PY'
import statistics, sys
runs = [dict(f.split("=", 1) for f in line.split()) for line in sys.argv[1:]]
keys = [k for k in dict.fromkeys(k for r in runs for k in r) if not k.startswith("window_")]
def median(key):
    values = [r[key] for r in runs if key in r]
    m = statistics.median(float(v) for v in values)
    return f"{m:.2f}" if "." in values[0] else f"{m:.0f}"
print(" ".join(f"{key}={median(key)}" for key in keys),
      "rounds_p99_ms=" + ",".join(r["latency_p99_ms"] for r in runs))
PY
}
# The first run at the rate comes out slower whichever kind it is (on a fresh broker its p99
# was 201-209 ms, the runs after it 27-93 ms), and a single run of each kind puts one of them
# first. So one short run goes first, unmeasured; then the rounds alternate which kind goes
# first, and each kind's line holds its medians (docs/benchmarks.md §8, stop 29). The broker
# warms up for each kind's own paths (the pipeline's dead letters and insights): run by hand
# on a fresh broker, alternating, the pipeline's first two runs gave p99s of 109 and 48 ms,
# its next four 18-30 against the pass-through's 20-30 (stop 36). Each run's latencies, in production
# order, are in $state/latency-NAME.timeline.
latency_seconds=5 latency_of warm lat-out-warm lat-dlq-warm --commit-interval 1s --passthrough >/dev/null
latency_seconds=5 latency_of warm-pipeline lat-out-warm-pipeline lat-dlq-warm-pipeline --commit-interval 1s >/dev/null
alo_runs=() pass_runs=() alo_named=() pass_named=()
for round in $(seq "$latency_rounds"); do
  order=(alo pass)
  ((round % 2)) || order=(pass alo)
  for kind in "${order[@]}"; do
    if [ "$kind" = alo ]; then
      alo_runs+=("$(latency_of "alo-$round" "lat-out-$round" "lat-dlq-$round" --commit-interval 1s)")
      alo_named+=("alo-$round" "${alo_runs[-1]}")
    else
      pass_runs+=("$(latency_of "pass-$round" "lat-out-pass-$round" "lat-dlq-pass-$round" \
        --commit-interval 1s --passthrough)")
      pass_named+=("pass-$round" "${pass_runs[-1]}")
    fi
  done
done
latency="$(latency_medians "${alo_runs[@]}")"
pass_latency="$(latency_medians "${pass_runs[@]}")"
# All the rounds' events and pauses of each kind together: a p99 over BENCH_LATENCY_ROUNDS
# times the events, which one round's few pauses sway less than they sway its own.
alo_pooled="$(stalls --pooled "${alo_named[@]}")"
pass_pooled="$(stalls --pooled "${pass_named[@]}")"
eos_latency="$(latency_of eos eos-lat-out eos-lat-dlq --guarantee exactly-once)"
for i in "${!tunings[@]}"; do
  mapfile -t flags < <(x_flags "${tunings[i]}")
  tuning_lines[i]="${tuning_lines[i]}; $(latency_of "tuning-$i" "lat-out-t$i" "lat-dlq-t$i" --commit-interval 1s "${flags[@]}")"
done
at_rate() { field broker_requests_us "$1"; }

log "memory: process over $memory_events events with distinct users and IPs (baseline: 10,000)"
peak_rss_kb() {
  "$bin" generate --output - --rate 0 --count "$1" --seed 7 |
    /usr/bin/time -f '%M' -o "$state/mem.rss" "$bin" process --input - --output /dev/null \
      --dead-letter /dev/null 2>"$state/mem-$1.report"
  cat "$state/mem.rss"
}
rss_small="$(peak_rss_kb 10000)"
rss_large="$(peak_rss_kb "$memory_events")"
# The core's CPU per event in this run, for the consumer's goal: `process` over the drains'
# events (parse, clean, serialize, insights on their thread; no Kafka), its own CPU only.
log "core: process mode over the drains' $events events"
"$bin" generate --output - --rate 0 --count "$events" --variety --malformed 0.01 --seed 1 |
  /usr/bin/time -f '%U %S' -o "$state/core.cpu" "${consumer_cpus[@]}" "$bin" process --input - \
    --output /dev/null --dead-letter /dev/null 2>/dev/null
read -r core_user core_sys <"$state/core.cpu"
core_cpu="$(python3 -c "print(f'{($core_user + $core_sys) * 1e6 / $events:.2f}')")"
users_line="$(grep -E '^users ' "$state/mem-$memory_events.report")"
top_line="$(grep -E '^most active IPs' "$state/mem-$memory_events.report")"

insights_median="$(median_of "${insights_ratios[@]}")"
eos_median="$(median_of "${eos_ratios[@]}")"
consumer_budget="$(python3 -c "print(f'{$pass_cpu + 1.5 * $core_cpu:.2f}')")"
broker_median="$(median_of "${broker_ratios[@]}")"
median_ratio="$(median_of "${round_ratios[@]}")"
pipe_p99="$(field latency_p99_ms "$latency")" pass_p99="$(field latency_p99_ms "$pass_latency")"
rss_mb=$((pipe_rss / 1024))
broker_goal="$(verdict 'median(x) <= 1.2' "${broker_ratios[@]}")"
consumer_goal="$(verdict 'x[0] <= x[1] + 1.5 * x[2]' "$pipe_cpu" "$pass_cpu" "$core_cpu")"
end_to_end_goal="$(verdict 'median(x) >= 0.75' "${round_ratios[@]}")"
latency_goal="$(verdict 'x[0] <= x[1]' "$pipe_p99" "$pass_p99")"
memory_goal="$(verdict 'x[0] / 1024 < 100' "$pipe_rss")"
missed=()
[ "$broker_goal" = met ] || missed+=(broker)
[ "$consumer_goal" = met ] || missed+=(consumer)
[ "$end_to_end_goal" = met ] || missed+=(end-to-end)
[ "$latency_goal" = met ] || missed+=(latency)
[ "$memory_goal" = met ] || missed+=(memory)
goals_missed="$(IFS=,; echo "${missed[*]:-none}")"
echo
echo "throughput  pipeline $best_pipe events/s, pass-through $best_pass events/s (best of $rounds, $events events, $partitions partitions$([ -n "${BENCH_PIN:-}" ] && echo ", broker pinned to core 0 and consumers to core 1"))"
echo "cpu/event   pipeline consumer $pipe_cpu us + broker $pipe_broker us; pass-through consumer $pass_cpu us + broker $pass_broker us ($(nproc) cores in all)"
echo "goals       broker: request threads per event, pipeline / pass-through round by round $(shown "${broker_ratios[@]}"), median ${broker_median}x (goal <= 1.2x: $broker_goal); best of each $pipe_requests us against $pass_requests, $(ratio "$pipe_requests" "$pass_requests")x;"
echo "            records waited ${pipe_wait} ms in the pipeline's producer queue, ${pass_wait} ms in the pass-through's (batches grow with the wait)"
echo "            at $latency_rate events/s, $(at_rate "$latency") us/event, $(ratio "$(at_rate "$latency")" "$(at_rate "$pass_latency")")x pass-through's $(at_rate "$pass_latency")"
echo "            latency at $latency_rate events/s: p99 $pipe_p99 ms, pass-through's $pass_p99 (median of $latency_rounds rounds; goal: no worse: $latency_goal);"
echo "            all rounds' events together, p99 $(field pooled_p99_ms "$alo_pooled") ms vs $(field pooled_p99_ms "$pass_pooled"); the broker's GC paused $(field broker_gc_pauses "$alo_pooled") times in the pipeline's rounds (the longest $(field broker_gc_pause_max_ms "$alo_pooled") ms), $(field broker_gc_pauses "$pass_pooled") in the pass-through's ($(field broker_gc_pause_max_ms "$pass_pooled") ms):"
echo "            after each, the last event it held back was appended $(figure stall_catch_up_ms "$alo_pooled") ms later vs $(figure stall_catch_up_ms "$pass_pooled") (median); away from the pauses, p99 $(figure quiet_p99_ms "$alo_pooled") ms vs $(figure quiet_p99_ms "$pass_pooled")"
echo "            consumer: $pipe_cpu us/event against pass-through's $pass_cpu + 1.5 x the core's $core_cpu = $consumer_budget (goal: at most that: $consumer_goal)"
echo "            end to end: pipeline / pass-through round by round $(shown "${round_ratios[@]}"), median ${median_ratio}x (goal >= 0.75x: $end_to_end_goal); best of each $(ratio "$best_pipe" "$best_pass")x"
echo "            peak RSS of the pipeline's drains $rss_mb MB (goal < 100 MB: $memory_goal)"
echo "            against the pass-through re-keyed by user_id, as the pipeline keys its output: end to end round by round $(shown "${rekeyed_ratios[@]}"), median $(median_of "${rekeyed_ratios[@]}")x; broker request threads $(shown "${rekeyed_broker_ratios[@]}"), median $(median_of "${rekeyed_broker_ratios[@]}")x"
echo "            $((5 - ${#missed[@]})) of 5 goals met$([ ${#missed[@]} -eq 0 ] || echo "; missed: $goals_missed")"
echo "insights    on/off round by round $(shown "${insights_ratios[@]}"), median $insights_median (publishing costs at most 3%: $(verdict 'median(x) >= 0.97' "${insights_ratios[@]}")); best of each: publishing $best_pipe events/s, not publishing $best_quiet events/s"
echo "exactly once  against at least once round by round $(shown "${eos_ratios[@]}"), median ${eos_median}x (goal >= 0.8x: $(verdict 'median(x) >= 0.8' "${eos_ratios[@]}"); transactions every 100ms); best $best_eos events/s (cpu/event $eos_cpu); other intervals:$eos_curve"
echo "$latency (at least once, the default settings: linger.ms=5, fetch.wait.max.ms=500, fetch.min.bytes=1)"
echo "$pass_latency (pass-through)"
echo "$eos_latency (exactly once, append time; read_committed readers see it at the transaction's commit)"
for line in "${tuning_lines[@]}"; do echo "tuning      $line"; done
echo "memory      peak RSS $((rss_large / 1024)) MB after $memory_events events vs $((rss_small / 1024)) MB after 10,000 (process mode)"
echo "            $users_line"
echo "            $top_line"
echo "pipeline_vs_passthrough=$(ratio "$best_pipe" "$best_pass" 3) pipeline_vs_passthrough_median=$median_ratio pipeline_eps=$best_pipe passthrough_eps=$best_pass rss_mb=$rss_mb goals_missed=$goals_missed"
