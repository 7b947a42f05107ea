#!/usr/bin/env bash
# The local test cluster: a real etcd, kube-apiserver, kube-controller-manager and kube-scheduler
# (built from the upstream Go modules by hack/build-bins.sh), KWOK faking nodes so that pods
# become Running and Ready, and a real Prometheus (Debian package) scraping file_sd targets that
# tests write. Everything listens on 127.0.0.1 only, on ports the OS hands out.
#
#   hack/cluster.sh up     build what is missing, start what is not running (idempotent)
#   hack/cluster.sh down   stop the processes this script started (by pid file) and remove state
#   hack/cluster.sh env    print the exports tests and tools need (eval "$(hack/cluster.sh env)")
#   hack/cluster.sh status which components run
#
# Diagnosis (docs/benchmarks.md): AVIARY_APISERVER_PROFILING=true serves the API server's
# /debug/pprof (as admin); AVIARY_AUDIT_REST=Metadata audits every user's requests, not only
# the controller's and Rollout status writes.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=hack/versions.sh
. "$HERE/versions.sh"
SHARED="${AVIARY_SHARED:-$ROOT/../shared}"
BIN="$CACHE/k8s-$K8S_VERSION"
KWOK="$CACHE/kwok-$KWOK_VERSION/kwok"
STATE="${AVIARY_CLUSTER_DIR:-}"
if [ -z "$STATE" ]; then
  # tmpfs keeps etcd fast; fall back to disk when /dev/shm is small (etcd preallocates 64 MB WALs)
  shm_kb="$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2{print $4}')"
  if [ "${shm_kb:-0}" -gt 2000000 ]; then STATE=/dev/shm/aviary-cluster; else STATE="$CACHE/cluster-run"; fi
fi
COMPONENTS="etcd kube-apiserver kube-controller-manager kube-scheduler kwok prometheus"

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

die_component() { # name
  log "FAILED: $1 did not become ready; last lines of $STATE/logs/$1.log:"
  tail -n 30 "$STATE/logs/$1.log" >&2 2>/dev/null || true
  exit 1
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

running() { # name -> 0 when its recorded pid is alive
  local f="$STATE/pids/$1.pid"
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

start() { # name, command...
  local name="$1"; shift
  if running "$name"; then return; fi
  nohup "$@" >"$STATE/logs/$name.log" 2>&1 &
  echo $! >"$STATE/pids/$name.pid"
}

wait_for() { # name, seconds, command...
  local name="$1" secs="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    running "$name" || die_component "$name"
    [ $SECONDS -lt $deadline ] || die_component "$name"
    sleep 0.2
  done
}

ensure_prometheus() {
  command -v prometheus >/dev/null 2>&1 && return
  log "installing Prometheus from Debian's package"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
}

init_state() {
  mkdir -p "$STATE"/{pids,logs,pki,prom/targets,prom/data}
  [ -f "$STATE/ports.env" ] || {
    {
      echo "ETCD_PORT=$(free_port)"; echo "PEER_PORT=$(free_port)"; echo "API_PORT=$(free_port)"
      echo "KCM_PORT=$(free_port)"; echo "SCHED_PORT=$(free_port)"; echo "PROM_PORT=$(free_port)"
    } >"$STATE/ports.env"
  }
  # shellcheck source=/dev/null
  . "$STATE/ports.env"
  [ -f "$STATE/sa.key" ] || {
    openssl genrsa -out "$STATE/sa.key" 2048 2>/dev/null
    openssl rsa -in "$STATE/sa.key" -pubout -out "$STATE/sa.pub" 2>/dev/null
  }
  # token,user,uid,"groups". The controller manager runs all controllers under one identity, which
  # the bootstrap roles don't allow to create pods; hence system:masters, as kwokctl does.
  # `operator` has no rights beyond system:authenticated: tests bind Aviary's real ClusterRole to it.
  cat >"$STATE/tokens.csv" <<EOF
admin-token,admin,uid-admin,"system:masters"
kcm-token,system:kube-controller-manager,uid-kcm,"system:masters"
sched-token,system:kube-scheduler,uid-sched
operator-token,aviary-operator,uid-operator
EOF
  # The API server's own record of every request the controller's identity makes: tests and
  # benchmarks count the controller's reads and writes from it.
  cat >"$STATE/audit-policy.yaml" <<EOF
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    users: ["aviary-operator"]
  # The ServiceAccounts of namespace aviary-scoped: the multi-namespace test's controller
  # (tests/scope.rs), which runs under a ServiceAccount with Roles only.
  - level: Metadata
    userGroups: ["system:serviceaccounts:aviary-scoped"]
  # Everyone's status writes to Rollouts, so a benchmark abort can be lined up with the
  # controller's reaction (the benchmark counts only the controller's user).
  - level: Metadata
    verbs: [patch, update]
    resources: [{group: aviary.dev, resources: [rollouts/status]}]
  - level: ${AVIARY_AUDIT_REST:-None}
EOF
  for id in admin:admin-token kcm:kcm-token sched:sched-token operator:operator-token; do
    kubeconfig "${id#*:}" >"$STATE/${id%%:*}.kubeconfig"
  done
}

kubeconfig() { # token
  cat <<EOF
apiVersion: v1
kind: Config
clusters: [{name: aviary-local, cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: "$STATE/pki/apiserver.crt"}}]
users: [{name: u, user: {token: "$1"}}]
contexts: [{name: aviary-local, context: {cluster: aviary-local, user: u, namespace: default}}]
current-context: aviary-local
EOF
}

kctl() { "$BIN/kubectl" --kubeconfig="$STATE/admin.kubeconfig" "$@"; }

prometheus_config() {
  cat >"$STATE/prom/prometheus.yml" <<EOF
# generated by hack/cluster.sh
global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: aviary-test
    file_sd_configs: [{files: ['$STATE/prom/targets/*.json'], refresh_interval: 1s}]
EOF
}

kwok_config() {
  local f="$SHARED/fixtures/kwok"
  {
    echo "kind: KwokConfiguration"; echo "apiVersion: config.kwok.x-k8s.io/v1alpha1"; # kwok v0.8.0 leaves these at 0 (and refuses to start) unless the config sets them
    echo "options: {podPlayStageParallelism: 16, nodePlayStageParallelism: 4, nodeLeaseParallelism: 4, podsOnNodeSyncParallelism: 2}"
    for s in node-initialize node-heartbeat-with-lease pod-ready pod-complete pod-delete pod-container-running-failed; do
      echo "---"; cat "$f/$s.yaml"
    done
  } >"$STATE/kwok.yaml"
}

fake_nodes() {
  local n
  for n in 0 1; do
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$n
  annotations: {node.alpha.kubernetes.io/ttl: "0", kwok.x-k8s.io/node: fake}
  labels: {kubernetes.io/hostname: kwok-node-$n, kubernetes.io/os: linux, kubernetes.io/arch: amd64, type: kwok}
status:
  allocatable: {cpu: "64", memory: 512Gi, pods: "15000"}
  capacity: {cpu: "64", memory: 512Gi, pods: "15000"}
EOF
  done
}

cmd_up() {
  local t0=$SECONDS
  [ -d "$SHARED/fixtures/kwok" ] || { log "missing $SHARED/fixtures/kwok (set AVIARY_SHARED)"; exit 1; }
  bash "$HERE/build-bins.sh" k8s
  bash "$HERE/build-bins.sh" kwok
  ensure_prometheus
  init_state
  # shellcheck source=/dev/null
  . "$STATE/ports.env"

  start etcd "$BIN/etcd" --name=aviary --data-dir="$STATE/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$PEER_PORT" \
    --initial-cluster="aviary=http://127.0.0.1:$PEER_PORT" \
    --unsafe-no-fsync=true --auto-compaction-retention=1 --quota-backend-bytes=4294967296 --log-level=warn
  wait_for etcd 60 curl -sf "http://127.0.0.1:$ETCD_PORT/health"
  log "etcd ready on 127.0.0.1:$ETCD_PORT"

  start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
    --cert-dir="$STATE/pki" --token-auth-file="$STATE/tokens.csv" --authorization-mode=Node,RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$STATE/sa.pub" --service-account-signing-key-file="$STATE/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 --endpoint-reconciler-type=none --allow-privileged=true \
    --enable-priority-and-fairness=false --max-requests-inflight=0 --max-mutating-requests-inflight=0 \
    --audit-policy-file="$STATE/audit-policy.yaml" --audit-log-path="$STATE/audit.log" --audit-log-format=json \
    --audit-log-maxsize=200 --audit-log-maxbackup=10 \
    --profiling="${AVIARY_APISERVER_PROFILING:-false}"
  wait_for kube-apiserver 120 curl -skf "https://127.0.0.1:$API_PORT/readyz"
  log "kube-apiserver ready on 127.0.0.1:$API_PORT"

  start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig="$STATE/kcm.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
    --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics --leader-elect=false \
    --service-account-private-key-file="$STATE/sa.key" --root-ca-file="$STATE/pki/apiserver.crt" \
    --use-service-account-credentials=false --kube-api-qps=500 --kube-api-burst=1000 \
    --concurrent-replicaset-syncs=20 --concurrent-endpoint-syncs=20 --concurrent-service-endpoint-syncs=20
  start kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$STATE/sched.kubeconfig" --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" \
    --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics --kube-api-qps=500 --kube-api-burst=1000
  kwok_config
  # kwok reads ~/.kwok/kwok.yaml before --config: point HOME elsewhere so a stray one can't interfere
  start kwok env HOME="$STATE" "$KWOK" --kubeconfig="$STATE/admin.kubeconfig" --config="$STATE/kwok.yaml" \
    --manage-all-nodes=true --cidr=10.244.0.0/16 --node-ip=10.0.0.1 --node-lease-duration-seconds=40
  wait_for kube-controller-manager 60 curl -skf "https://127.0.0.1:$KCM_PORT/healthz"
  wait_for kube-scheduler 60 curl -skf "https://127.0.0.1:$SCHED_PORT/healthz"
  log "controller-manager and scheduler ready"

  fake_nodes | kctl apply -f - >/dev/null
  wait_for kwok 60 kctl wait --for=condition=Ready node/kwok-node-0 node/kwok-node-1 --timeout=1s
  wait_for kube-controller-manager 60 kctl -n default get serviceaccount default
  log "kwok nodes Ready; default ServiceAccount exists"

  prometheus_config
  start prometheus prometheus --config.file="$STATE/prom/prometheus.yml" --storage.tsdb.path="$STATE/prom/data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" --storage.tsdb.retention.time=1d \
    --web.enable-remote-write-receiver --web.enable-lifecycle --web.enable-admin-api --log.level=warn
  wait_for prometheus 60 curl -sf "http://127.0.0.1:$PROM_PORT/-/ready"
  log "prometheus ready on 127.0.0.1:$PROM_PORT"
  log "cluster up in $((SECONDS - t0)) s; use: eval \"\$($0 env)\""
}

cmd_env() {
  [ -f "$STATE/ports.env" ] || { echo "no local cluster state in $STATE: run '$0 up' first" >&2; exit 1; }
  # shellcheck source=/dev/null
  . "$STATE/ports.env"
  echo "export KUBECONFIG=$STATE/admin.kubeconfig"
  echo "export AVIARY_OPERATOR_KUBECONFIG=$STATE/operator.kubeconfig"
  echo "export AVIARY_PROMETHEUS_URL=http://127.0.0.1:$PROM_PORT"
  echo "export AVIARY_PROM_TARGETS_DIR=$STATE/prom/targets"
  echo "export AVIARY_AUDIT_LOG=$STATE/audit.log"
  echo "export AVIARY_SHARED=$SHARED"
  echo "export AVIARY_GITOPS_TOOLS=$(gitops_tools_dir)"
  echo "export PATH=$BIN:$CACHE/kwok-$KWOK_VERSION:$CACHE/helm-$HELM_VERSION:\$PATH"
}

cmd_status() {
  local c
  for c in $COMPONENTS; do
    if running "$c"; then echo "$c: running (pid $(cat "$STATE/pids/$c.pid"))"; else echo "$c: stopped"; fi
  done
}

cmd_down() {
  local c pid i
  for c in prometheus kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    running "$c" || continue
    pid="$(cat "$STATE/pids/$c.pid")"
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    log "stopped $c"
  done
  rm -rf "$STATE"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  status) cmd_status ;;
  *) echo "usage: $0 up|down|env|status" >&2; exit 2 ;;
esac
