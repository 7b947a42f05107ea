#!/usr/bin/env bash
# `make image`: the controller's OCI image, built here from the repository with no daemon and no
# base image pulled: the release binary on a root filesystem of three Debian packages
# (hack/image/rootfs.sh), packed with umoci into an OCI layout at target/image/oci, tagged with
# the version. Prints the reference, digest and size. File times are the commit's, so one commit
# on one machine builds one digest.
#
# Env: IMAGE_BIN_DIR (default: build with cargo into target/release), IMAGE_OUT (default
# target/image).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
. hack/release/vars.sh
out="${IMAGE_OUT:-$root/target/image}"
# The .debs are kept per release and architecture of the machine that builds.
release_id="$(. /etc/os-release && echo "${ID}-${VERSION_ID:-unknown}")"
cache="${AVIARY_BIN_CACHE:-$HOME/.cache/aviary}/debs-$release_id-$(dpkg --print-architecture)"
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
rootless=()
[ "$(id -u)" = 0 ] || rootless=(--rootless)

need=()
for cmd in umoci dpkg-deb apt-get strip readelf; do command -v "$cmd" >/dev/null 2>&1 || need+=("$cmd"); done
if [ ${#need[@]} -gt 0 ]; then
  echo "image: installing umoci (and binutils)" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq --no-install-recommends umoci binutils >/dev/null
fi

bin="${IMAGE_BIN_DIR:-}"
if [ -z "$bin" ]; then
  cargo build --release --locked --bin aviary >&2
  bin="$root/target/release"
fi

rootfs="$out/rootfs"
bash hack/image/rootfs.sh "$rootfs" "$bin" "$cache"
find "$rootfs" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

layout="$out/oci"
ref="$layout:$VERSION"
rm -rf "$layout"
umoci init --layout "$layout"
umoci new --image "$ref"
umoci insert "${rootless[@]}" --image "$ref" --history.created "$CREATED" --history.created_by "hack/image/rootfs.sh" \
  --history.comment "aviary $VERSION ($REVISION)" "$rootfs" /
arch="$(dpkg --print-architecture)"
umoci config --image "$ref" --created "$CREATED" --author "$SOURCE_URL" \
  --architecture "$arch" --os linux \
  --config.user 65532:65532 --config.workingdir / \
  --config.entrypoint /usr/local/bin/aviary --clear config.cmd \
  --config.exposedports 8080/tcp --config.exposedports 8090/tcp \
  --config.label "org.opencontainers.image.source=$SOURCE_URL" \
  --config.label "org.opencontainers.image.revision=$REVISION" \
  --config.label "org.opencontainers.image.version=$VERSION" \
  --config.label "org.opencontainers.image.created=$CREATED" \
  --config.label "org.opencontainers.image.title=aviary" \
  --config.label "org.opencontainers.image.description=Aviary: progressive delivery for Kubernetes (canary and blue-green Rollouts with analysis)" \
  --config.label "org.opencontainers.image.licenses=Apache-2.0" \
  --config.label "org.opencontainers.image.ref.name=$VERSION" \
  --manifest.annotation "org.opencontainers.image.source=$SOURCE_URL" \
  --manifest.annotation "org.opencontainers.image.revision=$REVISION" \
  --manifest.annotation "org.opencontainers.image.version=$VERSION" \
  --manifest.annotation "org.opencontainers.image.created=$CREATED" \
  --no-history
umoci gc --layout "$layout"

python3 - "$layout" "$VERSION" "$IMAGE" <<'PY'
import json, os, sys
layout, tag, image = sys.argv[1:]
index = json.load(open(os.path.join(layout, "index.json")))
m = next(m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
digest = m["digest"]
def blob(d):
    return os.path.join(layout, "blobs", *d.split(":"))
manifest = json.load(open(blob(digest)))
compressed = m["size"] + manifest["config"]["size"] + sum(l["size"] for l in manifest["layers"])
print(f"image: {image}:{tag}  (OCI layout {layout}:{tag})")
print(f"digest: {digest}")
print(f"size: {compressed / 1e6:.1f} MB compressed, {len(manifest['layers'])} layer(s)")
with open(os.path.join(layout, "..", "digest"), "w") as f:
    f.write(digest + "\n")
PY
