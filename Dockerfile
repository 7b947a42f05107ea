# The controller's image, for users with Docker (docker build / buildx). `make image` builds the
# same layout here without a daemon (hack/image/build.sh): both run hack/image/rootfs.sh, which
# puts the binary on three Debian packages (libc6, libgcc-s1, ca-certificates) and a passwd
# naming uid 65532. No shell in the image; one process, non-root.
#
#   docker build --build-arg VERSION=0.2.0 --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) -t aviary .
FROM rust:1.95-bookworm AS build
# BuildKit's SBOM scans this stage too: the Rust crates the binary was built from.
ARG BUILDKIT_SBOM_SCAN_STAGE=true
# aws-lc-sys (the TLS provider) builds its C sources with cmake.
RUN apt-get update && apt-get install -y --no-install-recommends cmake binutils && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
# Workspace members (test tooling): only their manifests and sources are read, none is built.
COPY tools ./tools
COPY hack/image ./hack/image
# No .git in the build context: build.rs takes the revision and date from these (the release
# workflow passes them; hack/release/vars.sh).
ARG REVISION=unknown
ARG SOURCE_DATE_EPOCH=0
RUN AVIARY_REVISION=$REVISION SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH cargo build --release --locked --bin aviary
# apt-get download needs the package lists.
RUN apt-get update && bash hack/image/rootfs.sh /rootfs target/release /debs && rm -rf /var/lib/apt/lists/*

FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
# The project home (hack/release/project.env), passed by the release workflow.
ARG SOURCE_URL
COPY --from=build /rootfs /
USER 65532:65532
WORKDIR /
EXPOSE 8080 8090
ENTRYPOINT ["/usr/local/bin/aviary"]
LABEL org.opencontainers.image.source=$SOURCE_URL \
      org.opencontainers.image.revision=$REVISION \
      org.opencontainers.image.version=$VERSION \
      org.opencontainers.image.created=$CREATED \
      org.opencontainers.image.title=aviary \
      org.opencontainers.image.description="Aviary: progressive delivery for Kubernetes (canary and blue-green Rollouts with analysis)" \
      org.opencontainers.image.licenses=Apache-2.0
