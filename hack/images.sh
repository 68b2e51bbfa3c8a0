#!/usr/bin/env bash
# Container images for the Docker path (Dockerfile, compose, the end-to-end tests), built on
# this machine. No image registry is reachable here, so the base images the project's files
# name are local stand-ins, built from Debian's packages and the machine's own toolchains
# (images/README.md says what each is and how it differs from the real one):
#
#   hack/images.sh base              all four stand-ins: debian:bookworm-slim, rust:1.95-bookworm,
#                                    apache/kafka:4.2.0, busybox:1.37
#   hack/images.sh debian|rust|kafka|busybox
#                                    one stand-in (and the ones it is built FROM)
#   hack/images.sh project [TAG]     the repository's Dockerfile (needs debian and rust), tagged
#                                    TAG (default ghcr.io/fetch-pipeline/fetch-pipeline:0.1.0) and
#                                    fetch-pipeline:local (compose's name); prints the image size
#   hack/images.sh all [TAG]         base, then project
#   hack/images.sh name NAME         print the image name of debian|rust|kafka|busybox|project
#
# `project` and `all` print the project image's name on stdout (everything else goes to stderr).
# Each stand-in carries the label io.fetch-pipeline.recipe: a hash of its recipe (the files
# under images/NAME/, the pinned versions, the toolchain it copies, its base's hash). An image
# with the right label is kept, so a warm run builds nothing. The project image relies on
# Docker's layer cache instead (dependencies are compiled in a layer of their own).
# BuildKit is used when Debian's 20.10 client is there (DOCKER_BUILDKIT=1 /usr/bin/docker),
# else the legacy builder of the `docker` on PATH; FETCH_DOCKER_BUILDER=legacy|buildkit forces one.
source "$(dirname "$0")/lib.sh"

IMAGES_DIR="$REPO_ROOT/images"
LABEL=io.fetch-pipeline.recipe
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
RUST_VERSION_PIN=1.95.0
RUST_HOST=x86_64-unknown-linux-gnu
PROJECT_TAG_DEFAULT=ghcr.io/fetch-pipeline/fetch-pipeline:0.1.0

TAG_DEBIAN="debian:${DEBIAN_SUITE}-slim"
TAG_RUST="rust:${RUST_VERSION_PIN%.*}-${DEBIAN_SUITE}"
TAG_KAFKA="apache/kafka:${KAFKA_VERSION}"
TAG_BUSYBOX="busybox:1.37"

# Prints the hash of a recipe: the files under images/$1 plus the extra strings given.
recipe_hash() {
  local name="$1"
  shift
  {
    printf '%s\n' "$@"
    (cd "$IMAGES_DIR/$name" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
  } | sha256sum | cut -c1-16
}

# The recipe label of image $1, empty if it is not there.
label_of() {
  docker image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null || true
}

# Succeeds (and says so) if image $1 carries recipe hash $2.
up_to_date() {
  if [ "$(label_of "$1")" = "$2" ]; then
    log "$1 is up to date (recipe $2)"
    return 0
  fi
  return 1
}

# docker build with the builder chosen as the header says; arguments as for docker build.
docker_build() {
  local builder="${FETCH_DOCKER_BUILDER:-}"
  if [ -z "$builder" ]; then
    if [ -x /usr/bin/docker ]; then builder=buildkit; else builder=legacy; fi
  fi
  case "$builder" in
    buildkit) DOCKER_BUILDKIT=1 /usr/bin/docker build --progress=plain "$@" ;;
    legacy) DOCKER_BUILDKIT=0 docker build "$@" ;;
    *) die "FETCH_DOCKER_BUILDER must be legacy or buildkit, not '$builder'" ;;
  esac
}

size_of() {
  docker image inspect --format '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1 / 1000000}'
}

ensure_engine() {
  "$HACK_DIR/docker.sh" start
}

# debian:bookworm-slim: debootstrap's minbase variant of the suite, cleaned like the slim image.
debian() {
  local hash root
  hash="$(recipe_hash debian "$DEBIAN_SUITE" "$DEBIAN_MIRROR" minbase)"
  up_to_date "$TAG_DEBIAN" "$hash" && return 0
  need debootstrap
  log "building $TAG_DEBIAN: debootstrap --variant=minbase $DEBIAN_SUITE from $DEBIAN_MIRROR"
  root="$(mktemp -d "$FETCH_CACHE_DIR/debian-rootfs.XXXXXX")"
  # shellcheck disable=SC2064  # expand now: the trap outlives this function's locals
  trap "rm -rf '$root'" EXIT
  debootstrap --variant=minbase "$DEBIAN_SUITE" "$root" "$DEBIAN_MIRROR" >"$root.log" 2>&1 \
    || { tail -n 30 "$root.log" >&2; die "debootstrap failed (log above)"; }
  rm -f "$root.log"
  # The official image's apt sources (with updates and security), slim dpkg excludes, apt hygiene.
  rm -f "$root/etc/apt/sources.list"
  install -m 0644 "$IMAGES_DIR/debian/debian.sources" "$root/etc/apt/sources.list.d/debian.sources"
  install -m 0644 "$IMAGES_DIR/debian/dpkg-slim" "$root/etc/dpkg/dpkg.cfg.d/docker"
  install -m 0644 "$IMAGES_DIR/debian/apt-docker-clean" "$root/etc/apt/apt.conf.d/docker-clean"
  # What a container gets from the engine, or what the slim image leaves out.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
    "$root"/var/log/* "$root"/tmp/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/usr/share/locale/* "$root"/usr/share/groff/*
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  : >"$root/etc/resolv.conf"
  : >"$root/etc/hostname"
  : >"$root/etc/machine-id"
  tar --numeric-owner -C "$root" -c . \
    | docker import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["bash"]' \
      --change "LABEL $LABEL=$hash" \
      - "$TAG_DEBIAN" >/dev/null
  rm -rf "$root"
  trap - EXIT
  log "$TAG_DEBIAN built ($(size_of "$TAG_DEBIAN"))"
}

# Prints the certificates of this machine's CA bundle that Debian's ca-certificates package does
# not provide (a TLS-inspecting proxy's CA, a company CA), PEM; nothing when there are none.
local_trust_anchors() {
  [ -f /etc/ssl/certs/ca-certificates.crt ] || return 0
  python3 - <<'PY'
import glob, re
pem = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)
def norm(s): return "".join(s.split())
known = set()
for path in glob.glob("/usr/share/ca-certificates/**/*.crt", recursive=True):
    with open(path) as f:
        known.update(norm(c) for c in pem.findall(f.read()))
with open("/etc/ssl/certs/ca-certificates.crt") as f:
    extra = [c for c in pem.findall(f.read()) if norm(c) not in known]
print("\n".join(extra))
PY
}

# rust:1.95-bookworm: debian plus build tools and this machine's Rust toolchain, at the official
# image's paths (RUSTUP_HOME=/usr/local/rustup, CARGO_HOME=/usr/local/cargo).
rust() {
  debian
  local name="${RUST_VERSION_PIN}-${RUST_HOST}" toolchain rustup_bin hash ctx
  toolchain="${RUSTUP_HOME:-$HOME/.rustup}/toolchains/$name"
  # rustup may know it as stable-*: the sysroot of the rustc on PATH, checked just below.
  [ -d "$toolchain" ] || toolchain="$(rustc --print sysroot 2>/dev/null)" \
    || die "no Rust $RUST_VERSION_PIN toolchain: rustup toolchain install $RUST_VERSION_PIN"
  toolchain="$(readlink -f "$toolchain")"
  "$toolchain/bin/rustc" --version | grep -q "^rustc $RUST_VERSION_PIN " \
    || die "$toolchain holds $("$toolchain/bin/rustc" --version), not Rust $RUST_VERSION_PIN"
  rustup_bin="$(readlink -f "$(command -v rustup || echo "$HOME/.cargo/bin/rustup")")"
  [ -x "$rustup_bin" ] || die "rustup is not installed"
  local local_ca
  local_ca="$(local_trust_anchors)"
  hash="$(recipe_hash rust "$(label_of "$TAG_DEBIAN")" "$("$toolchain/bin/rustc" -vV)" \
    "$("$toolchain/bin/cargo" -V)" "$("$rustup_bin" --version 2>/dev/null)" "$local_ca")"
  up_to_date "$TAG_RUST" "$hash" && return 0
  log "building $TAG_RUST from the toolchain in $toolchain"
  ctx="$(mktemp -d "$FETCH_CACHE_DIR/rust-context.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$ctx'" EXIT
  cp "$IMAGES_DIR/rust/Dockerfile" "$ctx/"
  mkdir -p "$ctx/ca"
  if [ -n "$local_ca" ]; then
    log "  adding this machine's own CA certificates (not in Debian's ca-certificates) to its trust store"
    printf '%s\n' "$local_ca" >"$ctx/ca/local-machine.crt"
  fi
  # The minimal profile: rustc, cargo and rust-std for the host; no docs, clippy or rustfmt.
  mkdir -p "$ctx/rustup/toolchains/$name" "$ctx/cargo/bin"
  tar -C "$toolchain" -c \
    --exclude=./share/doc --exclude='./bin/*clippy*' --exclude='./bin/*fmt' \
    --exclude='./lib/rustlib/manifest-clippy*' --exclude='./lib/rustlib/manifest-rustfmt*' \
    --exclude='./lib/rustlib/manifest-rust-docs*' --exclude=./lib/rustlib/src . \
    | tar -C "$ctx/rustup/toolchains/$name" -x
  printf '%s\n' "cargo-$RUST_HOST" "rust-std-$RUST_HOST" "rustc-$RUST_HOST" \
    >"$ctx/rustup/toolchains/$name/lib/rustlib/components"
  printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\n\n[overrides]\n' "$name" \
    >"$ctx/rustup/settings.toml"
  install -m 0755 "$rustup_bin" "$ctx/cargo/bin/rustup"
  local proxy
  for proxy in cargo rustc rustdoc rust-gdb rust-gdbgui rust-lldb; do
    ln -s rustup "$ctx/cargo/bin/$proxy"
  done
  chmod -R a+w "$ctx/rustup" "$ctx/cargo"
  docker_build --build-arg "RUST_VERSION=$RUST_VERSION_PIN" --build-arg "RECIPE=$hash" \
    -t "$TAG_RUST" "$ctx" >"$ctx.log" 2>&1 || { tail -n 40 "$ctx.log" >&2; die "building $TAG_RUST failed (log above)"; }
  rm -rf "$ctx" "$ctx.log"
  trap - EXIT
  log "$TAG_RUST built ($(size_of "$TAG_RUST"))"
}

# apache/kafka:4.2.0: debian, Debian's JRE 17, the Kafka jars from Maven Central and the
# scripts under images/kafka (the official image's paths, user and KAFKA_* contract).
kafka() {
  debian
  "$HACK_DIR/kafka.sh" fetch
  local home hash ctx
  home="$("$HACK_DIR/kafka.sh" home)"
  hash="$(recipe_hash kafka "$(label_of "$TAG_DEBIAN")" "$KAFKA_VERSION" "$KAFKA_SCALA_VERSION" \
    "$(cd "$home/libs" && ls)")"
  up_to_date "$TAG_KAFKA" "$hash" && return 0
  log "building $TAG_KAFKA (Debian's JRE 17 and the Kafka $KAFKA_VERSION jars in $home)"
  ctx="$(mktemp -d "$FETCH_CACHE_DIR/kafka-context.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$ctx'" EXIT
  cp -R "$IMAGES_DIR/kafka/." "$ctx/"
  cp -R "$home/libs" "$ctx/libs"
  docker_build --build-arg "KAFKA_VERSION=$KAFKA_VERSION" --build-arg "RECIPE=$hash" \
    -t "$TAG_KAFKA" "$ctx" >"$ctx.log" 2>&1 || { tail -n 40 "$ctx.log" >&2; die "building $TAG_KAFKA failed (log above)"; }
  rm -rf "$ctx" "$ctx.log"
  trap - EXIT
  log "$TAG_KAFKA built ($(size_of "$TAG_KAFKA"))"
}

# busybox:1.37: Debian's busybox-static on an empty base, one link per applet, plus the glibc
# pieces its static build loads for name lookups (NSS), so `wget http://service:port/` works.
busybox() {
  need apt-cache apt-get dpkg-deb
  local version deb hash ctx
  version="$(apt-cache show --no-all-versions busybox-static 2>/dev/null | sed -n 's/^Version: //p')"
  [ -n "$version" ] || { apt-get update -qq; version="$(apt-cache show --no-all-versions busybox-static | sed -n 's/^Version: //p')"; }
  [ -n "$version" ] || die "apt knows no busybox-static package"
  hash="$(recipe_hash busybox "$version" "$(dpkg-query -W -f '${Version}' libc6)")"
  up_to_date "$TAG_BUSYBOX" "$hash" && return 0
  deb="$FETCH_CACHE_DIR/busybox-static_${version}_amd64.deb"
  if [ ! -f "$deb" ]; then
    log "downloading Debian's busybox-static $version"
    (cd "$FETCH_CACHE_DIR" && apt-get download "busybox-static=$version" >/dev/null 2>&1) || die "apt-get download busybox-static failed"
    mv "$FETCH_CACHE_DIR"/busybox-static_*"${version#*:}"*_amd64.deb "$deb" 2>/dev/null || true
    [ -f "$deb" ] || die "the busybox-static .deb did not arrive in $FETCH_CACHE_DIR"
  fi
  log "building $TAG_BUSYBOX from busybox-static $version"
  ctx="$(mktemp -d "$FETCH_CACHE_DIR/busybox-context.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$ctx'" EXIT
  cp "$IMAGES_DIR/busybox/Dockerfile" "$ctx/"
  dpkg-deb -x "$deb" "$ctx/deb"
  local root="$ctx/rootfs" applet
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/home" "$root/var" "$root/lib64" "$root/lib/x86_64-linux-gnu"
  chmod 1777 "$root/tmp"
  install -m 0755 "$ctx/deb/bin/busybox" "$root/bin/busybox"
  rm -rf "$ctx/deb"
  while IFS= read -r applet; do
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$root/$(dirname "$applet")"
    ln -sf /bin/busybox "$root/$applet"
  done < <("$root/bin/busybox" --list-full)
  # glibc's NSS modules and loader, for getaddrinfo in a static binary; users like the official image's.
  cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
  for lib in libc.so.6 libnss_dns.so.2 libnss_files.so.2 libresolv.so.2; do
    cp -L "/lib/x86_64-linux-gnu/$lib" "$root/lib/x86_64-linux-gnu/"
  done
  printf 'hosts: files dns\npasswd: files\ngroup: files\n' >"$root/etc/nsswitch.conf"
  printf 'root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n' >"$root/etc/group"
  docker_build --build-arg "RECIPE=$hash" -t "$TAG_BUSYBOX" "$ctx" >"$ctx.log" 2>&1 \
    || { tail -n 40 "$ctx.log" >&2; die "building $TAG_BUSYBOX failed (log above)"; }
  rm -rf "$ctx" "$ctx.log"
  trap - EXIT
  log "$TAG_BUSYBOX built ($(size_of "$TAG_BUSYBOX"))"
}

# The repository's Dockerfile, tagged $1 and fetch-pipeline:local.
project() {
  local tag="${1:-$PROJECT_TAG_DEFAULT}" started
  debian
  rust
  started="$(date +%s)"
  log "building $tag from $REPO_ROOT/Dockerfile"
  docker_build -t "$tag" -t fetch-pipeline:local "$REPO_ROOT" >&2 || die "docker build of the project's Dockerfile failed"
  log "$tag (also fetch-pipeline:local) built in $(($(date +%s) - started))s: $(size_of "$tag")"
  echo "$tag"
}

name_of() {
  case "${1:-}" in
    debian) echo "$TAG_DEBIAN" ;;
    rust) echo "$TAG_RUST" ;;
    kafka) echo "$TAG_KAFKA" ;;
    busybox) echo "$TAG_BUSYBOX" ;;
    project) echo "$PROJECT_TAG_DEFAULT" ;;
    *) die "name of what? debian|rust|kafka|busybox|project" ;;
  esac
}

cmd="${1:-}"
shift || true
if [ "$cmd" = name ]; then
  name_of "$@"
  exit 0
fi
ensure_engine
case "$cmd" in
  debian) debian ;;
  rust) rust ;;
  kafka) kafka ;;
  busybox) busybox ;;
  # Separate statements, not `&&`: bash ignores `set -e` inside a function on the left of
  # `&&`, so a failed step would go unnoticed and its image be labelled as up to date.
  base) debian; rust; kafka; busybox ;;
  project) project "$@" ;;
  all) debian; rust; kafka; busybox; project "$@" ;;
  *) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
