# syntax=docker/dockerfile:1
# The gateway's programs in one image: gateway-control-plane, gateway-data-plane, gatewayctl,
# and the demo-backend echo server (for docker-compose.yml's demo).
#
#   docker build -t gateway .
#
# Untested here (no Docker on the machine it was written on): written to be correct by reading.

# --- Build ----------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS build

# etcd-client's build script runs protoc; the gateway's own protos are compiled by protox.
RUN apt-get update \
    && apt-get install -y --no-install-recommends protobuf-compiler \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# The caches keep the registry and target/ between builds (BuildKit); the binaries are copied
# out of the cached target/ so that the next stage can see them.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --workspace --bins \
    && mkdir -p /out \
    && cp target/release/gateway-control-plane \
          target/release/gateway-data-plane \
          target/release/gatewayctl \
          target/release/demo-backend \
          /out/

# --- Run ------------------------------------------------------------------------------------
FROM debian:bookworm-slim

# curl for health checks; ca-certificates for TLS to upstreams.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/gateway gateway \
    && mkdir -p /var/lib/gateway /var/cache/gateway \
    && chown gateway:gateway /var/lib/gateway /var/cache/gateway

COPY --from=build /out/ /usr/local/bin/
COPY examples/ /examples/

USER gateway
WORKDIR /var/lib/gateway

# Control plane gRPC and admin; data plane traffic and admin.
EXPOSE 18000 18001 8080 9901

# No default program: docker-compose.yml (or `docker run gateway PROGRAM ...`) picks one.
CMD ["gateway-data-plane", "--help"]
