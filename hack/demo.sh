#!/usr/bin/env bash
# `make demo`: the whole job on a fresh machine. Brings up the local cluster and Prometheus,
# starts the controller and a traffic simulator (requests split by the VirtualService's weights,
# measured by Prometheus), then walks a good canary to 100 % with its analysis passing, and a
# bad one (20 % errors) to an automatic rollback — printing steps, weights and measured values.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
cd "$ROOT"
NS=aviary-demo
LOGS="$ROOT/target/demo"
mkdir -p "$LOGS"
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

bash "$HERE/deps.sh"
say "bringing up the local cluster (a cold first build of Kubernetes takes ~15 minutes)"
bash "$HERE/cluster.sh" up
eval "$(bash "$HERE/cluster.sh" env)"
say "building Aviary"
cargo build --quiet -p aviary -p aviary-trafficsim --bin aviary --bin aviary-trafficsim --bin crdgen
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"

say "installing CRDs (Aviary's and Istio's VirtualService)"
kubectl apply --server-side -f crds/ >/dev/null
kubectl apply --server-side -f "$AVIARY_SHARED/fixtures/crds/istio-virtualservice.yaml" >/dev/null
kubectl wait --for=condition=Established crd/rollouts.aviary.dev crd/virtualservices.networking.istio.io >/dev/null
# A previous demo's Rollouts keep their route-cleanup finalizer once its controller is gone:
# release them, or the namespace would never finish terminating.
kubectl -n "$NS" get rollouts.aviary.dev -o name 2>/dev/null |
  xargs -r -I{} kubectl -n "$NS" patch {} --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null
kubectl delete namespace "$NS" --ignore-not-found --wait=true >/dev/null
kubectl create namespace "$NS" >/dev/null
kubectl -n "$NS" apply -f examples/demo/app.yaml -f examples/demo/templates.yaml >/dev/null

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
"$BIN/aviary" --namespace "$NS" --prometheus-address "$AVIARY_PROMETHEUS_URL" \
  --metrics-addr 127.0.0.1:0 --health-addr 127.0.0.1:0 >"$LOGS/controller.log" 2>&1 &
pids+=($!)
"$BIN/aviary-trafficsim" -n "$NS" --rollout bff --rps 300 --image "ghcr.io/platform/bff:3.0.0-bad=0.2" >"$LOGS/trafficsim.log" 2>&1 &
pids+=($!)
echo "controller log: $LOGS/controller.log"

deploy() { sed "s#IMAGE#$1#" examples/demo/rollout.yaml | kubectl -n "$NS" apply --server-side -f - >/dev/null; }

# Prints a line whenever phase, step, weight or the latest measurements change; returns when
# the rollout reaches $1 (Healthy or Degraded) on the current template, or after $2 seconds.
watch_until() {
  local want="$1" limit="$2" start=$SECONDS last=""
  while [ $((SECONDS - start)) -lt "$limit" ]; do
    local line
    line="$(python3 - "$NS" <<'PY'
import json, subprocess, sys
ns = sys.argv[1]
def get(*a):
    out = subprocess.run(["kubectl", "-n", ns, "get", *a, "-o", "json"], capture_output=True, text=True).stdout
    return json.loads(out) if out else {}
ro = get("rollout", "bff"); st = ro.get("status", {})
vs = get("virtualservice", "bff")
w = next((d.get("weight", 0) for d in vs.get("spec", {}).get("http", [{}])[0].get("route", []) if d["destination"]["host"] == "bff-canary"), 0)
steps = len(ro.get("spec", {}).get("strategy", {}).get("canary", {}).get("steps", []))
runs = sorted(get("analysisruns").get("items", []), key=lambda r: r["metadata"]["creationTimestamp"])
meas = ""
if runs:
    r = runs[-1]; rs = r.get("status", {})
    vals = []
    for m in rs.get("metricResults", []):
        last = (m.get("measurements") or [{}])[-1]
        vals.append(f'{m["name"]}={last.get("value", "-")}')
    meas = f' | analysis {r["metadata"]["name"].split("-")[-1]} {rs.get("phase", "Pending")}: ' + " ".join(vals)
gen_ok = st.get("observedGeneration") == ro.get("metadata", {}).get("generation")
print(f'{st.get("phase", "?")}{"" if gen_ok else "*"} | step {st.get("currentStepIndex", 0)}/{steps} | canary weight {w}%{meas} | {st.get("message") or ""}')
PY
)"
    if [ "$line" != "$last" ]; then printf '  [%3ds] %s\n' $((SECONDS - start)) "$line"; last="$line"; fi
    case "$line" in "$want |"*) return 0 ;; esac
    sleep 0.5
  done
  echo "  (gave up waiting for $want after ${limit}s)"; return 1
}

say "deploying bff 1.0.0 (first deploy: straight to stable)"
deploy ghcr.io/platform/bff:1.0.0
watch_until Healthy 120

say "updating to bff 2.0.0 — a good release: the canary walks 10 → 50 → 100 with its analysis passing"
t0=$SECONDS
deploy ghcr.io/platform/bff:2.0.0
watch_until Healthy 240
good=$((SECONDS - t0))

say "updating to bff 3.0.0-bad — 20 % of its requests fail: the analysis catches it and rolls back"
t0=$SECONDS
deploy ghcr.io/platform/bff:3.0.0-bad
watch_until Degraded 240
bad=$((SECONDS - t0))

say "summary"
kubectl -n "$NS" get rollout.aviary.dev bff
echo
kubectl -n "$NS" get analysisruns
echo
echo "good release promoted in ${good}s; bad release rolled back in ${bad}s."
echo "Why it was rolled back:"
kubectl -n "$NS" get rollout.aviary.dev bff -o jsonpath='{.status.message}{"\n"}'
echo
echo "Recent events:"
kubectl -n "$NS" get events --field-selector involvedObject.name=bff --sort-by=.metadata.creationTimestamp 2>/dev/null | tail -n 12 || true
echo
echo "The cluster stays up: eval \"\$(hack/cluster.sh env)\" to use it, 'make cluster-down' to stop it."
