#!/usr/bin/env bash
# The whole pipeline on this machine, no Docker needed: a real Kafka broker (KRaft) on loopback,
# the data generator, and the consumer with a live progress line. Stop with Ctrl-C (or give
# --duration): the consumer flushes, commits and prints the insights report.
#
#   hack/run-local.sh [--duration 60s] [--rate 1000] [--partitions 6] [-- CONSUMER-FLAGS...]
#
# Installs what is missing, builds the release binary, and leaves nothing running afterwards.
source "$(dirname "$0")/lib.sh"

duration="" rate=1000 partitions=6
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="${2:?--duration needs a value, e.g. 60s}"; shift 2 ;;
    --rate) rate="${2:?--rate needs events per second}"; shift 2 ;;
    --partitions) partitions="${2:?--partitions needs a number}"; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

"$HACK_DIR/install-system-deps.sh"
need cargo
log "building fetch-consumer (release)"
(cd "$REPO_ROOT" && cargo build --release --locked -p fetch-consumer)
bin="$CARGO_TARGET/release/fetch-consumer"

state="$REPO_ROOT/target/local-run"
generator_pid=""
cleanup() {
  if [ -n "$generator_pid" ]; then
    kill "$generator_pid" 2>/dev/null || true
    wait "$generator_pid" 2>/dev/null || true
  fi
  "$HACK_DIR/kafka.sh" stop "$state/kafka"
}
trap cleanup EXIT
# Ctrl-C reaches the consumer, which shuts down gracefully; the script then cleans up.
trap 'true' INT TERM

"$HACK_DIR/kafka.sh" start "$state/kafka" >/dev/null
bootstrap="$(sed -n 's/^KAFKA_BOOTSTRAP=//p' "$state/kafka/env")"
for topic in user-login processed-user-logins user-login-dlq; do
  "$HACK_DIR/kafka.sh" topic "$state/kafka" "$topic" "$partitions" >/dev/null
done
log "topics user-login, processed-user-logins, user-login-dlq ($partitions partitions) on $bootstrap"

log "generator: $rate events/s, 1% malformed, 50,000 recurring users (log: $state/generator.log)"
"$bin" generate --bootstrap-servers "$bootstrap" --rate "$rate" --variety --malformed 0.01 \
  --users 50000 >"$state/generator.log" 2>&1 &
generator_pid=$!

log "consumer: Ctrl-C to stop and print the insights${duration:+ (stops by itself after $duration)}"
log "the merged insights while it runs, from another shell: $bin insights --bootstrap-servers $bootstrap"
"$bin" run --bootstrap-servers "$bootstrap" --http-addr 127.0.0.1:0 --progress \
  ${duration:+--duration "$duration"} "$@" 2> >(grep -v -E ' (INFO|DEBUG) ' >&2)
