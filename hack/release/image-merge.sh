#!/usr/bin/env bash
# The release image's last build step: one manifest list, $IMAGE:$VERSION, from the per-arch
# images the image jobs pushed by digest (each an index with its SBOM and provenance), then a
# check that the list holds linux/amd64 and linux/arm64. Prints `digest=sha256:…` (the list's)
# for $GITHUB_OUTPUT.
# Usage: hack/release/image-merge.sh DIGESTS_DIR    (one empty file per pushed digest, named by its
# hex, as the image jobs upload them). DOCKER overrides the docker command (the dry run fakes it).
set -euo pipefail
dir="${1:?usage: image-merge.sh DIGESTS_DIR}"
# shellcheck source=hack/release/vars.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/vars.sh"
docker="${DOCKER:-docker}"

sources=()
for f in "$dir"/*; do
  hex="$(basename "$f")"
  [[ "$hex" =~ ^[0-9a-f]{64}$ ]] || { echo "image-merge: $f is not named by a sha256 digest" >&2; exit 1; }
  sources+=("$IMAGE@sha256:$hex")
done
[ ${#sources[@]} -eq 2 ] || { echo "image-merge: expected 2 per-arch digests in $dir, found ${#sources[@]}" >&2; exit 1; }

annotations=()
for kv in "source=$SOURCE_URL" "revision=$REVISION" "version=$VERSION" "created=$CREATED"; do
  annotations+=(--annotation "index:org.opencontainers.image.$kv")
done
echo "image-merge: $IMAGE:$VERSION from ${sources[*]}" >&2
$docker buildx imagetools create --tag "$IMAGE:$VERSION" "${annotations[@]}" "${sources[@]}" >&2
manifest="$($docker buildx imagetools inspect "$IMAGE:$VERSION" --format '{{json .Manifest}}')"
python3 - "$manifest" <<'PY'
import json, sys
m = json.loads(sys.argv[1])
platforms = {f"{p['platform']['os']}/{p['platform']['architecture']}" for p in m.get("manifests", []) if "platform" in p}
missing = {"linux/amd64", "linux/arm64"} - platforms
if missing:
    sys.exit(f"image-merge: the manifest list lacks {sorted(missing)} (has {sorted(platforms)})")
print("digest=" + m["digest"])
PY
