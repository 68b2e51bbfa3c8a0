#!/usr/bin/env bash
# Runs every test, as CI does: formatting, lints, unit and property tests, and the integration
# tests against the real parts: an Apache Kafka broker this script starts on loopback (and
# stops after), and kube-apiserver + etcd that the operator's tests start through envtest from
# binaries built by hack/k8s-binaries.sh.
#
#   hack/test.sh                 everything
#   hack/test.sh -- ARGS         extra arguments for `cargo test` (e.g. a test name filter)
source "$(dirname "$0")/lib.sh"

"$HACK_DIR/install-system-deps.sh"
need cargo
cd "$REPO_ROOT"

log "formatting and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

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
"$HACK_DIR/kafka.sh" start "$state" >/dev/null
FETCH_TEST_KAFKA_BOOTSTRAP="$(sed -n 's/^KAFKA_BOOTSTRAP=//p' "$state/env")"
export FETCH_TEST_KAFKA_BOOTSTRAP

[ "${1:-}" = "--" ] && shift
log "running tests (broker $FETCH_TEST_KAFKA_BOOTSTRAP)"
set +e
cargo test --workspace --locked "$@" 2>&1 | tee "$state/test.log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 2; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$state/test.log"
exit "$status"
