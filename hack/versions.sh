# Versions of the local test cluster's components (sourced by the hack/ scripts).
# k8s 1.34 matches the k8s-openapi feature `v1_34` that Aviary compiles with.
K8S_VERSION="${K8S_VERSION:-v1.34.4}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
HELM_VERSION="${HELM_VERSION:-v3.21.4}"
# Lints the GitHub workflows (hack/release/dry-run.sh).
ACTIONLINT_VERSION="${ACTIONLINT_VERSION:-v1.7.12}"
CACHE="${AVIARY_BIN_CACHE:-$HOME/.cache/aviary}"
# Other projects' own code, as test helpers, cached per hash of their sources: kstatus from
# sigs.k8s.io/cli-utils and Argo CD's Lua VM (gopher-lua) in hack/gitops-tools; Argo Rollouts'
# pod-template hash in hack/argo-tools (a module of its own: it needs k8s.io/api v0.34).
gitops_tools_dir() {
  local hack
  hack="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  echo "$CACHE/gitops-tools-$(cd "$hack" && find gitops-tools argo-tools -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' \) | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-12)"
}
