# The controller and the kubectl plugin in a small, non-root image.
# Build: docker build -t aviary/aviary:0.1.0 .   (not built in this repository's CI: no engine here)
FROM rust:1.95-bookworm AS build
# aws-lc-sys (the TLS provider) builds its C sources with cmake.
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Workspace members (test tooling): only their manifests and sources are read, none is built.
COPY tools ./tools
RUN cargo build --release --locked --bin aviary --bin kubectl-aviary

# distroless/cc: glibc and CA certificates, no shell, runs as uid 65532 (matches the chart).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/aviary /usr/local/bin/aviary
COPY --from=build /src/target/release/kubectl-aviary /usr/local/bin/kubectl-aviary
USER 65532:65532
EXPOSE 8090 8080
ENTRYPOINT ["/usr/local/bin/aviary"]
