#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, if any are missing.
# librdkafka is compiled from source by rdkafka-sys (cmake-build), linking OpenSSL (TLS, SASL SCRAM),
# zlib and libcurl (OAUTHBEARER/OIDC); the broker runs on Java 17 fetched via Maven; the
# envtest crate builds Go code through rust2go, which needs clang (bindgen).
source "$(dirname "$0")/lib.sh"

# debootstrap (base images), curl (the local cluster's health checks) and openssl (its
# certificates, the test broker's CA) are for the end-to-end tests; hack/docker.sh and
# hack/cluster.sh install the Docker engine, containerd and the CNI plugins themselves.
packages=(build-essential cmake pkg-config libssl-dev zlib1g-dev libcurl4-openssl-dev clang libclang-dev python3 python3-venv time openjdk-17-jdk-headless maven debootstrap curl openssl)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Java and Maven may come from elsewhere than Debian (e.g. a Temurin JDK); the commands are what matter.
if command -v java >/dev/null && command -v mvn >/dev/null; then
  missing=("${missing[@]/openjdk-17-jdk-headless/}")
  missing=("${missing[@]/maven/}")
fi
read -r -a missing <<<"${missing[*]}"
[ "${#missing[@]}" -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
log "installing: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
