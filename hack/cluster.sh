#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, kind-like, for the end-to-end tests and
# for development: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, a private
# containerd, kubelet, kube-proxy (iptables) and CoreDNS, all as host processes (no systemd, no
# registry). Needs root. See docs/local-cluster.md.
#
#   hack/cluster.sh prepare       only build/cache what `up` needs (binaries, CoreDNS, images)
#   hack/cluster.sh up            start it (idempotent), wait until the node is Ready
#   hack/cluster.sh down          stop it and remove everything it created, then check-clean
#   hack/cluster.sh status        exit 0 if it is up and the node is Ready
#   hack/cluster.sh env           print DIR/env as shell assignments: eval "$(hack/cluster.sh env)"
#   hack/cluster.sh load IMG...   copy Docker images into the node (kind load docker-image)
#   hack/cluster.sh check-clean   exit non-zero, naming it, if anything of a cluster is left
#   hack/cluster.sh selftest      restricted pod + DNS + API-through-Service check in a pod
#   hack/cluster.sh kubectl ARGS  kubectl against the cluster
#
# State: $FETCH_CLUSTER_DIR (default /tmp/fetch-cluster): DIR/env (KUBECONFIG=, NODE_IP=, ...),
# DIR/kubeconfig (admin), DIR/logs/<component>.log. Binaries and images are cached under
# $FETCH_CACHE_DIR keyed by version (hack/k8s-binaries.sh --node, coredns-*, cluster-images-*).
source "$(dirname "$0")/lib.sh"

DIR="${FETCH_CLUSTER_DIR:-/tmp/fetch-cluster}"
NODE="${FETCH_CLUSTER_NODE:-fetch-node}"
BRIDGE=fetchbr0
NODE_IP=10.244.0.1
POD_CIDR=10.244.0.0/16
NODE_POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
DNS_IP="$NODE_IP" # CoreDNS is a host process listening on the node IP
CLUSTER_DOMAIN=cluster.local
API_PORT=6443
ETCD_PORT=12379 # not 2379/2380: envtest and others may run an etcd on the defaults
ETCD_PEER_PORT=12380
COREDNS_READY_PORT=18181

PKI="$DIR/pki"
RUN="$DIR/run"
LOGS="$DIR/logs"
CTRD_SOCK="$DIR/containerd/containerd.sock"
KUBELET_ROOT="$DIR/kubelet"
CNI_CONF_DIR="$DIR/cni/net.d"
CNI_NET=fetch-pods
CLUSTER_FILES="$HACK_DIR/cluster"
ASSETS="" KUBECTL="" # set by assets(); never taken from the caller's environment

case "$DIR" in
  /*) ;;
  *) die "FETCH_CLUSTER_DIR must be an absolute path" ;;
esac
[[ "$DIR" != *[[:space:]]* ]] || die "FETCH_CLUSTER_DIR must not contain spaces"
DIR="${DIR%/}"
[[ "$DIR" =~ ^/[^/]+/[^/]+ ]] || die "FETCH_CLUSTER_DIR must be at least two levels deep (it is deleted by down)"
# A unix socket path is limited to 108 bytes; kubelet's plugin sockets live deepest.
[ "${#DIR}" -le 50 ] || die "FETCH_CLUSTER_DIR is too long for unix sockets (max 50 characters)"

ctr_() { ctr --address "$CTRD_SOCK" -n k8s.io "$@"; }

# --- binaries and images (cached under $FETCH_CACHE_DIR) --------------------------------------

assets() {
  [ -n "${ASSETS:-}" ] && return 0
  ASSETS="$("$HACK_DIR/k8s-binaries.sh" --node | tail -n 1)"
  KUBECTL="$ASSETS/kubectl"
}

kubectl_() { "$KUBECTL" --kubeconfig "$DIR/kubeconfig" "$@"; }

# CoreDNS with only the plugins used here (hack/cluster/coredns/main.go), from the Go module
# github.com/coredns/coredns at COREDNS_VERSION.
coredns_bin() {
  local out="$FETCH_CACHE_DIR/coredns-$COREDNS_VERSION"
  COREDNS="$out/coredns"
  [ -x "$COREDNS" ] && return 0
  need go
  log "building CoreDNS v$COREDNS_VERSION (github.com/coredns/coredns)"
  local work="$out/build"
  rm -rf "$work" && mkdir -p "$work"
  cp "$CLUSTER_FILES/coredns/main.go" "$work/"
  (
    cd "$work" || exit 1
    export GOFLAGS="-mod=mod" GOTOOLCHAIN=local CGO_ENABLED=0
    printf 'module fetch-pipeline.local/coredns\n\ngo 1.26\n' >go.mod
    go get "github.com/coredns/coredns@v${COREDNS_VERSION}" >&2
    go mod tidy >&2
    go build -trimpath -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=v${COREDNS_VERSION}" \
      -o "$out/coredns.partial" . >&2
  )
  mv "$out/coredns.partial" "$COREDNS"
  rm -rf "$work"
}

# The pod sandbox image: hack/cluster/pause.c, static, in an image FROM scratch. Cached as a
# `docker save` archive keyed by the source's hash; imported into the node's containerd by `up`.
pause_image() {
  local hash
  hash="$(sha256sum "$CLUSTER_FILES/pause.c" | cut -c1-12)"
  PAUSE_IMAGE="localhost/fetch-pause:$hash"
  PAUSE_TAR="$FETCH_CACHE_DIR/cluster-images-$hash/pause.tar"
  [ -f "$PAUSE_TAR" ] && return 0
  need gcc docker
  log "building the pause image $PAUSE_IMAGE"
  local work
  work="$(mktemp -d)"
  gcc -static -Os -s -o "$work/pause" "$CLUSTER_FILES/pause.c"
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$work/Dockerfile"
  docker build -q -t "$PAUSE_IMAGE" "$work" >/dev/null 2>"$work/build.log" || { cat "$work/build.log" >&2; die "docker build of the pause image failed"; }
  mkdir -p "$(dirname "$PAUSE_TAR")"
  docker save -o "$PAUSE_TAR.partial" "$PAUSE_IMAGE"
  mv "$PAUSE_TAR.partial" "$PAUSE_TAR"
  rm -rf "$work"
}

# --- certificates and kubeconfigs --------------------------------------------------------------

# sign NAME CN ORG(or "") EXT(serverAuth|clientAuth) [SAN]
sign() {
  local name="$1" cn="$2" org="$3" eku="$4" san="${5:-}" subj="/CN=$2"
  [ -n "$org" ] && subj="/O=$org/CN=$cn"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$name.key" 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$eku"
    [ -z "$san" ] || echo "subjectAltName=$san"
  } >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 3650 -extfile "$PKI/$name.ext" \
    -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

# kubeconfig FILE CERTNAME: a kubeconfig for the API server with a client certificate, embedded.
kubeconfig() {
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: fetch
  cluster:
    server: https://$NODE_IP:$API_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$2.crt")
    client-key-data: $(base64 -w0 "$PKI/$2.key")
contexts:
- name: fetch
  context: {cluster: fetch, user: $2}
current-context: fetch
EOF
  chmod 600 "$1"
}

certs() {
  [ -f "$PKI/.complete" ] && return 0
  log "generating certificates in $PKI"
  rm -rf "$PKI" && mkdir -p "$PKI" && chmod 700 "$PKI"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=fetch-cluster-ca" -days 3650 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI/ca.crt"
  sign apiserver kube-apiserver "" serverAuth \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN,DNS:localhost,DNS:$NODE,IP:$API_SERVICE_IP,IP:$NODE_IP,IP:127.0.0.1"
  sign apiserver-kubelet-client kube-apiserver-kubelet-client system:masters clientAuth
  sign admin fetch-admin system:masters clientAuth
  sign kubelet "system:node:$NODE" system:nodes clientAuth
  sign kubelet-serving "system:node:$NODE" system:nodes serverAuth "DNS:$NODE,IP:$NODE_IP"
  sign controller-manager system:kube-controller-manager "" clientAuth
  sign scheduler system:kube-scheduler "" clientAuth
  sign kube-proxy system:kube-proxy "" clientAuth
  sign coredns system:coredns "" clientAuth
  # Service-account token signing key (kube-apiserver signs, both verify).
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/sa.key" 2>/dev/null
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
  for c in admin kubelet controller-manager scheduler kube-proxy coredns; do
    kubeconfig "$PKI/$c.kubeconfig" "$c"
  done
  touch "$PKI/.complete"
}

# --- configuration files -----------------------------------------------------------------------

render() {
  sed -e "s|@DIR@|$DIR|g" -e "s|@NODE@|$NODE|g" -e "s|@NODE_IP@|$NODE_IP|g" \
    -e "s|@BRIDGE@|$BRIDGE|g" -e "s|@CNI_NET@|$CNI_NET|g" -e "s|@NODE_POD_CIDR@|$NODE_POD_CIDR|g" \
    -e "s|@POD_CIDR@|$POD_CIDR|g" -e "s|@DNS_IP@|$DNS_IP|g" -e "s|@CLUSTER_DOMAIN@|$CLUSTER_DOMAIN|g" \
    -e "s|@PAUSE_IMAGE@|$PAUSE_IMAGE|g" -e "s|@COREDNS_READY_PORT@|$COREDNS_READY_PORT|g" \
    "$CLUSTER_FILES/$1" >"$2.new"
  # Replaced only when it changed: kube-proxy exits when its configuration file changes.
  if cmp -s "$2.new" "$2"; then rm -f "$2.new"; else mv "$2.new" "$2"; fi
}

configs() {
  mkdir -p "$DIR/conf" "$CNI_CONF_DIR" "$DIR/containerd" "$KUBELET_ROOT" "$DIR/pod-logs" "$DIR/cni/ipam"
  render containerd.toml "$DIR/conf/containerd.toml"
  render cni.conflist "$CNI_CONF_DIR/10-$CNI_NET.conflist"
  render kubelet.yaml "$DIR/conf/kubelet.yaml"
  render kube-proxy.yaml "$DIR/conf/kube-proxy.yaml"
  render Corefile "$DIR/conf/Corefile"
  cp "$PKI/admin.kubeconfig" "$DIR/kubeconfig"
  cat >"$DIR/env" <<EOF
KUBECONFIG=$DIR/kubeconfig
NODE_IP=$NODE_IP
NODE_NAME=$NODE
KUBECTL=$KUBECTL
CONTAINERD_ADDRESS=$CTRD_SOCK
CLUSTER_DNS=$DNS_IP
POD_CIDR=$POD_CIDR
SERVICE_CIDR=$SERVICE_CIDR
FETCH_CLUSTER_DIR=$DIR
EOF
}

# --- processes ---------------------------------------------------------------------------------

pid_of() {
  # The process must still be the one started from DIR's configs, not a recycled pid.
  pid_in "$RUN/$1.pid" "$DIR"
}
running() { pid_of "$1" >/dev/null; }

# start NAME CMD...: in its own session, log to DIR/logs/NAME.log, unless already running.
start() {
  local name="$1"
  shift
  running "$name" && return 0
  mkdir -p "$RUN" "$LOGS"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

# stop [-t SECONDS] NAME...: SIGTERM to all at once, SIGKILL to whatever still runs after
# SECONDS (default 15).
stop() {
  local name pid pids=() timeout=15
  if [ "$1" = -t ]; then timeout="$2"; shift 2; fi
  for name in "$@"; do
    if pid="$(pid_of "$name")"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  for pid in "${pids[@]}"; do
    wait_for "! alive $pid" "$timeout" || kill -KILL "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do wait_for "! alive $pid" 5 || true; done
  for name in "$@"; do rm -f "$RUN/$name.pid"; done
}

api_ready() {
  curl -sf --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://$NODE_IP:$API_PORT/readyz" >/dev/null
}

node_ready() {
  [ "$(kubectl_ get node "$NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

fail_with_log() {
  log "$1 did not come up; last lines of $LOGS/$1.log:"
  tail -n 25 "$LOGS/$1.log" >&2 || true
  die "$1 failed (cluster left as is; hack/cluster.sh down cleans up)"
}

bridge_up() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  [[ "$(ip -o addr show dev "$BRIDGE")" == *" $NODE_IP/24 "* ]] || ip addr add "$NODE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
}

# Debian's containerd, runc and CNI plugins (docker.io brings the first two), installed if missing.
install_packages() {
  local pkgs=()
  command -v containerd >/dev/null && command -v ctr >/dev/null || pkgs+=(containerd)
  command -v runc >/dev/null || pkgs+=(runc)
  [ -x /usr/lib/cni/bridge ] || pkgs+=(containernetworking-plugins)
  command -v iptables >/dev/null || pkgs+=(iptables)
  [ "${#pkgs[@]}" -eq 0 ] && return 0
  log "installing Debian's ${pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
}

up() {
  [ "$(id -u)" -eq 0 ] || die "the cluster needs root (kubelet, containerd, iptables)"
  install_packages
  need openssl curl ctr containerd runc ip iptables
  local t0=$SECONDS
  assets
  coredns_bin
  pause_image
  if [ -f "$RUN/.up" ] && status_quiet; then
    log "cluster already up (node $NODE Ready); KUBECONFIG=$DIR/kubeconfig"
    return 0
  fi
  # The kubelet's cgroups, kube-proxy's chains and the device-plugin directory are host-wide
  # names, and down removes them: refuse a machine where something else already made them
  # (a real node, another local cluster) rather than tear that down later.
  if [ ! -f "$DIR/.fetch-cluster" ]; then
    local foreign
    foreign="$({ kubepods_cgroups; ipt_chains | head -n 3; [ ! -e /var/lib/kubelet/device-plugins ] || echo /var/lib/kubelet/device-plugins; } | tr '\n' ' ')"
    [ -z "$foreign" ] || die "this machine already has Kubernetes node state that down would remove: $foreign(run cluster.sh down if it is a cluster of ours, or use a machine without a kubelet)"
  fi
  # down deletes DIR: only ever one this script made (marked), or a new or empty one.
  if [ -d "$DIR" ] && [ ! -f "$DIR/.fetch-cluster" ] && [ -n "$(ls -A "$DIR")" ]; then
    die "$DIR exists and is not a cluster state directory; set FETCH_CLUSTER_DIR elsewhere"
  fi
  need_space "$(dirname "$DIR")" 2 "the cluster (etcd, containerd's images, the pods' logs)"
  mkdir -p "$DIR" "$RUN" "$LOGS"
  touch "$DIR/.fetch-cluster"
  certs
  configs
  bridge_up

  start etcd "$ASSETS/etcd" --name fetch --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "fetch=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --log-level warn

  # The API server gives up on an unreachable etcd after 20s with only "context deadline
  # exceeded": wait for etcd first, so that its own log is what a failure shows.
  wait_for "curl -sf --max-time 2 http://127.0.0.1:$ETCD_PORT/health" 30 || fail_with_log etcd

  start containerd containerd --config "$DIR/conf/containerd.toml"

  start kube-apiserver "$ASSETS/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$API_PORT" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
    --allow-privileged=true --profiling=false

  # containerd answers within a second; the pause image must be there before the kubelet
  # creates a sandbox (else containerd would try to pull it from a registry).
  wait_for "ctr --address $CTRD_SOCK version" 30 || fail_with_log containerd
  if ! grep -qxF "$PAUSE_IMAGE" <<<"$(ctr_ images ls -q 2>/dev/null)"; then
    ctr_ images import "$PAUSE_TAR" >/dev/null || die "importing the pause image failed"
  fi

  save_sysctls
  start kubelet "$ASSETS/kubelet" --config "$DIR/conf/kubelet.yaml" \
    --kubeconfig "$PKI/kubelet.kubeconfig" --root-dir "$KUBELET_ROOT" \
    --node-ip "$NODE_IP" --hostname-override "$NODE"

  # The rest after the API server is ready: its RBAC bootstrap roles must exist first (the
  # controller-manager exits if it cannot read its authentication configmap).
  wait_for api_ready 120 || fail_with_log kube-apiserver
  # CoreDNS reads Services, EndpointSlices, Pods and Namespaces (no built-in role exists for it).
  kubectl_ apply -f "$CLUSTER_FILES/coredns-rbac.yaml" >/dev/null

  start kube-controller-manager "$ASSETS/kube-controller-manager" \
    --kubeconfig "$PKI/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$PKI/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$PKI/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false \
    --allocate-node-cidrs --cluster-cidr "$POD_CIDR" --node-cidr-mask-size 24 \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --service-account-private-key-file "$PKI/sa.key" --use-service-account-credentials \
    --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --flex-volume-plugin-dir "$DIR/controller-manager/volume-plugins" --profiling=false

  start kube-scheduler "$ASSETS/kube-scheduler" \
    --kubeconfig "$PKI/scheduler.kubeconfig" \
    --authentication-kubeconfig "$PKI/scheduler.kubeconfig" \
    --authorization-kubeconfig "$PKI/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --profiling=false

  start kube-proxy "$ASSETS/kube-proxy" --config "$DIR/conf/kube-proxy.yaml"

  start coredns "$COREDNS" -conf "$DIR/conf/Corefile"

  wait_for node_ready 90 || fail_with_log kubelet
  # Pods can be created in a namespace only once its `default` ServiceAccount exists.
  wait_for "kubectl_ get serviceaccount default -n default" 30 || fail_with_log kube-controller-manager
  wait_for "curl -sf http://127.0.0.1:$COREDNS_READY_PORT/ready" 30 || fail_with_log coredns
  touch "$RUN/.up"
  log "node $NODE Ready in $((SECONDS - t0))s; API https://$NODE_IP:$API_PORT, DNS $DNS_IP"
  log "use it: export KUBECONFIG=$DIR/kubeconfig   (or: set -a; . $DIR/env; set +a)"
}

status_quiet() {
  local c
  for c in etcd containerd kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy coredns; do
    running "$c" || return 1
  done
  [ -n "${KUBECTL:-}" ] || KUBECTL="$("$HACK_DIR/k8s-binaries.sh" --node | tail -n 1)/kubectl"
  node_ready
}

status() {
  local c bad=0
  [ -d "$DIR" ] || { log "cluster is down ($DIR does not exist)"; return 1; }
  for c in etcd containerd kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy coredns; do
    if running "$c"; then log "  $c: running (pid $(pid_of "$c"))"; else log "  $c: NOT running"; bad=1; fi
  done
  assets
  if node_ready; then log "  node $NODE: Ready"; else log "  node $NODE: not Ready"; bad=1; fi
  if [ "$bad" = 0 ]; then log "cluster is up; KUBECONFIG=$DIR/kubeconfig"; else log "cluster is not (fully) up"; fi
  return "$bad"
}

# --- down and check-clean ----------------------------------------------------------------------

# Host-wide kernel settings the kubelet changes at start (setupKernelTunables), e.g.
# kernel.panic=10 and kernel.panic_on_oops=1: saved before its first start, restored by down.
KUBELET_SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes"

save_sysctls() {
  [ -f "$DIR/sysctl.orig" ] && return 0
  # shellcheck disable=SC2086
  sysctl $KUBELET_SYSCTLS >"$DIR/sysctl.orig.partial" 2>/dev/null && mv "$DIR/sysctl.orig.partial" "$DIR/sysctl.orig"
}

restore_sysctls() {
  [ -f "$DIR/sysctl.orig" ] || return 0
  local key _eq value
  while read -r key _eq value; do
    [ "$(sysctl -n "$key" 2>/dev/null)" = "$value" ] || sysctl -qw "$key=$value" 2>/dev/null || true
  done <"$DIR/sysctl.orig"
}

IPT_TOOLS="iptables ip6tables"

# Lines "TABLE CHAIN" of chains named KUBE-* or CNI-* in each iptables family.
ipt_chains() {
  local t tool
  for tool in $IPT_TOOLS; do
    command -v "$tool" >/dev/null || continue
    for t in filter nat mangle raw; do
      "$tool" -t "$t" -S 2>/dev/null | awk -v tool="$tool" -v t="$t" '$1 == "-N" && $2 ~ /^(KUBE-|CNI-)/ {print tool, t, $2}'
    done
  done
}

ipt_cleanup() {
  local tool t rule chain
  for tool in $IPT_TOOLS; do
    command -v "$tool" >/dev/null || continue
    for t in filter nat mangle raw; do
      # Rules in any chain that jump to one of ours, then our chains themselves.
      "$tool" -t "$t" -S 2>/dev/null | grep -E '^-A .* -j (KUBE-|CNI-)' | grep -vE '^-A (KUBE-|CNI-)' \
        | while read -r rule; do
          eval "$tool -t $t ${rule/-A/-D}" 2>/dev/null || true
        done || true
      for chain in $("$tool" -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE-|CNI-)/ {print $2}'); do
        "$tool" -t "$t" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$tool" -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE-|CNI-)/ {print $2}'); do
        "$tool" -t "$t" -X "$chain" 2>/dev/null || true
      done
    done
  done
  # kube-proxy's nftables table, should one have been made (it cleans up other modes' rules).
  if command -v nft >/dev/null; then
    nft delete table ip kube-proxy 2>/dev/null || true
    nft delete table ip6 kube-proxy 2>/dev/null || true
  fi
}

# Our mount points (kubelet volumes, overlay rootfs, netns), deepest first.
our_mounts() {
  awk '{print $5}' /proc/self/mountinfo | grep -E "^$DIR(/|$)" | sort -r || true
}

kubepods_cgroups() {
  local h
  for h in /sys/fs/cgroup/*/; do
    [ -d "${h}kubepods" ] && echo "${h}kubepods"
  done
  [ -d /sys/fs/cgroup/kubepods ] && echo /sys/fs/cgroup/kubepods
  return 0
}

# Processes we started that are still alive: containerd shims serving our containerd, and
# anything left in the kubepods cgroups (containers).
leftover_pids() {
  local p cg
  for p in /proc/[0-9]*; do
    [[ "$(cmdline "${p#/proc/}")" == *"-address $CTRD_SOCK "* ]] && echo "${p#/proc/}"
  done
  for cg in $(kubepods_cgroups); do
    find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null
  done
  return 0
}

orphan_pids() {
  local p exe
  for p in /proc/[0-9]*; do
    exe="$(readlink "$p/exe" 2>/dev/null)" || continue
    case "$exe" in
      "$FETCH_CACHE_DIR"/k8s-*/* | "$FETCH_CACHE_DIR"/coredns-*/* | */containerd) ;;
      *) continue ;;
    esac
    [[ "$(cmdline "${p#/proc/}")" == *"$DIR/"* ]] && alive "${p#/proc/}" && echo "${p#/proc/}"
  done
  return 0
}

# Removes the kubelet's files in the system-wide paths it does not let --root-dir move.
system_paths_cleanup() {
  local f
  if [ -d /var/log/containers ]; then
    for f in /var/log/containers/*; do
      [ -L "$f" ] && [[ "$(readlink "$f")" == "$DIR"/* ]] && rm -f "$f"
    done
    rmdir /var/log/containers 2>/dev/null || true
  fi
  rm -rf /var/lib/kubelet/device-plugins
  rmdir /var/lib/kubelet 2>/dev/null || true
  rm -rf "/var/lib/cni/networks/$CNI_NET"
  rm -f /var/lib/cni/results/"$CNI_NET"-* 2>/dev/null || true
  # libcni's cache of the loopback network of our sandboxes (left when a pod was not torn down
  # through the CRI): files named cni-loopback-<sandbox id>-lo.
  for f in "$DIR"/containerd/root/io.containerd.grpc.v1.cri/sandboxes/*; do
    [ -e "$f" ] && rm -f /var/lib/cni/results/*-"$(basename "$f")"-*
  done
  rmdir /var/lib/cni/results /var/lib/cni/networks /var/lib/cni 2>/dev/null || true
  # Sockets of shims that were killed rather than stopped: /run/containerd/s/<sha256 of
  # "<containerd address>/<namespace>/<task id>"> (containerd 1.6 puts them there whatever its
  # state dir; dockerd's containerd uses the same directory).
  for f in "$DIR"/containerd/state/io.containerd.runtime.v2.task/k8s.io/*; do
    [ -e "$f" ] || continue
    rm -f "/run/containerd/s/$(printf '%s' "$CTRD_SOCK/k8s.io/$(basename "$f")" | sha256sum | cut -d' ' -f1)"
  done
  rmdir /run/containerd/s /run/containerd 2>/dev/null || true
  # The flex-volume plugin dir's default, should a component have made it.
  rmdir /usr/libexec/kubernetes/kubelet-plugins/volume/exec /usr/libexec/kubernetes/kubelet-plugins/volume \
    /usr/libexec/kubernetes/kubelet-plugins /usr/libexec/kubernetes 2>/dev/null || true
}

down() {
  [ "$(id -u)" -eq 0 ] || die "down needs root"
  local t0=$SECONDS p m cg
  if [ -d "$DIR" ]; then
    assets
    rm -f "$RUN/.up"
    # Let the kubelet tear the pods down properly (CNI DEL, volume unmounts): stop what would
    # recreate them, delete them all, wait until they are gone.
    if running kube-apiserver && running kubelet && api_ready; then
      stop kube-controller-manager kube-scheduler
      kubectl_ delete pods --all -A --grace-period=1 --wait=false >/dev/null 2>&1 || true
      wait_for "[ -z \"\$(kubectl_ get pods -A -o name 2>/dev/null)\" ]" 30 \
        || log "some pods did not terminate within 30s; removing them by force"
    fi
    stop coredns kube-proxy kube-scheduler kube-controller-manager kubelet
    if running containerd; then
      # Whatever is left: kill its tasks, then delete the tasks and containers.
      for p in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$p" >/dev/null 2>&1 || true; done
      for p in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$p" >/dev/null 2>&1 || true; done
      for p in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$p" >/dev/null 2>&1 || true; done
    fi
    # Their state is about to be deleted: no need to wait for a graceful shutdown.
    stop -t 3 containerd kube-apiserver
    stop -t 3 etcd # last: kube-apiserver shuts down slowly without it
  fi
  # Components whose pid file is gone (e.g. DIR was deleted under a running cluster): our
  # binaries running with DIR's configuration.
  for p in $(orphan_pids); do kill -TERM "$p" 2>/dev/null || true; done
  for p in $(orphan_pids); do wait_for "! alive $p" 5 || kill -KILL "$p" 2>/dev/null || true; done
  for p in $(leftover_pids); do kill -KILL "$p" 2>/dev/null || true; done
  # A killed process leaves its cgroup only once it has exited: wait, or rmdir below fails.
  wait_for '[ -z "$(leftover_pids)" ]' 10 || log "processes still in the kubepods cgroups: $(leftover_pids | tr '\n' ' ')"
  for m in $(our_mounts); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  if [ -n "${ASSETS:-}" ] && [ -x "$ASSETS/kube-proxy" ]; then
    "$ASSETS/kube-proxy" --cleanup >/dev/null 2>&1 || true
  fi
  ipt_cleanup
  for p in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link delete "$p" 2>/dev/null || true
  done
  ip link delete "$BRIDGE" 2>/dev/null || true
  for cg in $(kubepods_cgroups); do
    find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  system_paths_cleanup
  restore_sysctls
  if [ -d "$DIR" ] && [ ! -f "$DIR/.fetch-cluster" ]; then
    log "not deleting $DIR: it is not marked as a cluster state directory"
  elif [ -d "$DIR" ]; then
    if [ -n "${FETCH_CLUSTER_KEEP_LOGS:-}" ]; then
      rm -rf "${DIR}.logs" && cp -r "$LOGS" "${DIR}.logs" 2>/dev/null || true
    fi
    rm -rf "$DIR"
  fi
  log "cluster down in $((SECONDS - t0))s"
  check_clean
}

check_clean() {
  local left=() p t
  [ -e "$DIR" ] && left+=("state dir $DIR")
  for p in $(leftover_pids); do left+=("process $p: $(cmdline "$p" | cut -c1-120)"); done
  for p in /proc/[0-9]*; do
    [[ "$(cmdline "${p#/proc/}")" == *"$DIR/"* ]] \
      && left+=("process ${p#/proc/}: $(cmdline "${p#/proc/}" | cut -c1-120)")
  done
  for p in $(our_mounts); do left+=("mount $p"); done
  for p in $(kubepods_cgroups); do left+=("cgroup $p"); done
  ip link show "$BRIDGE" >/dev/null 2>&1 && left+=("network interface $BRIDGE")
  while read -r p; do [ -n "$p" ] && left+=("$p chain"); done < <(ipt_chains)
  for p in $IPT_TOOLS; do
    command -v "$p" >/dev/null || continue
    for t in filter nat mangle raw; do
      grep -qE -- '-j (KUBE-|CNI-)' <<<"$("$p" -t "$t" -S 2>/dev/null)" && left+=("$p $t rules jumping to KUBE-/CNI- chains")
    done
  done
  if command -v nft >/dev/null && grep -q kube-proxy <<<"$(nft list tables 2>/dev/null)"; then left+=("nftables table kube-proxy"); fi
  [ -e "/var/lib/cni/networks/$CNI_NET" ] && left+=("/var/lib/cni/networks/$CNI_NET")
  compgen -G "/var/lib/cni/results/$CNI_NET-*" >/dev/null && left+=("/var/lib/cni/results/$CNI_NET-*")
  # Only a CRI runtime (ours, here) makes these.
  compgen -G "/var/lib/cni/results/cni-loopback-*" >/dev/null && left+=("/var/lib/cni/results/cni-loopback-*")
  [ -e /var/lib/kubelet/device-plugins ] && left+=("/var/lib/kubelet/device-plugins")
  [ -e /usr/libexec/kubernetes ] && left+=("/usr/libexec/kubernetes (flex-volume plugin dir)")
  if [ -d /var/log/containers ]; then
    for p in /var/log/containers/*; do
      [ -L "$p" ] && [[ "$(readlink "$p")" == "$DIR"/* ]] && left+=("pod log link $p")
    done
  fi
  if [ "${#left[@]}" -gt 0 ]; then
    log "NOT clean, left over:"
    printf '  %s\n' "${left[@]}" >&2
    return 1
  fi
  log "clean: nothing of the cluster is left"
}

# --- load, selftest ----------------------------------------------------------------------------

load() {
  [ "$#" -gt 0 ] || die "usage: hack/cluster.sh load IMAGE..."
  running containerd || die "the cluster is not up (hack/cluster.sh up)"
  need docker
  log "loading $* into the node"
  docker save "$@" | ctr_ images import - >/dev/null
  ctr_ images ls -q | grep -F -x -e "$(printf '%s\n' "$@" | head -n 1)" -e "docker.io/library/$1" -e "docker.io/$1" >/dev/null \
    || log "warning: $1 not listed after import (ctr -n k8s.io images ls)"
}

selftest() {
  status_quiet || die "the cluster is not up"
  assets
  local hash img work
  hash="$(sha256sum "$CLUSTER_FILES/probe/main.go" | cut -c1-12)"
  img="localhost/fetch-probe:$hash"
  local tar="$FETCH_CACHE_DIR/cluster-images-$hash/probe.tar"
  if [ ! -f "$tar" ]; then
    need go docker
    log "building the probe image $img"
    work="$(mktemp -d)"
    (cd "$CLUSTER_FILES/probe" && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="" GO111MODULE=off \
      go build -trimpath -ldflags "-s -w" -o "$work/probe" main.go)
    printf 'FROM scratch\nCOPY probe /probe\nUSER 65534:65534\nENTRYPOINT ["/probe"]\n' >"$work/Dockerfile"
    docker build -q -t "$img" "$work" >/dev/null 2>"$work/build.log" || { cat "$work/build.log" >&2; die "docker build of the probe image failed"; }
    mkdir -p "$(dirname "$tar")"
    docker save -o "$tar.partial" "$img" && mv "$tar.partial" "$tar"
    rm -rf "$work"
  fi
  ctr_ images import "$tar" >/dev/null
  kubectl_ delete namespace fetch-selftest --wait=true --ignore-not-found >/dev/null
  kubectl_ create namespace fetch-selftest >/dev/null
  kubectl_ label namespace fetch-selftest pod-security.kubernetes.io/enforce=restricted >/dev/null
  wait_for "kubectl_ get serviceaccount default -n fetch-selftest" 20
  local sc='{"runAsNonRoot": true, "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}'
  # pause: the sandbox image as a container; echo: an HTTP server behind a NodePort Service;
  # probe: DNS, the API through its Service, and echo through its Service (pod -> pod).
  kubectl_ apply -n fetch-selftest -f - >/dev/null <<EOF
{"apiVersion": "v1", "kind": "List", "items": [
 {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pause"},
  "spec": {"containers": [{"name": "pause", "image": "$PAUSE_IMAGE", "imagePullPolicy": "Never", "securityContext": $sc}]}},
 {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "echo", "labels": {"app": "echo"}},
  "spec": {"containers": [{"name": "echo", "image": "$img", "args": ["serve", ":8080"], "imagePullPolicy": "Never",
    "ports": [{"containerPort": 8080}], "readinessProbe": {"httpGet": {"port": 8080}, "periodSeconds": 1},
    "securityContext": $sc}]}},
 {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
  "spec": {"type": "NodePort", "selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": 8080}]}}
]}
EOF
  if ! printf '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"privileged"},"spec":{"containers":[{"name":"c","image":"%s","securityContext":{"privileged":true}}]}}' "$PAUSE_IMAGE" \
    | kubectl_ apply -n fetch-selftest -f - >/dev/null 2>&1; then
    log "ok   a privileged pod is refused by Pod Security admission (restricted)"
  else
    die "a privileged pod was admitted into a restricted namespace"
  fi
  kubectl_ wait -n fetch-selftest --for=condition=Ready pod/pause pod/echo --timeout=60s >/dev/null \
    || { kubectl_ describe -n fetch-selftest pods >&2; die "pods not Ready"; }
  log "ok   restricted pods Running (pause image, echo server)"
  local pod_ip cluster_ip node_port url
  pod_ip="$(kubectl_ get -n fetch-selftest pod/echo -o 'jsonpath={.status.podIP}')"
  cluster_ip="$(kubectl_ get -n fetch-selftest svc/echo -o 'jsonpath={.spec.clusterIP}')"
  node_port="$(kubectl_ get -n fetch-selftest svc/echo -o 'jsonpath={.spec.ports[0].nodePort}')"
  for url in "http://$pod_ip:8080/" "http://$cluster_ip/" "http://$NODE_IP:$node_port/"; do
    wait_for "curl -sf --max-time 2 $url" 10 || die "host -> $url failed"
    log "ok   host -> $url"
  done
  kubectl_ apply -n fetch-selftest -f - >/dev/null <<EOF
{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"},
 "spec": {"restartPolicy": "Never", "containers": [{"name": "probe", "image": "$img", "imagePullPolicy": "Never",
   "args": ["echo.fetch-selftest.svc.cluster.local", "http://echo.fetch-selftest.svc/", "http://echo/", "http://$pod_ip:8080/", "http://$NODE_IP:$node_port/"],
   "securityContext": $sc}]}}
EOF
  wait_for "[ \"\$(kubectl_ get -n fetch-selftest pod/probe -o 'jsonpath={.status.phase}')\" = Succeeded ] || [ \"\$(kubectl_ get -n fetch-selftest pod/probe -o 'jsonpath={.status.phase}')\" = Failed ]" 60 || true
  kubectl_ logs -n fetch-selftest probe >&2 || true
  [ "$(kubectl_ get -n fetch-selftest pod/probe -o 'jsonpath={.status.phase}')" = Succeeded ] \
    || { kubectl_ describe -n fetch-selftest pod/probe >&2; die "probe pod failed"; }
  kubectl_ delete namespace fetch-selftest --wait=false >/dev/null
  log "selftest passed"
}

case "${1:-}" in
  prepare) assets; coredns_bin; pause_image; log "ready: $ASSETS, $COREDNS, $PAUSE_TAR" ;;
  up) up ;;
  down) down ;;
  status) status ;;
  env)
    [ -f "$DIR/env" ] || die "the cluster is not up ($DIR/env missing; hack/cluster.sh up)"
    sed -E "s/^([A-Z_]+)=(.*)$/\1='\2'/" "$DIR/env"
    ;;
  check-clean) check_clean ;;
  load) shift; load "$@" ;;
  selftest) pause_image; selftest ;;
  kubectl) shift; assets; kubectl_ "$@" ;;
  *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
