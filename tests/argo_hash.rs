//! Aviary names a template's ReplicaSet with Argo Rollouts' own `rollouts-pod-template-hash`, so a
//! Rollout taken over from Argo Rollouts keeps its pods. Checked against Argo's code itself:
//! `argo-hash` (hack/argo-tools) runs Argo v1.9.1's `ComputePodTemplateHash` on k8s.io/api v0.34
//! and prints Go's JSON of each template with its hash. Every pod template in the repository's
//! manifests, and a template that sets nearly every field, must hash the same in both — as Argo
//! hashes it, after the API server stored it through Argo's CRD (pruned and defaulted), and as
//! Aviary hashes it after storing it through Aviary's.
#![recursion_limit = "256"]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use aviary::plan::go_json::pod_template_json;
use aviary::plan::pod_template_hash;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use serde_json::{Value, json};

fn tools() -> PathBuf {
    PathBuf::from(std::env::var("AVIARY_GITOPS_TOOLS").expect(
        "AVIARY_GITOPS_TOOLS (from hack/cluster.sh env; build with hack/build-bins.sh gitops)",
    ))
}

/// Runs a tool of hack/argo-tools with `args` on `input`; its standard output.
fn run(tool: &str, args: &[&str], input: &str) -> String {
    support::run_with_input(&tools().join(tool), args, input)
}

/// Every `spec.template` of a Rollout or Deployment in the YAML files under `dir`.
fn templates_in(dir: &Path, found: &mut Vec<(String, Value)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            templates_in(&path, found);
            continue;
        }
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let Ok(v) = <Value as serde::Deserialize>::deserialize(doc) else {
                continue;
            };
            if matches!(v["kind"].as_str(), Some("Rollout" | "Deployment"))
                && v["spec"]["template"]["spec"].is_object()
            {
                found.push((
                    format!("{} {}", path.display(), v["metadata"]["name"]),
                    v["spec"]["template"].clone(),
                ));
            }
        }
    }
}

/// A template that sets nearly every field of a pod, in the forms users write them: quantities
/// that Go rewrites to canonical form, named and numbered ports, HTML and control characters,
/// empty lists and objects, false booleans and zero numbers where Go's `omitempty` drops them.
fn every_field() -> Value {
    let probe = json!({
        "httpGet": {"path": "/healthz?a=1&b=<2>", "port": "http", "scheme": "HTTP",
                    "httpHeaders": [{"name": "X-A", "value": "b"}]},
        "initialDelaySeconds": 0, "periodSeconds": 5, "timeoutSeconds": 1,
        "successThreshold": 1, "failureThreshold": 3, "terminationGracePeriodSeconds": 10
    });
    let container = json!({
        "name": "web", "image": "registry.example/web:1.2.3@sha256:abc",
        "command": ["/bin/web"], "args": ["--flag=\"quoted\"", "line\nbreak", ""],
        "workingDir": "/srv",
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                  {"containerPort": 9090, "hostPort": 0}],
        "envFrom": [{"configMapRef": {"name": "cm", "optional": false}, "prefix": "CM_"}],
        "env": [
            {"name": "PLAIN", "value": "a & b"},
            {"name": "EMPTY", "value": ""},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
        ],
        "resources": {
            "limits": {"cpu": "1000m", "memory": "1024Mi", "ephemeral-storage": "2G", "nvidia.com/gpu": 1},
            "requests": {"cpu": "0.25", "memory": "300000Ki", "hugepages-2Mi": "0"}
        },
        "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}],
        "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": true, "subPath": ""}],
        "livenessProbe": probe,
        "readinessProbe": {"tcpSocket": {"port": 8080}},
        "startupProbe": {"exec": {"command": ["true"]}, "failureThreshold": 30},
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}},
                      "postStart": {"httpGet": {"port": 8080, "path": "/"}}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {"runAsNonRoot": true, "runAsUser": 0, "readOnlyRootFilesystem": false,
                            "allowPrivilegeEscalation": false,
                            "capabilities": {"drop": ["ALL"], "add": []},
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "stdin": false, "tty": false
    });
    json!({
        "metadata": {
            "labels": {"app": "web", "tier": "front<end>", "empty": ""},
            "annotations": {"prometheus.io/scrape": "true", "note": "tab\there \u{1} \u{2028} é ☃"}
        },
        "spec": {
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "pvc", "readOnly": false}},
                {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "0.5Gi"}},
                {"name": "cfg", "configMap": {"name": "cm", "defaultMode": 420,
                                              "items": [{"key": "a", "path": "a.conf", "mode": 0}]}},
                {"name": "proj", "projected": {"sources": [
                    {"serviceAccountToken": {"audience": "x", "expirationSeconds": 3600, "path": "t"}},
                    {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}
                ]}},
                {"name": "host", "hostPath": {"path": "/var/log", "type": ""}},
                {"name": "eph", "ephemeral": {"volumeClaimTemplate": {
                    "metadata": {"labels": {"a": "b"}},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1e3"}}}
                }}}
            ],
            "initContainers": [{"name": "init", "image": "busybox", "restartPolicy": "Always"}],
            "containers": [container, {"name": "side", "image": "side:1", "resources": {}}],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "activeDeadlineSeconds": 0,
            "dnsPolicy": "ClusterFirst",
            "nodeSelector": {"kubernetes.io/os": "linux", "b": "", "a": "z"},
            "serviceAccountName": "web",
            "automountServiceAccountToken": false,
            "hostNetwork": false,
            "shareProcessNamespace": true,
            "securityContext": {"fsGroup": 2000, "runAsGroup": 0, "sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]},
            "imagePullSecrets": [{"name": "regcred"}],
            "hostname": "", "subdomain": "web",
            "affinity": {
                "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}
                ]}},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                     "labelSelector": {"matchLabels": {"app": "web"}}, "matchLabelKeys": ["rollouts-pod-template-hash"]}}
                ]}
            },
            "schedulerName": "default-scheduler",
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 0},
                            {"operator": "Exists"}],
            "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a", "b"]}],
            "priorityClassName": "high", "priority": 0,
            "dnsConfig": {"nameservers": ["1.1.1.1"], "options": [{"name": "ndots", "value": "2"}], "searches": []},
            "readinessGates": [{"conditionType": "example.com/ready"}],
            "runtimeClassName": "runc",
            "enableServiceLinks": false,
            "preemptionPolicy": "Never",
            "overhead": {"cpu": "100m", "memory": "0.1Gi"},
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway",
                                           "labelSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
                                           "minDomains": 2, "nodeAffinityPolicy": "Honor"}],
            "setHostnameAsFQDN": false,
            "os": {"name": "linux"},
            "schedulingGates": [],
            "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "gpu-template"}]
        }
    })
}

/// Quantities as users write them, each in a template of its own.
fn quantities() -> Vec<Value> {
    [
        json!("1"),
        json!("1000m"),
        json!("1500m"),
        json!("0.5"),
        json!(".5"),
        json!("1.5Gi"),
        json!("1024Mi"),
        json!("1536Mi"),
        json!("1e3"),
        json!("1E6"),
        json!("100M"),
        json!("1k"),
        json!("0"),
        json!("0m"),
        json!("0.1m"),
        json!("0.0000000001"),
        json!(" 2 "),
        json!("+3"),
        json!("12345678901234567890"),
        json!("1.000"),
        json!("1Ki"),
        json!("1023"),
        json!("1025Ki"),
        json!("5e-3"),
        json!("9.5Ti"),
        json!(2),
        json!(0.5),
        json!(1024),
    ]
    .into_iter()
    .map(|q| {
        json!({"spec": {"containers": [{"name": "c", "image": "i",
            "resources": {"limits": {"memory": q.clone()}, "requests": {"cpu": q}}}]}})
    })
    .collect()
}

/// Argo Rollouts' Rollout CRD, renamed into a group of its own (`ArgoRollout` in
/// `argo-hash.aviary.test`): the same schema, pruning and defaults, without a second `rollouts`
/// resource that `kubectl get rollouts` would have to choose between.
fn renamed_argo_crd() -> Value {
    let path = support::repo_root().join("tests/data/argo-v1.9.1/rollout-crd.yaml");
    let text = std::fs::read_to_string(&path).expect("Argo's Rollout CRD");
    let mut crd = support::yaml_documents(&text)
        .into_iter()
        .next()
        .expect("one CRD");
    crd["metadata"] = json!({"name": "argorollouts.argo-hash.aviary.test"});
    crd["spec"]["group"] = json!("argo-hash.aviary.test");
    crd["spec"]["names"] = json!({"kind": "ArgoRollout", "listKind": "ArgoRolloutList",
                                  "plural": "argorollouts", "singular": "argorollout"});
    crd
}

/// `template` as the API server stores it through `kind` (server-side dry run of a create).
async fn stored(
    api: &Api<DynamicObject>,
    kind: &str,
    version: &str,
    i: usize,
    template: &Value,
) -> Value {
    let labels = template["metadata"]["labels"].clone();
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": version, "kind": kind,
        "metadata": {"name": format!("t{i}")},
        "spec": {"selector": {"matchLabels": labels}, "template": template,
                 "strategy": {"canary": {}}}
    }))
    .expect("object");
    let created = api
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &obj,
        )
        .await
        .unwrap_or_else(|e| panic!("dry-run {kind} with template {i}: {e}"));
    created.data["spec"]["template"].clone()
}

/// The hash Argo Rollouts gives each template stored through its own CRD equals the one Aviary
/// gives it stored through Aviary's: the templates of `examples/` and `tests/data/`, and one
/// with nearly every field — ports without a protocol, gRPC probes, template metadata Argo's
/// CRD prunes — so a Rollout taken over from Argo names its ReplicaSets as Argo did.
#[tokio::test]
async fn argo_and_aviary_hash_a_template_alike_as_their_crds_store_it() {
    let client = support::client().await;
    let crd_file = std::env::temp_dir().join(format!("argo-hash-crd-{}.yaml", std::process::id()));
    std::fs::write(
        &crd_file,
        serde_yaml::to_string(&renamed_argo_crd()).expect("yaml"),
    )
    .expect("write CRD");
    let ours = support::repo_root().join("crds/rollouts.yaml");
    support::install_crds(&client, &[crd_file.as_path(), ours.as_path()]).await;
    let _ = std::fs::remove_file(&crd_file);
    let ns = support::TestNamespace::new(&client, "argo-hash").await;
    let argo_gvk = GroupVersionKind::gvk("argo-hash.aviary.test", "v1alpha1", "ArgoRollout");
    let (argo_ar, _) = pinned_kind(&client, &argo_gvk)
        .await
        .expect("discover ArgoRollout");
    let argo: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &argo_ar);
    let aviary_gvk = GroupVersionKind::gvk("aviary.dev", "v1alpha1", "Rollout");
    let (aviary_ar, _) = pinned_kind(&client, &aviary_gvk)
        .await
        .expect("discover Rollout");
    let aviary: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &aviary_ar);

    let mut cases = repository_templates();
    let mut every = every_field();
    // What Argo's CRD prunes from template metadata, and Aviary's keeps.
    every["metadata"]["name"] = json!("ignored");
    every["metadata"]["finalizers"] = json!(["example.com/x"]);
    every["spec"]["containers"][0]["readinessProbe"] = json!({"grpc": {"port": 9000}});
    cases.push(("every field".into(), every));

    let mut input = String::new();
    let mut ours = vec![];
    for (i, (name, template)) in cases.iter().enumerate() {
        let in_argo = stored(
            &argo,
            "ArgoRollout",
            "argo-hash.aviary.test/v1alpha1",
            i,
            template,
        )
        .await;
        let in_aviary = stored(&aviary, "Rollout", "aviary.dev/v1alpha1", i, template).await;
        let t: PodTemplateSpec = serde_json::from_value(in_aviary)
            .unwrap_or_else(|e| panic!("{name}: stored template: {e}"));
        // Without and with a collision count, as Argo's controller would hash it.
        for collision in [None, Some(0), Some(1), Some(7), Some(i32::MAX)] {
            input.push_str(&json!({"template": in_argo, "collisionCount": collision}).to_string());
            input.push('\n');
            ours.push((
                format!("{name} (collisionCount {collision:?})"),
                pod_template_hash(&t, collision),
            ));
        }
    }
    let out = run("argo-hash", &[], &input);
    let wrong: Vec<String> = out
        .lines()
        .zip(&ours)
        .filter_map(|(line, (name, hash))| {
            let go: Value = serde_json::from_str(line).expect("one JSON line");
            (go["hash"].as_str() != Some(hash.as_str()))
                .then(|| format!("{name}: Argo {} Aviary {hash}", go["hash"]))
        })
        .collect();
    assert_eq!(out.lines().count(), ours.len(), "one answer per template");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Every pod template of the repository's manifests (`examples/`, `tests/data/`).
fn repository_templates() -> Vec<(String, Value)> {
    let root = support::repo_root();
    let mut cases = vec![];
    // (Not charts/: serde_yaml does not finish on some Helm templates.)
    for dir in ["examples", "tests/data"] {
        templates_in(&root.join(dir), &mut cases);
    }
    cases
}

/// Aviary's Go JSON of each template is byte for byte Go's `json.Marshal` of the same manifest
/// decoded into `corev1.PodTemplateSpec` (what Argo hashes, once its CRD stored it: see the
/// test above).
#[test]
fn go_json_is_what_go_writes_for_every_template() {
    let mut cases = repository_templates();
    assert!(
        cases.len() >= 10,
        "only {} templates found in the repository's manifests",
        cases.len()
    );
    cases.push(("every field".into(), every_field()));
    for (i, q) in quantities().into_iter().enumerate() {
        cases.push((format!("quantity {i}"), q));
    }
    let mut input = String::new();
    for (_, template) in &cases {
        input.push_str(&json!({"template": template}).to_string());
        input.push('\n');
    }
    let out = run("argo-hash", &[], &input);
    let answers: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON line per template"))
        .collect();
    assert_eq!(answers.len(), cases.len(), "one answer per template");
    let mut wrong = vec![];
    for ((name, template), go) in cases.iter().zip(&answers) {
        let t: PodTemplateSpec = serde_json::from_value(template.clone())
            .unwrap_or_else(|e| panic!("{name}: not a pod template: {e}"));
        let ours = pod_template_json(&t).unwrap_or_else(|e| panic!("{name}: {e}"));
        if Some(ours.as_str()) != go["json"].as_str() {
            wrong.push(format!(
                "{name}: JSON differs\n  Go:     {}\n  Aviary: {ours}",
                go["json"]
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} differ from Go:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

/// src/plan/go_json/layout.rs is what the generator writes from k8s.io/api.
#[test]
fn the_go_json_layout_is_generated_from_k8s_io_api() {
    let generated = run("argo-hash", &["layout"], "");
    let path = support::repo_root().join("src/plan/go_json/layout.rs");
    let checked_in = std::fs::read_to_string(&path).expect("layout.rs");
    assert!(
        generated == checked_in,
        "{} is stale: regenerate it with `argo-hash layout > {}` (hack/argo-tools)",
        path.display(),
        path.display()
    );
}

/// Decodes the escapes of hack/argo-tools/quantity-vectors.py: \\, \t, \n, \r, \xHH, \u{HEX}.
fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                let byte = u8::from_str_radix(&hex, 16).expect("\\x escape");
                out.push(char::from(byte));
            }
            Some('u') => {
                let hex: String = chars.by_ref().skip(1).take_while(|&c| c != '}').collect();
                let code = u32::from_str_radix(&hex, 16).expect("\\u escape");
                out.push(char::from_u32(code).expect("scalar value"));
            }
            other => panic!("bad escape {other:?} in {text:?}"),
        }
    }
    out
}

/// Tens of thousands of quantity texts — every sign, number form and suffix, edge cases, random
/// strings — written back as Go writes them, or refused where Go refuses them.
#[test]
fn quantities_are_written_as_go_writes_them() {
    let generator = support::repo_root().join("hack/argo-tools/quantity-vectors.py");
    let texts = Command::new("python3")
        .arg(&generator)
        .output()
        .expect("run quantity-vectors.py");
    assert!(texts.status.success(), "quantity-vectors.py failed");
    let texts = String::from_utf8(texts.stdout).expect("utf-8");
    let answers = run("quantity-oracle", &[], &texts);
    let (mut count, mut wrong) = (0, vec![]);
    for (text, go) in texts.lines().zip(answers.lines()) {
        count += 1;
        let ours = match aviary::plan::go_json::quantity::canonical(&unescape(text)) {
            Ok(q) => q,
            Err(aviary::plan::go_json::quantity::QuantityError::GoPanic) => "PANIC".into(),
            Err(_) => "ERR".into(),
        };
        if ours != go {
            wrong.push(format!("{text:?}: Go {go:?}, Aviary {ours:?}"));
        }
    }
    assert!(count > 10_000, "only {count} quantities");
    assert_eq!(count, answers.lines().count(), "one answer per text");
    assert!(
        wrong.is_empty(),
        "{} of {count} differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
