# One image with both binaries: fetch-consumer (the default entrypoint) and fetch-operator.
#   docker build -t fetch-pipeline .          (or hack/images.sh project)
#   docker run --rm -i fetch-pipeline process --input - --dead-letter /dev/stderr < events.jsonl
#   docker run --rm --entrypoint fetch-operator fetch-pipeline crd
# Works with the legacy builder and with BuildKit, and needs no `# syntax=` line (no registry).

FROM rust:1.95-bookworm AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# librdkafka is compiled from source (rdkafka's cmake-build) against OpenSSL, zlib and libcurl.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake=3.25.* pkg-config=1.8.* libssl-dev=3.0.* zlib1g-dev=1:1.2.* libcurl4-openssl-dev=7.88.* \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The dependencies first, in a layer of their own: the manifests, with an empty stand-in for
# every target they name (read from the manifests, so a new [[test]] or [[bench]] needs no
# change here). A change to the sources then rebuilds only the workspace's own crates. deploy/
# (tests of the deployment artifacts) keeps its stand-ins: it is a member, not part of the image.
COPY Cargo.toml Cargo.lock ./
COPY consumer/Cargo.toml consumer/
COPY operator/Cargo.toml operator/
COPY telemetry/Cargo.toml telemetry/
COPY testing/Cargo.toml testing/
COPY deploy/Cargo.toml deploy/
RUN for manifest in */Cargo.toml; do \
      crate="${manifest%/Cargo.toml}"; \
      mkdir -p "$crate/src" && touch "$crate/src/lib.rs" || exit 1; \
      awk 'BEGIN { dir["bin"] = "src/bin"; dir["test"] = "tests"; dir["bench"] = "benches"; dir["example"] = "examples" } \
          function flush() { if (kind != "") print (path != "" ? path : dir[kind] "/" name ".rs"); kind = "" } \
          /^\[/ { flush() } \
          /^\[\[(bin|test|bench|example)\]\]/ { kind = $0; gsub(/[][]/, "", kind); name = ""; path = "" } \
          kind != "" && /^name *=/ { split($0, v, "\""); name = v[2] } \
          kind != "" && /^path *=/ { split($0, v, "\""); path = v[2] } \
          END { flush() }' "$manifest" \
      | while read -r target; do \
          mkdir -p "$(dirname "$crate/$target")" && echo 'fn main() {}' > "$crate/$target" || exit 1; \
        done || exit 1; \
    done \
 && cargo build --release --locked -p fetch-consumer -p fetch-operator \
 && rm -rf consumer operator telemetry testing \
      target/release/.fingerprint/fetch-* target/release/deps/fetch_* target/release/deps/libfetch_* \
      target/release/fetch-consumer* target/release/fetch-operator*
COPY consumer consumer
COPY operator operator
COPY telemetry telemetry
COPY testing testing
RUN cargo build --release --locked -p fetch-consumer -p fetch-operator \
 && install -m 0755 target/release/fetch-consumer target/release/fetch-operator /usr/local/bin/

FROM debian:bookworm-slim AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="fetch-pipeline" \
      org.opencontainers.image.description="fetch-consumer (Kafka login-event cleaner) and fetch-operator (FetchPipeline controller)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/fetch-pipeline/fetch-pipeline"
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates=20230311* libssl3=3.0.* libcurl4=7.88.* zlib1g=1:1.2.* \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/fetch-consumer /usr/local/bin/fetch-operator /usr/local/bin/
# Non-root, numeric so Kubernetes can verify runAsNonRoot; matches the operator's pod specs.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["fetch-consumer"]
CMD ["--help"]
