#!/usr/bin/env bash
# A Docker engine for the image builds, compose and the end-to-end tests: Debian's docker.io
# package (dockerd, containerd, runc), installed if missing and started as a background process
# (there is no systemd here). Idempotent: an engine that already answers is left alone.
#
#   hack/docker.sh start     install if needed, start dockerd, wait until it answers
#   hack/docker.sh stop      stop the dockerd this script started
#   hack/docker.sh status    exit 0 if an engine answers
#
# The engine's state is Docker's usual /var/lib/docker, so built images survive between runs
# and a warm run rebuilds nothing. Its log: $FETCH_CACHE_DIR/dockerd/dockerd.log.
source "$(dirname "$0")/lib.sh"

RUN_DIR="$FETCH_CACHE_DIR/dockerd"
SOCKET=/var/run/docker.sock
# Where dockerd keeps the containerd it starts and supervises (under its exec root).
CONTAINERD_DIR=/var/run/docker/containerd

answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

install() {
  command -v dockerd >/dev/null 2>&1 && return 0
  [ "$(id -u)" -eq 0 ] || die "dockerd is missing and installing it needs root: apt-get install docker.io"
  log "installing Debian's docker.io (dockerd, containerd, runc)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io iptables >/dev/null
}

start() {
  if answers; then return 0; fi
  install
  mkdir -p "$RUN_DIR"
  # Pid files left by an engine that was killed, not stopped. Their pids may since have gone to
  # other processes: dockerd then refuses to start, or takes the stranger for its containerd
  # ("containerd is still running") and waits for a socket that never comes. Each is kept only
  # while its process is the program it names.
  pid_in "$RUN_DIR/dockerd.pid" dockerd >/dev/null || rm -f "$RUN_DIR/dockerd.pid"
  pid_in "$CONTAINERD_DIR/containerd.pid" "containerd --config $CONTAINERD_DIR/" >/dev/null \
    || rm -f "$CONTAINERD_DIR/containerd.pid"
  log "starting dockerd (log $RUN_DIR/dockerd.log)"
  # setsid: the engine outlives the caller's terminal and never gets its Ctrl-C.
  setsid /usr/sbin/dockerd --host "unix://$SOCKET" --pidfile "$RUN_DIR/dockerd.pid" \
    >"$RUN_DIR/dockerd.log" 2>&1 </dev/null &
  if ! wait_for answers 60; then
    tail -n 30 "$RUN_DIR/dockerd.log" >&2
    die "dockerd did not answer within 60s (log above)"
  fi
  log "docker engine $(docker version --format '{{.Server.Version}}') is up"
}

stop() {
  local pid
  # Never signal a process that merely inherited a stale pid.
  pid="$(pid_in "$RUN_DIR/dockerd.pid" dockerd)" || { rm -f "$RUN_DIR/dockerd.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  wait_for "! alive $pid" 30 || kill -KILL "$pid" 2>/dev/null || true
  rm -f "$RUN_DIR/dockerd.pid"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) answers ;;
  *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
