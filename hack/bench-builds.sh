#!/usr/bin/env bash
# Two builds of the consumer in the Kafka loop, drain for drain, on the real local broker:
# whether a change to the code shows in the loop, on a machine whose speed moves by a third
# within the hour (docs/benchmarks.md, §8, stop 26).
#
#   hack/bench-builds.sh BEFORE AFTER      two git revisions, e.g. HEAD~3 HEAD
#   hack/bench-builds.sh REV REV -- ARGS   one revision, its pipeline drains with and without
#                                          ARGS (`run` flags, e.g. --top-capacity 1000)
#
# Each revision's `fetch-consumer` is built from a worktree of it, into a target directory of
# its own (target/bench-builds-target; the first run builds the dependencies there, later runs
# reuse them). Not the checkout's: cargo judges freshness by modification times, and a
# worktree's files, written just now, make its binary newer than the checkout's sources, so
# the checkout's next build can keep another revision's binary as its own (one did, stop 27).
#
# One broker, pinned to core 0 and the consumers to core 1 (as `BENCH_PIN=1 hack/bench.sh`),
# serves every drain of BENCH_EVENTS (1,000,000) generated events in BENCH_PARTITIONS (6)
# partitions. After four unmeasured pairs of drains (the broker's JIT), each of BENCH_ROUNDS
# (6) rounds drains the input with AFTER's pass-through, then twice with each build's
# pipeline (AFTER's with the flags after `--`, if any; the pass-through never gets them),
# BEFORE AFTER AFTER BEFORE or the reverse, so that both builds of a round share the
# machine's moment and each place in it. Printed per drain: events/s, the consumer's CPU per
# event, the broker's request threads' CPU per event (hack/thread-cpu.py) and the produce
# requests per 1,000 events; at the end, over the rounds, the median of AFTER - BEFORE in CPU
# per event (each build's mean in its round), each build's median ratio to the round's
# pass-through in events/s and in the broker's request threads, the median requests, and the
# median of AFTER - BEFORE in the broker's request threads per event, with how many rounds
# fell below zero.
# Comparing a revision with itself shows what the machine alone moves (docs/benchmarks.md §8).
# BENCH_RUN_FLAGS (split on spaces) go to both builds' pipeline drains, not to the
# pass-through (the at-least-once baseline): e.g. BENCH_RUN_FLAGS="--guarantee exactly-once"
# compares two builds exactly once.
source "$(dirname "$0")/lib.sh"
source "$HACK_DIR/bench-lib.sh"

usage="usage: hack/bench-builds.sh BEFORE AFTER [-- RUN_FLAGS...] (two git revisions; AFTER's pipeline drains add the flags)"
[ $# -ge 2 ] || die "$usage"
before_rev="$1" after_rev="$2"
shift 2
after_flags=()
if [ $# -gt 0 ]; then
  [ "$1" = -- ] || die "$usage"
  shift
  after_flags=("$@")
fi
events="${BENCH_EVENTS:-1000000}"
partitions="${BENCH_PARTITIONS:-6}"
rounds="${BENCH_ROUNDS:-6}"

"$HACK_DIR/install-system-deps.sh"
need cargo git python3 taskset /usr/bin/time
cd "$REPO_ROOT"
state="$REPO_ROOT/target/bench-builds"
target="$CARGO_TARGET/bench-builds-target"
rm -rf "$state" && mkdir -p "$state"
cleanup() {
  bench_stop_broker
  git worktree remove --force "$state/tree" 2>/dev/null || true
}
trap cleanup EXIT

# build REV NAME: the consumer of REV, as $state/NAME.
build() {
  local commit
  commit="$(git rev-parse --verify "$1^{commit}")" || die "$1 is not a revision"
  log "building $1 ($commit)"
  git worktree add --detach --force "$state/tree" "$commit" >/dev/null 2>&1
  (cd "$state/tree" && cargo build --release --locked -p fetch-consumer --bin fetch-consumer \
    --target-dir "$target")
  cp "$target/release/fetch-consumer" "$state/$2"
  git worktree remove --force "$state/tree"
}
build "$before_rev" before
build "$after_rev" after
if cmp -s "$state/before" "$state/after" && [ ${#after_flags[@]} -eq 0 ]; then
  log "the two binaries are byte for byte the same: what differs below is the machine's alone"
fi

bench_broker 2g
bench_load "$state/after" "$events" "$partitions"
# shellcheck disable=SC2206 # split on spaces, as documented
run_flags=(${BENCH_RUN_FLAGS:-})
pin_broker

# drain BUILD LABEL OUTPUT [ARGS...]: one pinned drain; prints "LABEL <events/s> <consumer
# us/event> <broker request threads us/event> <produce requests per 1,000 events>".
drain() {
  local build="$1" label="$2" output="$3" eps user sys broker_requests
  shift 3
  threads snap "$broker_pid" "$state/broker-before"
  taskset -c 1 /usr/bin/time -f '%U %S' -o "$state/time" "$state/$build" --log-format json run \
    "${drain_flags[@]}" --group-id "builds-$RANDOM$RANDOM" --output-topic "$output" "$@" \
    >"$state/out" 2>"$state/err" \
    || die "$label drain failed (see $state/err)"
  threads snap "$broker_pid" "$state/broker-after"
  eps="$(events_per_second "$state/out")"
  read -r user sys <"$state/time"
  read -r broker_requests _ < <(threads broker "$state/broker-before" "$state/broker-after" "$events")
  python3 - "$(run_summary "$state/err")" "$label" "$eps" "$user" "$sys" "$broker_requests" "$events" <<'PY'
import json, sys
summary, label, eps, user, sys_, broker, events = sys.argv[1:]
produce = json.loads(summary).get("produce_requests", 0)
events = int(events)
print(label, eps, f"{(float(user) + float(sys_)) * 1e6 / events:.2f}", broker,
      f"{produce * 1000 / events:.2f}")
PY
}

log "warming the broker up: four pairs of drains, not measured"
for _ in 1 2 3 4; do
  drain after warm bench-pass --passthrough >/dev/null
  drain after warm bench-out "${run_flags[@]}" >/dev/null
done
# Each round: the pass-through, then each build twice in the order A B B A (B A A B in the
# next round), so that both builds hold both places (in an A/A run of single drains, the
# first after the pass-through was slower in two rounds of four: docs/benchmarks.md §8).
for round in $(seq "$rounds"); do
  drain after "$round pass-through" bench-pass --passthrough
  order=(before after after before)
  [ $((round % 2)) = 1 ] || order=(after before before after)
  for build in "${order[@]}"; do
    flags=("${run_flags[@]}")
    [ "$build" = before ] || flags+=("${after_flags[@]}")
    drain "$build" "$round $build" bench-out "${flags[@]}"
  done
done | tee "$state/drains" | while read -r round kind eps cpu broker produce; do
  log "round $round: $kind $eps events/s, consumer $cpu us/event, broker request threads $broker us/event, $produce produce requests per 1,000 events"
done

python3 - "$state/drains" "$before_rev" "$after_rev ${after_flags[*]}" <<'EOF'
import statistics, sys
rounds = {}
for line in open(sys.argv[1]):
    round_, kind, *figures = line.split()
    rounds.setdefault(round_, {}).setdefault(kind, []).append(tuple(map(float, figures)))
# A build's figures in a round: the mean of its drains there.
rounds = {r: {k: tuple(map(statistics.mean, zip(*d))) for k, d in kinds.items()} for r, kinds in rounds.items()}
EPS, CPU, BROKER, PRODUCE = range(4)
# After - before, round by round: both builds met the same moment of the machine, so this
# sees a change smaller than the rounds' spread, which a ratio of medians can hide.
def paired(i):
    d = [r["after"][i] - r["before"][i] for r in rounds.values()]
    return statistics.median(d), sum(x < 0 for x in d)
diff, _ = paired(CPU)
ratio = lambda kind, i: statistics.median(r[kind][i] / r["pass-through"][i] for r in rounds.values())
median = lambda kind, i: statistics.median(r[kind][i] for r in rounds.values())
print(f"{sys.argv[2]} -> {sys.argv[3]}: consumer CPU per event {diff:+.2f} us (median of "
      f"{len(rounds)} rounds); pipeline / pass-through, median: {ratio('before', EPS):.2f}x before, "
      f"{ratio('after', EPS):.2f}x after")
print(f"broker request threads per event, pipeline / pass-through, median: "
      f"{ratio('before', BROKER):.2f}x before, {ratio('after', BROKER):.2f}x after; produce requests "
      f"per 1,000 events, median: pass-through {median('pass-through', PRODUCE):.2f}, "
      f"before {median('before', PRODUCE):.2f}, after {median('after', PRODUCE):.2f}")
broker_diff, below = paired(BROKER)
print(f"broker request threads per event, after - before: {broker_diff:+.3f} us (median of "
      f"{len(rounds)} rounds; {below} below zero)")
EOF
