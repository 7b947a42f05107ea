#!/usr/bin/env python3
"""Least privilege, proven: every grant of the chart's rule files was used by the controller.

Reads the API server's audit log of a full `make test` run (every request of the controller's
identity, `aviary-operator`, at Metadata level: hack/cluster.sh) and the chart's rule files
(charts/aviary/files/rbac/*.yaml, the single source of the controller's RBAC), and fails on any
granted (verb, resource) the controller never used, unless it is listed in NEEDED_UNSEEN with
the reason no request shows it. Prints what each grant was used for.

    python3 hack/rbac-usage.py /dev/shm/aviary-cluster/audit.log
"""

import glob
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULE_FILES = ["controller.yaml", "leader-election.yaml", "analysis-secrets.yaml", "job-metrics.yaml"]
USER = "aviary-operator"

# Grants that authorize something other than a request of their own.
NEEDED_UNSEEN = {
    ("update", "aviary.dev", "rollouts/finalizers"): "authorizes setting blockOwnerDeletion on the "
    "NGINX canary Ingress's owner reference (OwnerReferencesPermissionEnforcement, OpenShift); "
    "the API server checks it, no request is made with it",
    ("create", "networking.k8s.io", "ingresses"): "the NGINX canary Ingress is created by a "
    "server-side apply, a patch request; the API server authorizes the create it implies",
    ("get", "apps", "replicasets"): "a ReplicaSet create that meets a 409 reads the one in the "
    "way (act.rs), a race the e2e does not provoke (covered by a mock-server test)",
    ("get", "aviary.dev", "clusteranalysistemplates"): "read when a Rollout names a "
    "ClusterAnalysisTemplate; no e2e does yet (covered by unit and mock-server tests)",
}


def flow_list(text):
    """`[a, b]` or `["", x]` -> list of strings."""
    inner = text.strip()
    if not (inner.startswith("[") and inner.endswith("]")):
        raise ValueError(f"expected a [flow, list]: {text!r}")
    items = [i.strip() for i in inner[1:-1].split(",") if i.strip()]
    return [i.strip('"').strip("'") for i in items]


def rules(path):
    """The rules of one file: list of (apiGroups, resources, verbs). The files use one shape:
    `- apiGroups: [...]` then `resources: [...]` and `verbs: [...]`, comments with `#`."""
    out, cur = [], None
    for raw in open(path, encoding="utf-8"):
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        m = re.match(r"^\s*-?\s*(apiGroups|resources|verbs):\s*(\[.*\])\s*$", line)
        if not m:
            raise ValueError(f"{path}: cannot read {raw!r}")
        key, value = m.group(1), flow_list(m.group(2))
        if line.lstrip().startswith("-"):
            cur = {}
            out.append(cur)
        cur[key] = value
    return [(r["apiGroups"], r["resources"], r["verbs"]) for r in out]


def grants():
    found = {}
    for name in RULE_FILES:
        path = os.path.join(ROOT, "charts/aviary/files/rbac", name)
        for groups, resources, verbs in rules(path):
            for g in groups:
                for r in resources:
                    for v in verbs:
                        found[(v, g, r)] = name
    return found


def used(log):
    """Requests of the controller's identity: those served (a use of the grant) and those the
    API server refused for want of one (a 403 in production)."""
    counts, refused = {}, {}
    files = sorted(glob.glob(os.path.join(os.path.dirname(log), "audit*.log")))
    for path in files:
        for line in open(path, encoding="utf-8"):
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("user", {}).get("username") != USER:
                continue
            o = e.get("objectRef") or {}
            resource = o.get("resource", "")
            if o.get("subresource"):
                resource += "/" + o["subresource"]
            key = (e.get("verb", ""), o.get("apiGroup", ""), resource)
            # Refused by the authorizer (not a 403 for another cause, such as a create in a
            # namespace being deleted).
            decision = (e.get("annotations") or {}).get("authorization.k8s.io/decision")
            if decision == "forbid":
                refused[key] = refused.get(key, 0) + 1
                continue
            counts[key] = counts.get(key, 0) + 1
    return counts, refused


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    granted = grants()
    counts, refused = used(sys.argv[1])
    unused = []
    for key in sorted(granted):
        n = counts.get(key, 0)
        verb, group, resource = key
        label = f"{verb} {resource}.{group}" if group else f"{verb} {resource}"
        if n:
            print(f"  {label:55} {n:>7} requests")
        elif key in NEEDED_UNSEEN:
            print(f"  {label:55}       - ({NEEDED_UNSEEN[key]})")
        else:
            print(f"  {label:55}       0   UNUSED ({granted[key]})")
            unused.append(label)
    # Requests refused for want of a grant are 403s in production: bugs too.
    for (verb, group, resource), n in sorted(refused.items()):
        print(f"  REFUSED (no grant): {verb} {resource}.{group} ({n} requests)")
    if refused:
        print(f"\n{len(refused)} kind(s) of request refused: grant them in charts/aviary/files/rbac/")
        sys.exit(1)
    if unused:
        print(
            f"\n{len(unused)} grant(s) never used in this run: remove them from "
            "charts/aviary/files/rbac/, or say in hack/rbac-usage.py why no request shows them"
        )
        sys.exit(1)
    print(f"\nevery one of {len(granted)} grants was used")


if __name__ == "__main__":
    main()
