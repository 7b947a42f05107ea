#!/usr/bin/env bash
# `make demo`: brings up the local cluster and Prometheus and shows how to use them.
# (The canary walk-through is added once the controller exists.)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
bash "$HERE/deps.sh"
bash "$HERE/cluster.sh" up
eval "$(bash "$HERE/cluster.sh" env)"
echo
echo "The local cluster is up:"
kubectl get nodes -o wide
echo
echo "Prometheus: $AVIARY_PROMETHEUS_URL"
echo "Use it from your shell with:   eval \"\$(hack/cluster.sh env)\""
echo "Stop it with:                  make cluster-down"
