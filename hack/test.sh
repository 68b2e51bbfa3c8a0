#!/usr/bin/env bash
# Runs every test, as CI does: formatting, lints, unit and property tests, the integration
# tests against the real parts (an Apache Kafka broker this script starts on loopback and
# stops after; kube-apiserver + etcd that the operator's tests start through envtest from
# binaries built by hack/k8s-binaries.sh), then the end-to-end tests with real containers and
# a real node (hack/e2e.sh, which needs root).
#
#   hack/test.sh                 everything
#   hack/test.sh --no-e2e        everything but the end-to-end tests
#   hack/test.sh -- ARGS         extra arguments for `cargo test` (e.g. a test name filter);
#                                the end-to-end tests are left out
source "$(dirname "$0")/lib.sh"

e2e=1
[ "${1:-}" = "--no-e2e" ] && { e2e=""; shift; }
[ "${1:-}" = "--" ] && e2e=""

"$HACK_DIR/install-system-deps.sh"
need cargo
cd "$REPO_ROOT"

log "formatting and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The end-to-end tests build only with their feature on: lint them too.
cargo clippy -p fetch-deploy-tests --features e2e --all-targets --locked -- -D warnings

log "control-plane binaries for the operator's tests"
KUBEBUILDER_ASSETS="$("$HACK_DIR/k8s-binaries.sh")"
export KUBEBUILDER_ASSETS

log "tools for the deployment checks (helm, kubectl, hadolint, check-jsonschema, compose schema)"
eval "$("$HACK_DIR/tools.sh")"

log "building tests"
cargo test --workspace --locked --no-run

state="$(mktemp -d "${TMPDIR:-/tmp}/fetch-test-kafka.XXXXXX")"
cleanup() { "$HACK_DIR/kafka.sh" stop "$state"; rm -rf "$state"; }
trap cleanup EXIT
# KAFKA_STOP_WITH: the broker goes with this script even if it is killed before its trap runs.
KAFKA_STOP_WITH=$$ "$HACK_DIR/kafka.sh" start "$state" >/dev/null
FETCH_TEST_KAFKA_BOOTSTRAP="$(sed -n 's/^KAFKA_BOOTSTRAP=//p' "$state/env")"
export FETCH_TEST_KAFKA_BOOTSTRAP

[ "${1:-}" = "--" ] && shift
log "running tests (broker $FETCH_TEST_KAFKA_BOOTSTRAP)"
set +e
# --no-fail-fast: every test binary runs even when one fails, so a red run shows all of it.
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$state/test.log"
status=${PIPESTATUS[0]}
set -e
"$HACK_DIR/kafka.sh" stop "$state"

if [ -n "$e2e" ]; then
  log "end-to-end tests (hack/e2e.sh)"
  set +e
  "$HACK_DIR/e2e.sh" 2>&1 | tee "$state/e2e.log"
  e2e_status=${PIPESTATUS[0]}
  set -e
  [ "$e2e_status" -eq 0 ] || status=$e2e_status
fi

# One closing line for the whole run, summed over every test binary and the end-to-end run.
logs=("$state/test.log")
[ -z "$e2e" ] || logs+=("$state/e2e.log")
awk 'FILENAME ~ /test\.log$/ && /^test result:/ { for (i = 2; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     /^e2e: [0-9]+ passed, [0-9]+ failed$/ { p += $2; f += $4 }
     END { printf "tests: %d passed, %d failed\n", p, f }' "${logs[@]}"
exit "$status"
