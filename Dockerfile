# One image with both binaries: fetch-consumer (the default entrypoint) and fetch-operator.
#   docker build -t fetch-pipeline .
#   docker run --rm fetch-pipeline process --input - --dead-letter /dev/stderr < events.jsonl
#   docker run --rm --entrypoint fetch-operator fetch-pipeline crd

FROM rust:1.95-bookworm AS build
# librdkafka is compiled from source (rdkafka's cmake-build) against OpenSSL, zlib and libcurl.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake=3.25.* pkg-config=1.8.* libssl-dev=3.0.* zlib1g-dev=1:1.2.* libcurl4-openssl-dev=7.88.* \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
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
