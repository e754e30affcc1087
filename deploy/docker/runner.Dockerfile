# syntax=docker/dockerfile:1
# TestRunner runner: runs test files with sh, bash, python3 (+pytest), node.
# Build context is the repository root:
#   docker build -f deploy/docker/runner.Dockerfile -t testrunner/runner:dev .

ARG RUST_VERSION=1.94
ARG NODE_VERSION=20
ARG CARGO_CHEF_VERSION=0.1.77

FROM rust:${RUST_VERSION}-bookworm AS chef
ARG CARGO_CHEF_VERSION
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release -p runner --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p runner \
 && install -D -m 0755 target/release/runner /out/runner

# ---------------------------------------------------------------- runtime
# Node from the official image; sh (dash), bash, python3 and pytest from
# Debian bookworm. tini is PID 1 only to reap orphans that tests leave
# behind; it passes SIGTERM straight to the runner, which drains itself.
FROM node:${NODE_VERSION}-bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        bash ca-certificates python3 python3-pytest tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 runner \
 && useradd --uid 10001 --gid 10001 --home-dir /home/runner --create-home --shell /bin/bash runner \
 && sh -c 'exit 0' && bash -c 'exit 0' \
 && python3 --version && pytest --version && node --version
COPY --from=builder /out/runner /usr/local/bin/runner
ENV HOME=/home/runner \
    TMPDIR=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    TESTRUNNER_METRICS_LISTEN=0.0.0.0:9091
USER 10001:10001
WORKDIR /home/runner
EXPOSE 9091
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/runner"]
