#!/usr/bin/env bash
# End-to-end tests through the three doors, with real containers and a real node:
#
#   1. the image: the base-image stand-ins and the project's Dockerfile, built by the Docker
#      engine (hack/docker.sh, hack/images.sh), then tested (tests/e2e_image.rs);
#   2. compose: `docker compose up` of compose/compose.yaml (tests/e2e_compose.rs);
#   3. Kubernetes: a local single-node cluster (hack/cluster.sh) with the image loaded and a
#      Kafka broker on the node's address (PLAINTEXT and SASL_SSL listeners), then Helm
#      (tests/e2e_helm.rs) and `kubectl apply -k` (tests/e2e_kustomize.rs); finally the
#      cluster is taken down and checked to have left nothing behind.
#
#   hack/e2e.sh                  everything above
#   hack/e2e.sh -- ARGS          extra arguments for the test binaries (e.g. a test name filter)
#
# Every test binary runs even when one fails. Last line: `e2e: N passed, N failed`.
source "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || die "the end-to-end tests start a Docker engine and a kubelet: run them as root"
[ "${1:-}" = "--" ] && shift
extra=("$@")
"$HACK_DIR/install-system-deps.sh"
need cargo
cd "$REPO_ROOT"

state="$(mktemp -d "${TMPDIR:-/tmp}/fetch-e2e.XXXXXX")"
passed=0 failed=0
cluster_up=""
cleanup() {
  "$HACK_DIR/kafka.sh" stop "$state/kafka" || true
  [ -z "$cluster_up" ] || "$HACK_DIR/cluster.sh" down >&2 || true
  # The broker's data, its CA key and the SCRAM password go with the run.
  rm -rf "$state"
}
trap cleanup EXIT

# Runs one check (a command) and counts it, so a failure is reported with the rest.
check() {
  local what="$1"
  shift
  if "$@"; then
    passed=$((passed + 1))
    log "ok: $what"
  else
    failed=$((failed + 1))
    log "FAILED: $what"
  fi
}

# Runs test binaries, counting their results; a failing binary does not stop the others.
cargo_e2e() {
  local out="$state/cargo.log"
  cargo test -p fetch-deploy-tests --features e2e --locked --no-fail-fast "$@" -- --test-threads=1 "${extra[@]}" \
    2>&1 | tee "$out" || true
  read -r p f < <(awk '/^test result:/ { for (i = 2; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
    END { print p + 0, f + 0 }' "$out")
  passed=$((passed + p))
  failed=$((failed + f))
  # A binary that did not build reports no result line: count it as a failure. (A failing
  # test's own "error: test failed" line is already counted above.)
  if grep -q 'could not compile' "$out"; then failed=$((failed + 1)); fi
}

log "tools (helm, kubectl) and test binaries"
eval "$("$HACK_DIR/tools.sh")"
cargo test -p fetch-deploy-tests --features e2e --locked --no-run

# An engine that was killed, not stopped, leaves pid files behind; once the kernel has given
# their pids to other processes, the engine must still start (a stale containerd pid, then a
# kernel worker's, failed CI once), and stopping it must not signal the stranger. Made here
# with a live stranger's pid in both files.
engine_starts_over_stale_pid_files() {
  local stranger status=0
  "$HACK_DIR/docker.sh" stop
  if "$HACK_DIR/docker.sh" status; then
    log "an engine that docker.sh did not start answers on /var/run/docker.sock: stop it for this check"
    return 1
  fi
  sleep 300 &
  stranger=$!
  mkdir -p "$FETCH_CACHE_DIR/dockerd" /var/run/docker/containerd
  echo "$stranger" >"$FETCH_CACHE_DIR/dockerd/dockerd.pid"
  "$HACK_DIR/docker.sh" stop
  echo "$stranger" >"$FETCH_CACHE_DIR/dockerd/dockerd.pid"
  echo "$stranger" >/var/run/docker/containerd/containerd.pid
  "$HACK_DIR/docker.sh" start || status=$?
  alive "$stranger" || { log "docker.sh signalled a process that was not its engine"; status=1; }
  kill "$stranger" 2>/dev/null || true
  return "$status"
}

log "Docker engine and images"
check "docker.sh starts the engine over stale pid files" engine_starts_over_stale_pid_files
"$HACK_DIR/docker.sh" start
FETCH_E2E_IMAGE="$("$HACK_DIR/images.sh" all)"
export FETCH_E2E_IMAGE

"$HACK_DIR/compose.sh" >/dev/null

log "door 1 and 2: the image and docker compose"
cargo_e2e --test e2e_image --test e2e_compose

log "door 3: Kubernetes on a local node"
cluster_up=1
"$HACK_DIR/cluster.sh" up
eval "$("$HACK_DIR/cluster.sh" env)"
export KUBECONFIG
"$HACK_DIR/cluster.sh" load "$FETCH_E2E_IMAGE" "$("$HACK_DIR/images.sh" name busybox)"
KAFKA_HOST="$NODE_IP" KAFKA_SASL_SSL=1 "$HACK_DIR/kafka.sh" start "$state/kafka" >/dev/null
set -a
# shellcheck disable=SC1091
source "$state/kafka/env"
set +a
export FETCH_TEST_KAFKA_BOOTSTRAP="$KAFKA_BOOTSTRAP"
export FETCH_E2E_KAFKA_SASL_SSL="$KAFKA_SASL_SSL_BOOTSTRAP" FETCH_E2E_KAFKA_CA_FILE="$KAFKA_CA_FILE"
export FETCH_E2E_SCRAM_USERNAME="$KAFKA_SCRAM_USERNAME" FETCH_E2E_SCRAM_PASSWORD="$KAFKA_SCRAM_PASSWORD"
cargo_e2e --test e2e_helm --test e2e_kustomize

"$HACK_DIR/kafka.sh" stop "$state/kafka"
cluster_up=""
# down ends with check-clean, which fails naming anything left behind.
check "cluster.sh down leaves nothing behind" "$HACK_DIR/cluster.sh" down

echo "e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
