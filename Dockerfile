# syntax=docker/dockerfile:1
# relay: the ElevenLabs personalization webhook.
#
#   docker build -t relay:0.1.0 --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
#
# Stages: cargo-chef plans the dependency graph, the dependencies are built in a layer of their
# own (rebuilt only when Cargo.toml/Cargo.lock change), then the workspace. The release build
# is exactly `just build` (`cargo build --release --locked --bin relay`), which CI runs.
ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
WORKDIR /src
RUN cargo install cargo-chef --version 0.1.78 --locked

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin relay
COPY . .
RUN cargo build --release --locked --bin relay

# distroless: glibc and libgcc, no shell, no package manager; the nonroot user is 65532.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="relay" \
      org.opencontainers.image.description="ElevenLabs personalization webhook: greets callers by name" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.source="https://github.com/relay/relay"
COPY --from=builder /src/target/release/relay /usr/local/bin/relay
USER 65532:65532
ENV LISTEN_ADDR=0.0.0.0:2212 \
    LOG_FORMAT=json
EXPOSE 2212 2213
# Docker and Compose use this; Kubernetes uses its own probes on /healthz and /readyz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["relay", "healthcheck"]
ENTRYPOINT ["relay"]
CMD ["serve"]
