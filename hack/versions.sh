# Versions of the local test cluster's components (sourced by the hack/ scripts).
# k8s 1.34 matches the k8s-openapi feature `v1_34` that Aviary compiles with.
K8S_VERSION="${K8S_VERSION:-v1.34.4}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
HELM_VERSION="${HELM_VERSION:-v3.21.4}"
CACHE="${AVIARY_BIN_CACHE:-$HOME/.cache/aviary}"
