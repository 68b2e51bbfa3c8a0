#!/usr/bin/env bash
# Docker Compose v2 (`docker compose`), built from its Go module github.com/docker/compose/v2
# at COMPOSE_VERSION (Debian 12 packages only docker-compose 1.29), cached by version and
# installed as a docker CLI plugin where every docker client on this machine finds it:
# /usr/local/lib/docker/cli-plugins/docker-compose (root) or ~/.docker/cli-plugins (others).
# Idempotent: a warm run only checks the installed plugin.
#
#   hack/compose.sh            build if missing, install, print the plugin's path
#
# Builds of images from compose files: without a buildx plugin, compose v2 builds with its
# built-in BuildKit client against the engine (Debian's 20.10 engine supports it).
source "$(dirname "$0")/lib.sh"

CACHE="$FETCH_CACHE_DIR/compose-${COMPOSE_VERSION}"
BIN="$CACHE/docker-compose"
if [ "$(id -u)" -eq 0 ]; then
  PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
else
  PLUGIN_DIR="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
fi

if [ ! -x "$BIN" ]; then
  need go
  log "building docker compose v$COMPOSE_VERSION (github.com/docker/compose/v2)"
  export GOFLAGS="-mod=mod" GOTOOLCHAIN=local CGO_ENABLED=0
  work="$CACHE/build"
  rm -rf "$work" && mkdir -p "$work" && cd "$work"
  # A throwaway module that requires compose, as hack/k8s-binaries.sh does for Kubernetes.
  printf 'module fetch-pipeline.local/compose\n\ngo 1.26\n' >go.mod
  go get -tool "github.com/docker/compose/v2/cmd@v${COMPOSE_VERSION}" >&2
  go build -trimpath -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=v${COMPOSE_VERSION}" \
    -o "$BIN.partial" github.com/docker/compose/v2/cmd >&2
  mv "$BIN.partial" "$BIN"
  cd "$CACHE" && rm -rf "$work"
fi

mkdir -p "$PLUGIN_DIR"
if ! cmp -s "$BIN" "$PLUGIN_DIR/docker-compose"; then
  install -m 0755 "$BIN" "$PLUGIN_DIR/docker-compose"
  log "installed $PLUGIN_DIR/docker-compose"
fi
docker compose version >/dev/null 2>&1 || die "docker does not find the compose plugin in $PLUGIN_DIR"
echo "$PLUGIN_DIR/docker-compose"
