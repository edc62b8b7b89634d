# syntax=docker/dockerfile:1
#
# Container image of oci-registry-exporter (README, "Container image": how it is built and
# where the chart and kustomize expect it).
#   docker build --build-arg ORE_BUILD_REVISION="$(git rev-parse --short=12 HEAD)" \
#     -t oci-registry-exporter .
#   docker run --rm -p 9793:9793 -e OCI__RegistryUrl=https://registry.example.com oci-registry-exporter
#   docker run --rm -p 9793:9793 \
#     -v ./config/harbor-robot.toml:/etc/oci-registry-exporter/config.toml:ro \
#     -v ./secrets:/var/run/secrets/oci-registry-exporter:ro oci-registry-exporter
# The image runs as the unprivileged user 65532 (distroless `nonroot`) and needs no
# writable file system; see deploy/docker/config.toml for the default configuration and
# config/ for an example per kind of registry (config/reference.toml lists every key).

FROM rust:1-bookworm AS builder
WORKDIR /src
# The context has no .git: build.rs takes the source revision (for --version and
# oci_registry_exporter_build_info) from here, "unknown" when not given, and the build date
# from SOURCE_DATE_EPOCH (reproducible builds) when given.
ARG ORE_BUILD_REVISION=""
ARG SOURCE_DATE_EPOCH=""
# Exactly what the build needs; tests/suite/deploy/dockerfile.rs builds the crate from these files alone.
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
# The cache mounts keep the crate registry and the build directory between builds; the
# binary is copied out of the cached target/ so the next stage can see it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -D -m 0755 target/release/oci-registry-exporter /out/oci-registry-exporter

# cc: glibc and libgcc for the Rust binary, plus CA certificates for HTTPS registries.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="oci-registry-exporter" \
      org.opencontainers.image.description="Prometheus exporter that health-checks OCI registries" \
      org.opencontainers.image.source="https://github.com/oci-registry-exporter/oci-registry-exporter"
COPY --from=builder /out/oci-registry-exporter /usr/local/bin/oci-registry-exporter
COPY deploy/docker/config.toml /etc/oci-registry-exporter/config.toml
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 9793
ENTRYPOINT ["/usr/local/bin/oci-registry-exporter", "--config", "/etc/oci-registry-exporter/config.toml"]
