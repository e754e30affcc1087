# syntax=docker/dockerfile:1
# TestRunner coordinator: API, grpc-web, console, metrics on :50051; the
# runner port :50052 when TESTRUNNER_RUNNER_LISTEN=0.0.0.0:50052 is set
# (compose.yaml and the Kubernetes ConfigMap set it).
# Build context is the repository root:
#   docker build -f deploy/docker/coordinator.Dockerfile -t testrunner/coordinator:dev .

ARG RUST_VERSION=1.94
ARG NODE_VERSION=20
ARG CARGO_CHEF_VERSION=0.1.77

# ---------------------------------------------------------------- console
FROM node:${NODE_VERSION}-bookworm-slim AS console
WORKDIR /src/web-client
# Dependencies first: this layer is reused until the lockfile changes.
COPY web-client/package.json web-client/package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --no-audit --no-fund
# The console generates its TypeScript client from ../proto during the build.
COPY proto/ /src/proto/
COPY web-client/ ./
RUN npm run build && test -f dist/index.html

# ---------------------------------------------------------------- rust
FROM rust:${RUST_VERSION}-bookworm AS chef
ARG CARGO_CHEF_VERSION
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

# A recipe of the workspace's manifests and lockfile only: it changes when
# dependencies change, not when sources do.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only (cached layer).
RUN cargo chef cook --release -p coordinator --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p coordinator \
 && install -D -m 0755 target/release/coordinator /out/coordinator \
 && mkdir -p /out/data

# ---------------------------------------------------------------- runtime
# glibc + libgcc + CA certificates, no shell, uid 65532 (nonroot).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/coordinator /usr/local/bin/coordinator
COPY --from=console /src/web-client/dist /usr/share/testrunner/console
# Working directory for the default SQLite database (no Postgres URL given).
COPY --from=builder --chown=65532:65532 /out/data /var/lib/testrunner
WORKDIR /var/lib/testrunner
# TESTRUNNER_LISTEN is set because the binary's default (127.0.0.1) is
# unreachable from outside a container. TESTRUNNER_RUNNER_LISTEN is left to
# deployments on purpose: it is off by default, it also lowers the API
# threads' priority, and an image ENV could not be switched off again (an
# empty value is not an address).
ENV TESTRUNNER_LISTEN=0.0.0.0:50051 \
    TESTRUNNER_CONSOLE_DIR=/usr/share/testrunner/console \
    TESTRUNNER_LOG_FORMAT=json
USER 65532:65532
EXPOSE 50051 50052
ENTRYPOINT ["/usr/local/bin/coordinator"]
