# pmctl as a container image: every subcommand (`serve-api`, `serve-ingest`, `migrate`,
# `partition-maintain`, `simulate-provider`, …) from one small image, run as a non-root user.
#
#   docker build -t payment-manager/pmctl .
#   docker run --rm payment-manager/pmctl --version
#
# Built with the Rust toolchain in Debian 12 (bookworm), run on bookworm-slim with only what
# the binary links: OpenSSL (librdkafka's TLS) and zlib. compose/docker-compose.yml builds it.
# Our CI has no container engine: it checks this file with hadolint (docs/deploy.md).

FROM rust:1.95-bookworm AS build
# cmake builds aws-lc (the TLS of the read-walk benchmark's HTTP client); librdkafka is built
# from source by its crate with the toolchain the image has.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p pmctl \
    && install -m 0755 target/release/pmctl /usr/local/bin/pmctl

FROM debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin pmctl
COPY --from=build /usr/local/bin/pmctl /usr/local/bin/pmctl
USER 10001:10001
# serve-api, serve-ingest, simulate-provider
EXPOSE 3000 3001 3002
ENTRYPOINT ["/usr/local/bin/pmctl"]
CMD ["--help"]
