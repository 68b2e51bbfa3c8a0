#!/usr/bin/env bash
# Whether the broker's extra work for the pipeline in a drain follows its records' bytes or
# its produce requests. The pipeline's output records are about a tenth bigger than its
# input's (`login_time` added; 240 against 214 bytes with the bench's generator), and in a
# drain it sends two to four times the pass-through's produce requests (docs/benchmarks.md
# §8). So three drains are compared, round by round in the same order, with the broker's
# request threads' CPU per event of each (hack/thread-cpu.py) and the requests each sent:
#
#   pass-input    the pass-through over generated events: the input's records
#   pass-output   the pass-through over the pipeline's own output: the output's records, in
#                 the pass-through's big batches (its requests are not quite the same: it
#                 produces bigger records and reads a log the pipeline wrote, so each line
#                 prints its produce and fetch requests)
#   pipeline      the pipeline over the generated events: the output's records, in its own
#                 batches
#
# Each kind's ratio to pass-input is taken round by round, the two drains a minute apart at
# most, and the median of the rounds' ratios printed.
#
#   hack/bench-bytes.sh
#
# BENCH_EVENTS (1,000,000) events, none malformed (so the pipeline's output holds as many, and
# no dead letter adds requests of its own), in BENCH_PARTITIONS (6) partitions; BENCH_ROUNDS
# (3) rounds after two unmeasured ones; BENCH_PIN=1 pins the broker to core 0 and the
# consumers to core 1, as in hack/bench.sh.
source "$(dirname "$0")/lib.sh"
source "$HACK_DIR/bench-lib.sh"

events="${BENCH_EVENTS:-1000000}"
partitions="${BENCH_PARTITIONS:-6}"
rounds="${BENCH_ROUNDS:-3}"

"$HACK_DIR/install-system-deps.sh"
need cargo
cd "$REPO_ROOT"
bench_build

state="$REPO_ROOT/target/bench-bytes"
rm -rf "$state" && mkdir -p "$state"
trap bench_stop_broker EXIT
bench_broker 2g
for t in input output out-input out-output out-pipeline dead-letters; do topic "$t" "$partitions"; done
log "loading $events events into input ($partitions partitions)"
"$bin" --log-format json generate --bootstrap-servers "$bootstrap" --topic input --rate 0 \
  --count "$events" --variety --malformed 0 --seed 1 2>"$state/load.log" ||
  die "loading input failed (see $state/load.log)"
pin_if_asked

# drain NAME INPUT OUTPUT [FLAGS...]: drains INPUT's events into OUTPUT; prints its line.
drain() {
  local name="$1" input="$2" output="$3" requests_us
  shift 3
  threads snap "$broker_pid" "$state/$name.before"
  "${consumer_cpus[@]}" "$bin" --log-format json run --bootstrap-servers "$bootstrap" \
    --input-topic "$input" --output-topic "$output" --dead-letter-topic dead-letters \
    --http-addr 127.0.0.1:0 --max-records "$events" -X statistics.interval.ms=1000 \
    --group-id "bench-bytes-$name-$RANDOM$RANDOM" "$@" >"$state/$name.out" 2>"$state/$name.err" ||
    die "the $name drain failed (see $state/$name.err)"
  threads snap "$broker_pid" "$state/$name.after" || die "could not read the broker's threads"
  # A function in $(...) runs without errexit: each step that can fail says so itself.
  read -r requests_us _ < <(threads broker "$state/$name.before" "$state/$name.after" "$events") || true
  [ -n "${requests_us:-}" ] || die "no broker CPU figure for the $name drain (hack/thread-cpu.py)"
  python3 - "$name" "$(events_per_second "$state/$name.out")" "$requests_us" "$(run_summary "$state/$name.err")" <<'PY'
import json, sys
name, eps, requests_us, fields = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
if not eps or "produce_requests" not in fields:
    sys.exit(f"the {name} drain printed no throughput or no request counts")
print(f"{name} events_per_second={eps} broker_requests_us={requests_us} "
      f"produce_requests={fields['produce_requests']} fetch_requests={fields.get('fetch_requests', 0)} "
      f"records_per_batch={fields.get('records_per_produce_batch', '?')}")
PY
}

log "the pipeline's output of the input, as the second pass-through's input"
drain make-output input output >/dev/null
made="$("$HACK_DIR/kafka.sh" tool "$state/kafka" org.apache.kafka.tools.GetOffsetShell \
  --bootstrap-server "$bootstrap" --topic output 2>"$state/offsets.err" | awk -F: '{ n += $3 } END { print n + 0 }')" ||
  die "could not count the output's records (see $state/offsets.err)"
# The pass-through over it stops after $events records: it must hold at least that many.
[ "$made" -ge "$events" ] || die "the pipeline made $made output records of $events events (see $state/make-output.err)"
rm -f "$state/runs"
for round in $(seq -1 "$rounds"); do
  [ "$round" -ge 1 ] && log "round $round" || log "warm-up (not counted)"
  for kind in pass-input pass-output pipeline; do
    case "$kind" in
      pass-input) line="$(drain "$kind-$round" input out-input --passthrough)" ;;
      pass-output) line="$(drain "$kind-$round" output out-output --passthrough)" ;;
      pipeline) line="$(drain "$kind-$round" input out-pipeline)" ;;
    esac
    [ "$round" -ge 1 ] && echo "$line" | tee -a "$state/runs" >&2
  done
done

python3 - "$state/runs" "$rounds" <<'PY'
import re, statistics, sys
runs, rounds = sys.argv[1], sys.argv[2]
by = {}
for line in open(runs):
    fields = dict(f.split("=", 1) for f in line.split()[1:])
    by.setdefault(re.sub(r"-[0-9]+$", "", line.split()[0]), []).append(fields)
def median(kind, key):
    return statistics.median(float(f[key]) for f in by[kind])
def round_ratios(kind):
    return [float(f["broker_requests_us"]) / max(float(b["broker_requests_us"]), 1e-9)
            for f, b in zip(by[kind], by["pass-input"])]
print(f"\nbytes       the broker's request threads per event, median of {rounds} rounds; against the "
      "pass-through over the input, round by round and their median:")
for kind in ("pass-input", "pass-output", "pipeline"):
    ratios = round_ratios(kind)
    print(f"            {kind:12} {median(kind, 'broker_requests_us'):.2f} us "
          f"({' '.join(f'{r:.2f}' for r in ratios)}: {statistics.median(ratios):.2f}x), "
          f"{median(kind, 'produce_requests'):.0f} produce and {median(kind, 'fetch_requests'):.0f} fetch requests, "
          f"{median(kind, 'events_per_second'):.0f} events/s")
PY
