#!/usr/bin/env bash
# Writes OUT, the release's install.yaml for users without Helm: the Namespace aviary-system, then
# the chart rendered with its defaults (CRDs, ServiceAccount, RBAC, Service, Deployment) at the
# released image, ghcr.io/$OWNER/$REPO:$VERSION, or pinned as $VERSION@DIGEST when one is given.
# Apply with `kubectl apply --server-side -f install.yaml` (the Rollout CRD is too large for the
# client-side last-applied annotation).
# Usage: hack/release/install-yaml.sh OUT [DIGEST]     DIGEST: sha256:<64 hex>
# helm: from PATH, else the build cache (hack/build-bins.sh helm).
set -euo pipefail
out="${1:?usage: install-yaml.sh OUT [DIGEST]}"
digest="${2:-}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=hack/release/vars.sh
. "$root/hack/release/vars.sh"
# shellcheck source=hack/versions.sh
. "$root/hack/versions.sh"
helm="$(command -v helm || echo "$CACHE/helm-$HELM_VERSION/helm")"
[ -x "$helm" ] || { echo "install-yaml: helm not on PATH nor at $helm (hack/build-bins.sh helm)" >&2; exit 1; }
namespace=aviary-system
tag="$VERSION"
if [ -n "$digest" ]; then
  [[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || { echo "install-yaml: DIGEST must be sha256:<64 hex>, not $digest" >&2; exit 2; }
  tag="$VERSION@$digest"
fi

tmp="$out.tmp"
trap 'rm -f "$tmp"' EXIT
{
  cat <<YAML
# Aviary $VERSION ($SOURCE_URL): the CRDs, RBAC and controller, for clusters without Helm.
# Image: $IMAGE:$tag
#   kubectl apply --server-side -f install.yaml
# Rendered from charts/aviary with its default values (helm template aviary --namespace $namespace).
---
apiVersion: v1
kind: Namespace
metadata:
  name: $namespace
  labels:
    app.kubernetes.io/part-of: aviary
YAML
  "$helm" template aviary "$root/charts/aviary" --namespace "$namespace" \
    --set "image.repository=$IMAGE" --set "image.tag=$tag"
} > "$tmp"
mv "$tmp" "$out"
echo "$out"
