#!/usr/bin/env bash
# The GitHub release's notes: what was published and how to install and verify it. The workflow
# appends GitHub's generated change list.
# Usage: hack/release/release-notes.sh DIGEST     (the image's manifest-list digest, sha256:…)
set -euo pipefail
digest="${1:?usage: release-notes.sh DIGEST}"
# shellcheck source=hack/release/vars.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/vars.sh"
[[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || { echo "release-notes: DIGEST must be sha256:<64 hex>, not $digest" >&2; exit 2; }
download="$SOURCE_URL/releases/download/v$VERSION"
cat <<MD
## Aviary $VERSION

**Image** (linux/amd64, linux/arm64; SBOM and provenance attached; signed keyless with cosign):
\`$IMAGE:$VERSION@$digest\`

\`\`\`bash
cosign verify $IMAGE@$digest \\
  --certificate-identity $SOURCE_URL/.github/workflows/release.yml@refs/tags/v$VERSION \\
  --certificate-oidc-issuer https://token.actions.githubusercontent.com
\`\`\`

**Install** with Helm (the chart is an OCI artifact), or without it:

\`\`\`bash
helm install aviary oci://ghcr.io/$OWNER/charts/aviary --version $VERSION --namespace aviary-system --create-namespace
kubectl apply --server-side -f $download/install.yaml
\`\`\`

**kubectl plugin** (linux and darwin, amd64 and arm64): the \`kubectl-aviary_${VERSION}_<os>_<arch>.tar.gz\` assets, or with krew:

\`\`\`bash
kubectl krew install --manifest-url $download/aviary.yaml
\`\`\`

Check downloads against \`checksums.txt\`: \`sha256sum --ignore-missing -c checksums.txt\`.
MD
