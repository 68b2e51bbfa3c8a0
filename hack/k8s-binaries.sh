#!/usr/bin/env bash
# Builds the Kubernetes binaries the project runs: kube-apiserver, kube-controller-manager and
# kubectl (what envtest starts) from the Go module k8s.io/kubernetes, etcd from
# go.etcd.io/etcd/server/v3, and with --node also kubelet, kube-scheduler and kube-proxy (the
# local cluster, hack/cluster.sh). envtest's own download cannot be used (no internet here beyond
# package registries), so the project builds them from the Go module proxy, caches them keyed by
# version, and builds only those missing. Prints the directory to use as KUBEBUILDER_ASSETS.
#
#   hack/k8s-binaries.sh            build if missing, print the assets directory
#   hack/k8s-binaries.sh --node     the same, plus kubelet, kube-scheduler and kube-proxy
source "$(dirname "$0")/lib.sh"

ASSETS="$FETCH_CACHE_DIR/k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}"
case "${1:-}" in
  "") node=false ;;
  --node) node=true ;;
  *) sed -n '9,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

# .complete marks the envtest set (etcd and the three below); each node binary is complete once
# it exists (it is built under a temporary name and renamed).
missing=()
if [ ! -f "$ASSETS/.complete" ]; then
  missing+=(kube-apiserver kube-controller-manager kubectl)
fi
if [ "$node" = true ]; then
  for cmd in kubelet kube-scheduler kube-proxy; do
    [ -x "$ASSETS/$cmd" ] || missing+=("$cmd")
  done
fi
if [ "${#missing[@]}" -eq 0 ]; then
  echo "$ASSETS"
  exit 0
fi
need go
mkdir -p "$ASSETS"
work="$ASSETS/build"
mkdir -p "$work"
export GOFLAGS="-mod=mod" GOTOOLCHAIN=local CGO_ENABLED=0

# Each program is built from a throwaway module that requires it as a tool, because
# `go install pkg@version` refuses modules whose go.mod has replace directives (both do).
tool_module() {
  rm -rf "$work/$1" && mkdir -p "$work/$1" && cd "$work/$1"
  printf 'module fetch-pipeline.local/%s\n\ngo 1.26\n' "$1" >go.mod
}

if [ ! -x "$ASSETS/etcd" ]; then
  log "building etcd v$ETCD_VERSION (go.etcd.io/etcd/server/v3)"
  tool_module etcd
  go get -tool "go.etcd.io/etcd/server/v3@v${ETCD_VERSION}" >&2
  go build -trimpath -ldflags "-s -w" -o "$ASSETS/etcd.partial" go.etcd.io/etcd/server/v3 >&2
  mv "$ASSETS/etcd.partial" "$ASSETS/etcd"
fi

log "building ${missing[*]} v$K8S_VERSION (k8s.io/kubernetes)"
# k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with local paths,
# which do not exist outside its repository. Point each at the published module of the same
# release instead (v1.X.Y -> v0.X.Y).
staging_version="v0.${K8S_VERSION#1.}"
tool_module kubernetes
modfile="$(go mod download -json "k8s.io/kubernetes@v${K8S_VERSION}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
{
  echo "require k8s.io/kubernetes v${K8S_VERSION}"
  echo "replace ("
  grep -E '^\s+k8s\.io/[a-z0-9-]+ v0\.0\.0$' "$modfile" | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}' | sort -u
  echo ")"
} >>go.mod
for cmd in "${missing[@]}"; do
  go get -tool "k8s.io/kubernetes/cmd/$cmd@v${K8S_VERSION}" >&2
done
for cmd in "${missing[@]}"; do
  log "  go build $cmd"
  go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v${K8S_VERSION}" \
    -o "$ASSETS/$cmd.partial" "k8s.io/kubernetes/cmd/$cmd" >&2
  mv "$ASSETS/$cmd.partial" "$ASSETS/$cmd"
done
cd "$ASSETS" && rm -rf "$work"
touch "$ASSETS/.complete"
log "Kubernetes binaries ready in $ASSETS"
echo "$ASSETS"
