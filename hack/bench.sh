#!/usr/bin/env bash
# `make bench`: footprint and reaction benchmark of the controller against a local cluster of its
# own (docs/benchmarks.md). Brings up a cluster in its own state dir (not the shared test
# cluster), builds the controller and the harness in release, grants the controller's RBAC to the
# `aviary-operator` user whose every request the API server's audit log records, and runs
# `aviary-bench`. Results: a table on stdout and target/bench/results.json.
#
#   SIZES=100,1000        rollout counts (default 100,1000: about 10 minutes here; 10000 alone takes
#                         about 1 h 50 min and 5 GB of RAM for the API server)
#   ROUTING=istio|basic   canary with an Istio VirtualService per rollout (default), or basic
#   SOAK=1                repeated update waves after the measurements (SOAK_WAVES, default 5)
#   IDLE_SECONDS=60       idle window
#   CONTROLLER_CMD=…      another controller to measure (default: the release aviary binary)
#   CONTROLLER_PID=…      or a running one
#   API_VERSION=…         apiVersion of the Rollouts (default aviary.dev/v1alpha1)
#   AVIARY_CLUSTER_DIR=…  cluster state dir (default /dev/shm/aviary-bench); KEEP_CLUSTER=1 keeps it up
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
cd "$ROOT"
export AVIARY_CLUSTER_DIR="${AVIARY_CLUSTER_DIR:-/dev/shm/aviary-bench}"
SIZES="${SIZES:-100,1000}"
ROUTING="${ROUTING:-istio}"
SOAK_WAVES="${SOAK_WAVES:-5}"
[ -n "${SOAK:-}" ] && [ "${SOAK}" != 0 ] || SOAK_WAVES=0
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
SHARED="${AVIARY_SHARED:-$ROOT/../shared}"

echo "==> release build of the controller and the harness"
cargo build --release --locked -p aviary -p aviary-bench --bin aviary --bin aviary-bench

echo "==> local cluster in $AVIARY_CLUSTER_DIR"
started_cluster=
if ! [[ "$(bash "$HERE/cluster.sh" status 2>/dev/null)" == *"kube-apiserver: running"* ]]; then
  bash "$HERE/cluster.sh" up
  started_cluster=1
fi
cleanup() { [ -z "$started_cluster" ] || [ -n "${KEEP_CLUSTER:-}" ] || bash "$HERE/cluster.sh" down || true; }
trap cleanup EXIT
eval "$(bash "$HERE/cluster.sh" env)"

echo "==> CRDs and the controller's RBAC"
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
kubectl apply --server-side --force-conflicts \
  -f "$SHARED/fixtures/crds/istio-virtualservice.yaml" -f "$SHARED/fixtures/crds/istio-destinationrule.yaml" >/dev/null
kubectl wait --for=condition=Established --timeout=60s \
  crd/rollouts.aviary.dev crd/analysisruns.aviary.dev crd/virtualservices.networking.istio.io >/dev/null
kubectl apply --server-side --force-conflicts -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: aviary-bench-controller}
rules:
  - {apiGroups: [aviary.dev], resources: [rollouts, analysisruns], verbs: [get, list, watch, create, update, patch, delete]}
  - {apiGroups: [aviary.dev], resources: [rollouts/status, analysisruns/status], verbs: [get, update, patch]}
  - {apiGroups: [aviary.dev], resources: [rollouts/finalizers], verbs: [update]}
  - {apiGroups: [aviary.dev], resources: [analysistemplates, clusteranalysistemplates], verbs: [get, list, watch]}
  - {apiGroups: [apps], resources: [replicasets], verbs: [get, list, watch, create, update, patch, delete]}
  - {apiGroups: [""], resources: [services], verbs: [get, list, watch, patch]}
  - {apiGroups: [""], resources: [pods], verbs: [list]}
  - {apiGroups: [""], resources: [pods/eviction], verbs: [create]}
  - {apiGroups: [""], resources: [secrets], verbs: [get]}
  - {apiGroups: [networking.k8s.io], resources: [ingresses], verbs: [get, list, watch, create, patch]}
  - {apiGroups: [networking.istio.io], resources: [virtualservices, destinationrules], verbs: [get, list, watch, patch]}
  - {apiGroups: [gateway.networking.k8s.io], resources: [httproutes], verbs: [get, list, watch, patch]}
  - {apiGroups: ["", events.k8s.io], resources: [events], verbs: [create, patch]}
  - {apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get, create, update]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: aviary-bench-controller}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: aviary-bench-controller}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: aviary-operator}]
YAML
for _ in $(seq 1 50); do
  [ "$(kubectl auth can-i list rollouts.aviary.dev --as aviary-operator)" = yes ] && break; sleep 0.2
done

mkdir -p "${OUT_DIR:-target/bench}"
CONTROLLER_ARGS=()
if [ -n "${CONTROLLER_PID:-}" ]; then
  CONTROLLER_ARGS=(--controller-pid "$CONTROLLER_PID")
else
  CONTROLLER_ARGS=(--controller-cmd "${CONTROLLER_CMD:-$TARGET/release/aviary --kubeconfig $AVIARY_OPERATOR_KUBECONFIG --log-level warn}")
fi
# A cluster this script tears down needs no namespace cleanup after the last size (at 10,000
# rollouts that deletion takes longer than the measurements).
CLEAN_AFTER=true
if [ -n "$started_cluster" ] && [ -z "${KEEP_CLUSTER:-}" ]; then CLEAN_AFTER=false; fi
echo "==> aviary-bench SIZES=$SIZES ROUTING=$ROUTING SOAK_WAVES=$SOAK_WAVES"
"$TARGET/release/aviary-bench" --sizes "$SIZES" --routing "$ROUTING" --soak-waves "$SOAK_WAVES" \
  --idle-seconds "${IDLE_SECONDS:-60}" --api-version "${API_VERSION:-aviary.dev/v1alpha1}" \
  --controller-log "${OUT_DIR:-target/bench}/controller.log" --out "${OUT_DIR:-target/bench}/results.json" "${CONTROLLER_ARGS[@]}" \
  --clean-after "$CLEAN_AFTER" ${BENCH_ARGS:-}
