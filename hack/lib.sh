# Shared helpers for the hack/ scripts. Source it; do not run it.
#
# Everything the scripts download or build lives under $FETCH_CACHE_DIR, keyed by version,
# so a warm run skips it. Running state (broker data, logs, pid files) lives elsewhere,
# in a directory the caller names.

set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HACK_DIR/.." && pwd)"
# Where cargo puts what it builds: CARGO_TARGET_DIR when the user set one, as cargo does.
CARGO_TARGET="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
# shellcheck source=versions.env
source "$HACK_DIR/versions.env"

FETCH_CACHE_DIR="${FETCH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fetch-pipeline}"
mkdir -p "$FETCH_CACHE_DIR"

# Each line carries the time of day: a cold CI run spends an hour in these scripts, and the
# log is the only place that says where.
log() { printf '\033[1m[%s %s]\033[0m %s\n' "$(basename "$0")" "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

need() {
  local cmd
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' is not installed; run .ci/setup-machine or install it"
  done
}

# Prints a TCP port on $1 (default 127.0.0.1) that is free right now (the kernel picks it).
free_port() {
  python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1]); s.close()' "${1:-127.0.0.1}"
}

# need_space DIR GIB WHAT: die unless DIR's filesystem has GIB GiB free. A full disk makes
# etcd, containerd and the broker fail in ways whose logs do not say so (a refused connection).
need_space() {
  local dir="$1" gib="$2" what="$3" free_kib
  mkdir -p "$dir"
  free_kib="$(df -Pk "$dir" | awk 'NR == 2 { print $4 }')"
  [ "$free_kib" -ge $((gib * 1024 * 1024)) ] \
    || die "$dir has $((free_kib / 1024)) MiB free; $what needs at least $gib GiB (free some space, e.g. cargo clean, docker system prune)"
}

# Waits until "$1" (a command string) succeeds, up to "$2" seconds.
wait_for() {
  local check="$1" timeout="$2" waited=0
  until eval "$check" >/dev/null 2>&1; do
    sleep 0.5
    waited=$((waited + 1))
    [ "$waited" -lt $((timeout * 2)) ] || return 1
  done
}

# --- processes ---------------------------------------------------------------------------------

# cmdline PID: its command line, arguments separated by spaces.
cmdline() { { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null || true; }

# alive PID: the process exists and is not a zombie (PID 1 here reaps orphans only now and then).
alive() {
  local state
  state="$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null)" || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# pid_in FILE TEXT: prints the pid FILE holds if that process is alive and its command line
# contains TEXT. A pid file can outlive its process (a killed session, a restarted
# machine: /run is on disk here) and the kernel reuses pids, so a bare "is it alive" is not
# enough: a stale file once named a kernel worker.
pid_in() {
  local file="$1" text="$2" pid
  [ -f "$file" ] || return 1
  pid="$(cat "$file" 2>/dev/null)"
  [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  [[ "$(cmdline "$pid")" == *"$text"* ]] || return 1
  echo "$pid"
}
