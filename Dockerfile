# syntax=docker/dockerfile:1
# The controller image: the `nodewright` binary alone on distroless, as a non-root user.
#   docker build -t nodewright:dev .
# The chart runs it as `nodewright controller` (charts/nodewright/templates/deployment.yaml).

# Builder: the toolchain rust-toolchain.toml pins (rustup in the image installs it on first use).
FROM docker.io/library/rust:1.95.0-bookworm AS builder
WORKDIR /src
COPY . .
# The caches keep the registry and incremental artefacts between builds; the binary is copied
# out because the target cache is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p nodewright --bin nodewright \
 && cp target/release/nodewright /usr/local/bin/nodewright

# Runtime: glibc and libgcc only (ring's C is linked against glibc), no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /usr/local/bin/nodewright /nodewright
# distroless's nonroot user; the chart's securityContext asks for the same uid.
USER 65532:65532
ENTRYPOINT ["/nodewright"]
