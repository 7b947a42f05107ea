#!/usr/bin/env python3
"""What one write costs the local API server, in CPU (docs/benchmarks.md, "What one write costs").

    eval "$(hack/cluster.sh env)"      # a cluster from hack/cluster.sh up (AVIARY_CLUSTER_DIR)
    python3 hack/write-cost.py KIND [OBJECTS] [WRITES]

Creates OBJECTS objects (default 100) in the namespace `write-cost`, then sends WRITES
(default 1000) merge or JSON patches one after another over one connection and prints the
kube-apiserver's CPU seconds (utime + stime from /proc) per write. KIND:

  rollout         a Rollout status patch (phase, message, counters, canary weights, four
                  conditions: what the controller writes), under crds/rollouts.yaml as it is
  rollout-small   the same with only `status.message` changing
  rollout-meta    an annotation patch of the Rollout itself (not its status)
  nocel           the status patch, with the CRD's x-kubernetes-validations removed
  nocel-notpl     ... and spec.template's schema replaced by preserve-unknown-fields
  bare            the status patch under a CRD with no schema (spec and status preserved)
  bare-small      the same with only `status.message` changing
  virtualservice  the controller's weight patch (JSON patch with a test) of an Istio
                  VirtualService, under ../shared/fixtures/crds as they are
  configmap       a ConfigMap data patch (a built-in type, for scale)

The Rollout variants are served under groups of their own (`<kind>.aviary.dev`), so no
controller acts on them. Nothing else should run on the cluster; start a fresh one per kind
for figures that compare (the API server's heap grows with every CRD and object). Needs PyYAML.
"""
import copy
import http.client
import json
import os
import ssl
import subprocess
import sys
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("AVIARY_SHARED", os.path.join(ROOT, "..", "shared"))
STATE = os.environ["AVIARY_CLUSTER_DIR"]
NS = "write-cost"
NOW = "2026-01-01T00:00:00Z"


def settings():
    ports = dict(line.strip().split("=", 1) for line in open(f"{STATE}/ports.env") if "=" in line)
    token = next(line.split(",")[0] for line in open(f"{STATE}/tokens.csv") if line.startswith("admin-token,"))
    pid = int(open(f"{STATE}/pids/kube-apiserver.pid").read())
    return int(ports["API_PORT"].strip('"')), token, pid


PORT, TOKEN, PID = settings()
CONN = http.client.HTTPSConnection("127.0.0.1", PORT, context=ssl._create_unverified_context())


def request(method, path, body=None, ctype="application/json"):
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": ctype}
    CONN.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    resp = CONN.getresponse()
    data = resp.read()
    if resp.status >= 300:
        raise RuntimeError(f"{method} {path}: {resp.status} {data[:300]!r}")
    return json.loads(data)


def apiserver_cpu():
    fields = open(f"/proc/{PID}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def strip_rules(node):
    if isinstance(node, dict):
        node.pop("x-kubernetes-validations", None)
        for v in node.values():
            strip_rules(v)
    elif isinstance(node, list):
        for v in node:
            strip_rules(v)


def kubectl_apply(manifest):
    subprocess.run(["kubectl", "apply", "--server-side", "-f", "-"], input=manifest.encode(), check=True,
                   capture_output=True)


def install_rollout_crd(kind):
    """The Rollout CRD, changed as `kind` says, under the group `<kind>.aviary.dev`."""
    group = f"{kind}.aviary.dev"
    crd = copy.deepcopy(yaml.safe_load(open(os.path.join(ROOT, "crds", "rollouts.yaml"))))
    crd["metadata"]["name"] = f"rollouts.{group}"
    crd["spec"]["group"] = group
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    if kind.startswith("bare"):
        preserve = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        version["schema"]["openAPIV3Schema"] = {"type": "object",
                                                "properties": {"spec": preserve, "status": preserve}}
        version.pop("additionalPrinterColumns", None)
        version.pop("selectableFields", None)
    if kind.startswith("nocel"):
        strip_rules(schema)
    if kind == "nocel-notpl":
        schema["properties"]["spec"]["properties"]["template"] = {
            "type": "object", "x-kubernetes-preserve-unknown-fields": True}
    kubectl_apply(json.dumps(crd))
    path = f"/apis/{group}/v1alpha1/namespaces/{NS}/rollouts"
    wait_served(path)
    return path, f"{group}/v1alpha1"


def wait_served(path):
    """Polls a new CRD's collection until the API server serves it (Established comes first)."""
    deadline = time.time() + 60
    while True:
        try:
            request("GET", path)
            return
        except RuntimeError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def rollout(api_version, name):
    return {"apiVersion": api_version, "kind": "Rollout", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": "app:1"}]}},
                     "strategy": {"canary": {
                         "steps": [{"setWeight": 20}, {"pause": {}}],
                         "canaryService": f"{name}-canary", "stableService": f"{name}-stable",
                         "trafficRouting": {"istio": {"virtualService": {"name": name, "routes": ["primary"]}}}}}}}


def rollout_status(name, k):
    def cond(kind, reason):
        return {"type": kind, "status": "True", "reason": reason, "message": f"{reason} {k}",
                "lastTransitionTime": NOW, "lastUpdateTime": NOW}
    return {"status": {
        "phase": "Progressing", "message": f"step {k}", "observedGeneration": 1,
        "currentPodHash": "6d4cf56db6", "stableRS": "7c5ddbdf54", "replicas": 1, "updatedReplicas": 1,
        "readyReplicas": 1, "availableReplicas": k % 2, "currentStepIndex": k % 2,
        "canary": {"weights": {
            "canary": {"weight": 20, "podTemplateHash": "6d4cf56db6", "serviceName": f"{name}-canary"},
            "stable": {"weight": 80, "podTemplateHash": "7c5ddbdf54", "serviceName": f"{name}-stable"}}},
        "conditions": [cond("Available", "AvailableReason"), cond("Progressing", "ReplicaSetUpdated"),
                       cond("Healthy", "RolloutHealthy"), cond("Paused", "CanaryPauseStep")]}}


def plan(kind):
    """(collection path, object for name, (sub-path, content type, patch) for name and k)."""
    merge = "application/merge-patch+json"
    if kind == "configmap":
        return (f"/api/v1/namespaces/{NS}/configmaps",
                lambda n: {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n}, "data": {"a": "0"}},
                lambda n, k: ("", merge, {"data": {"a": str(k)}}))
    if kind == "virtualservice":
        kubectl_apply(open(os.path.join(SHARED, "fixtures", "crds", "istio-virtualservice.yaml")).read())
        path = f"/apis/networking.istio.io/v1/namespaces/{NS}/virtualservices"
        wait_served(path)

        def vs(n):
            route = [{"destination": {"host": f"{n}-stable"}, "weight": 100},
                     {"destination": {"host": f"{n}-canary"}, "weight": 0}]
            return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": n},
                    "spec": {"hosts": [n], "http": [{"name": "primary", "route": route}]}}

        def weight(n, k):
            w = 20 if k % 2 else 0
            return ("", "application/json-patch+json", [
                {"op": "test", "path": "/spec/http/0/route/0/destination/host", "value": f"{n}-stable"},
                {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 100 - w},
                {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": w}])
        return path, vs, weight
    if kind not in ("rollout", "rollout-small", "rollout-meta", "nocel", "nocel-notpl", "bare", "bare-small"):
        sys.exit(f"unknown kind {kind}: see the header of {sys.argv[0]}")
    path, api_version = install_rollout_crd(kind)
    if kind.endswith("small"):
        patch = lambda n, k: ("/status", merge, {"status": {"message": f"step {k}"}})  # noqa: E731
    elif kind.endswith("meta"):
        patch = lambda n, k: ("", merge, {"metadata": {"annotations": {"a": str(k)}}})  # noqa: E731
    else:
        patch = lambda n, k: ("/status", merge, rollout_status(n, k))  # noqa: E731
    return path, lambda n: rollout(api_version, n), patch


def main():
    kind = sys.argv[1] if len(sys.argv) > 1 else sys.exit(__doc__)
    objects = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    writes = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    try:
        request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    except RuntimeError as e:
        if " 409 " not in str(e):
            raise
    path, make, patch = plan(kind)
    names = [f"o{i}" for i in range(objects)]
    for n in names:
        request("POST", path, make(n))

    def write(n, k):
        sub, ctype, body = patch(n, k)
        request("PATCH", f"{path}/{n}{sub}", body, ctype)

    for n in names[:50]:  # warm-up: first writes add managed fields and fill caches
        write(n, 0)
    cpu0, t0 = apiserver_cpu(), time.time()
    for k in range(writes):
        write(names[k % objects], k + 1)
    cpu, wall = apiserver_cpu() - cpu0, time.time() - t0
    print(f"{kind}: {writes} writes over {objects} objects: kube-apiserver CPU {1000 * cpu / writes:.1f} ms "
          f"per write (wall {1000 * wall / writes:.1f} ms)")


if __name__ == "__main__":
    main()
