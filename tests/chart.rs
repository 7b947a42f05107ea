//! The Helm chart (`charts/aviary`): it lints, renders least-privilege, hardened objects with a
//! value for every controller flag, ships the generated CRDs, and installs into the local
//! cluster with a ServiceAccount that can do exactly what the controller needs — verb by verb,
//! checked with `kubectl auth can-i --as=system:serviceaccount:…` — and nothing listed as
//! denied.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use kube::api::{Api, ListParams};
use serde_json::Value;
use support::helm::{Release, chart, controller_container, helm, run};
use support::{TestNamespace, client, poll_until, repo_root, yaml_documents};

/// `helm template` with `--set` values, as parsed documents.
fn template(sets: &[&str]) -> Result<Vec<Value>, String> {
    let mut cmd = helm();
    cmd.args(["template", "rel"])
        .arg(chart())
        .args(["--namespace", "aviary-system"]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    Ok(yaml_documents(&run(cmd)?))
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(docs, kind);
    assert_eq!(found.len(), 1, "exactly one {kind}");
    found[0]
}

/// The rules of a chart file, as the API server would store them.
fn rules_file(name: &str) -> Value {
    let path = chart().join("files/rbac").join(name);
    let text = std::fs::read_to_string(&path).expect("rules file");
    serde_yaml::from_str(&text).expect("rules YAML")
}

fn container(deploy: &Value) -> &Value {
    &deploy["spec"]["template"]["spec"]["containers"][0]
}

fn args(deploy: &Value) -> Vec<String> {
    container(deploy)["args"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn chart_lints_strictly() {
    let mut cmd = helm();
    cmd.args(["lint", "--strict"]).arg(chart());
    run(cmd).expect("helm lint --strict");
}

#[test]
fn chart_crds_are_the_generated_crds() {
    let generated = repo_root().join("crds");
    let shipped = chart().join("files/crds");
    let names = |dir: &PathBuf| {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("crd dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&generated), names(&shipped));
    for f in names(&generated) {
        assert_eq!(
            std::fs::read_to_string(generated.join(&f)).expect("generated"),
            std::fs::read_to_string(shipped.join(&f)).expect("shipped"),
            "charts/aviary/files/crds/{f} differs from crds/{f}: run `make crds`"
        );
    }
}

/// Defaults: two replicas with leader election, least-privilege RBAC from the rule files, a
/// hardened pod with probes and resources, a metrics Service, a PDB, the CRDs kept on uninstall.
#[test]
fn chart_renders_hardened_least_privilege_defaults() {
    let docs = template(&[]).expect("helm template");
    // The controller's ClusterRole, and the two aggregated into `view` and `edit`.
    assert_eq!(of_kind(&docs, "ClusterRole").len(), 3);
    for kind in [
        "ServiceAccount",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
    ] {
        assert_eq!(of_kind(&docs, kind).len(), 1, "{kind}");
    }
    assert!(of_kind(&docs, "ServiceMonitor").is_empty());
    assert!(of_kind(&docs, "ConfigMap").is_empty());

    let crds = of_kind(&docs, "CustomResourceDefinition");
    assert_eq!(crds.len(), 4);
    for crd in &crds {
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "{}",
            crd["metadata"]["name"]
        );
    }

    // RBAC: exactly the rule files, no wildcard, the Lease only in the release namespace.
    let cluster_role = of_kind(&docs, "ClusterRole")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "rel-aviary")
        .expect("the controller's ClusterRole");
    assert_eq!(cluster_role["rules"], rules_file("controller.yaml"));
    // No Secret at all unless analysis.secretArgs asks for it.
    assert!(
        !cluster_role["rules"].to_string().contains("secrets"),
        "{}",
        cluster_role["rules"]
    );
    let role = one(&docs, "Role");
    assert_eq!(role["rules"], rules_file("leader-election.yaml"));
    assert_eq!(role["metadata"]["namespace"], "aviary-system");
    for rules in [&cluster_role["rules"], &role["rules"]] {
        let text = rules.to_string();
        assert!(!text.contains("\"*\""), "wildcard in {text}");
    }
    let binding = one(&docs, "ClusterRoleBinding");
    assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(binding["subjects"][0]["namespace"], "aviary-system");

    // The Deployment.
    let deploy = one(&docs, "Deployment");
    assert_eq!(deploy["spec"]["replicas"], 2);
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = container(deploy);
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(sc["capabilities"]["add"].is_null());
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    let a = args(deploy);
    for expected in [
        "--leader-elect=true",
        "--leader-elect-namespace=aviary-system",
        "--leader-elect-lease-duration=15s",
        "--leader-elect-renew-deadline=10s",
        "--leader-elect-retry-period=2s",
        "--metrics-addr=0.0.0.0:8090",
        "--health-addr=0.0.0.0:8080",
        // Below the grace period: the lease is released before the pod could be killed.
        "--shutdown-deadline=20s",
    ] {
        assert!(a.contains(&expected.to_string()), "{expected} in {a:?}");
    }
    assert!(
        !a.iter().any(|x| x.starts_with("--namespace")),
        "cluster-wide by default"
    );
    let env = c["env"].to_string();
    assert!(env.contains("POD_NAME") && env.contains("POD_NAMESPACE"));

    let svc = one(&docs, "Service");
    assert_eq!(svc["spec"]["ports"][0]["name"], "metrics");
    assert_eq!(svc["spec"]["ports"][0]["port"], 8090);
    let pdb = one(&docs, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
}

/// Every flag of `aviary --help` can be set from the chart's values (as a flag or its
/// environment variable).
#[test]
fn chart_has_a_value_for_every_controller_flag() {
    let help = run({
        let mut c = Command::new(env!("CARGO_BIN_EXE_aviary"));
        c.arg("--help");
        c
    })
    .expect("aviary --help");
    let flags: Vec<String> = help
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.starts_with("--"))
        .map(|w| w.trim_end_matches(',').to_string())
        .filter(|w| !matches!(w.as_str(), "--help" | "--version"))
        .collect();
    assert!(flags.len() >= 15, "flags parsed from --help: {flags:?}");
    let docs = template(&[
        "rbac.namespaced=true",
        "controller.prometheusAddress=http://prometheus:9090",
        "notifications.webhookUrlSecret.name=hooks",
        "notifications.triggers={promoted,aborted}",
        "notifications.webhooks[0].name=slack",
        "notifications.webhooks[0].urlFromEnv=SLACK",
        "analysis.caBundle.configMap=private-ca",
    ])
    .expect("helm template");
    let deploy = one(&docs, "Deployment");
    let volumes = deploy["spec"]["template"]["spec"]["volumes"].to_string();
    assert!(
        volumes.contains("private-ca") && volumes.contains("notifications"),
        "{volumes}"
    );
    let rendered = args(deploy).join(" ") + &container(deploy)["env"].to_string();
    // Set by the environment in a pod, or meaningless in one.
    let by_env = [
        ("--kubeconfig", "in-cluster configuration"),
        ("--leader-elect-identity", "POD_NAME"),
        ("--notify-webhook-url", "AVIARY_NOTIFY_WEBHOOK_URL"),
    ];
    for flag in &flags {
        if let Some((_, how)) = by_env.iter().find(|(f, _)| f == flag) {
            if *how != "in-cluster configuration" {
                assert!(rendered.contains(how), "{flag} via {how}");
            }
            continue;
        }
        assert!(
            rendered.contains(&format!("{flag}=")),
            "no chart value sets {flag}: {rendered}"
        );
    }
}

#[test]
fn chart_variants_render_as_configured() {
    // Namespaced: a Role with the same rules in the watched namespace, and --namespace.
    let docs = template(&["rbac.namespaced=true", "rbac.watchNamespace=shop"]).expect("template");
    assert!(of_kind(&docs, "ClusterRole").is_empty());
    assert!(of_kind(&docs, "ClusterRoleBinding").is_empty());
    let roles = of_kind(&docs, "Role");
    let controller_role = roles
        .iter()
        .find(|r| r["metadata"]["namespace"] == "shop")
        .expect("Role in the watched namespace");
    assert_eq!(controller_role["rules"], rules_file("controller.yaml"));
    assert!(args(one(&docs, "Deployment")).contains(&"--namespace=shop".to_string()));

    // Several namespaces: a Role and a RoleBinding in each, one --namespace list.
    let docs = template(&[
        "rbac.namespaced=true",
        "rbac.watchNamespaces={shop,pay}",
        "rbac.watchNamespace=shop",
    ])
    .expect("template");
    assert!(of_kind(&docs, "ClusterRole").is_empty());
    let controller_roles: Vec<_> = of_kind(&docs, "Role")
        .into_iter()
        .filter(|r| r["rules"] == rules_file("controller.yaml"))
        .map(|r| r["metadata"]["namespace"].clone())
        .collect();
    assert_eq!(controller_roles, ["shop", "pay"], "one Role per namespace");
    let bindings: Vec<_> = of_kind(&docs, "RoleBinding")
        .into_iter()
        .filter(|b| b["roleRef"]["name"] == controller_role["metadata"]["name"])
        .map(|b| b["metadata"]["namespace"].clone())
        .collect();
    assert_eq!(bindings, ["shop", "pay"]);
    assert!(args(one(&docs, "Deployment")).contains(&"--namespace=shop,pay".to_string()));
    let refused = template(&["rbac.namespaced=true", "rbac.watchNamespaces={Shop}"])
        .expect_err("not a namespace name");
    assert!(refused.contains("watchNamespaces"), "{refused}");
    let refused = template(&["rbac.watchNamespaces={shop}"]).expect_err("not namespaced");
    assert!(refused.contains("only with rbac.namespaced"), "{refused}");

    // Analysis Secrets: cluster-wide, in the namespaces listed, or in the watched one.
    let docs = template(&["analysis.secretArgs.enabled=true"]).expect("template");
    let secrets_role = of_kind(&docs, "ClusterRole")
        .into_iter()
        .find(|r| {
            r["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-analysis-secrets"))
        })
        .expect("a ClusterRole for analysis Secrets");
    assert_eq!(secrets_role["rules"], rules_file("analysis-secrets.yaml"));
    assert_eq!(of_kind(&docs, "ClusterRoleBinding").len(), 2);
    let docs = template(&[
        "analysis.secretArgs.enabled=true",
        "analysis.secretArgs.namespaces={team-a,team-b}",
    ])
    .expect("template");
    let granting: Vec<_> = of_kind(&docs, "ClusterRole")
        .into_iter()
        .filter(|r| {
            !r["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.contains("-aggregate-to-"))
        })
        .collect();
    assert_eq!(granting.len(), 1, "only the controller's");
    let secret_roles: Vec<_> = of_kind(&docs, "Role")
        .into_iter()
        .filter(|r| r["rules"] == rules_file("analysis-secrets.yaml"))
        .map(|r| r["metadata"]["namespace"].clone())
        .collect();
    assert_eq!(secret_roles, ["team-a", "team-b"]);
    let docs = template(&[
        "analysis.secretArgs.enabled=true",
        "rbac.namespaced=true",
        "rbac.watchNamespace=shop",
    ])
    .expect("template");
    let secret_roles: Vec<_> = of_kind(&docs, "Role")
        .into_iter()
        .filter(|r| r["rules"] == rules_file("analysis-secrets.yaml"))
        .map(|r| r["metadata"]["namespace"].clone())
        .collect();
    assert_eq!(secret_roles, ["shop"]);
    let docs = template(&["analysis.runUnowned=true"]).expect("template");
    assert!(args(one(&docs, "Deployment")).contains(&"--run-unowned-analysis=true".to_string()));

    // CRDs: not installed, or installed without the keep policy.
    let docs = template(&["crds.install=false"]).expect("template");
    assert!(of_kind(&docs, "CustomResourceDefinition").is_empty());
    let docs = template(&["crds.keep=false"]).expect("template");
    for crd in of_kind(&docs, "CustomResourceDefinition") {
        assert!(crd["metadata"]["annotations"]["helm.sh/resource-policy"].is_null());
    }

    // ServiceMonitor on request, scraping the metrics port.
    let docs = template(&["metrics.serviceMonitor.enabled=true"]).expect("template");
    let sm = one(&docs, "ServiceMonitor");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");

    // Notifications: a ConfigMap mounted as the file, and the URL from a Secret.
    let docs = template(&[
        "notifications.webhooks[0].name=slack",
        "notifications.webhooks[0].urlFromEnv=SLACK",
        "notifications.webhooks[0].format=slack",
        "notifications.envFromSecret=hooks",
    ])
    .expect("template");
    let cm = one(&docs, "ConfigMap");
    let file: aviary::notify::NotifyFile =
        serde_yaml::from_str(cm["data"]["notifications.yaml"].as_str().expect("file"))
            .expect("the rendered file parses as the controller reads it");
    assert_eq!(file.webhooks[0].name, "slack");
    let deploy = one(&docs, "Deployment");
    assert_eq!(
        container(deploy)["envFrom"][0]["secretRef"]["name"],
        "hooks"
    );
    assert!(
        args(deploy)
            .contains(&"--notify-config=/etc/aviary/notifications/notifications.yaml".into())
    );

    // H2: a NetworkPolicy on request: the probes from anywhere, /metrics from the peers given.
    let docs = template(&[
        "networkPolicy.enabled=true",
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring",
    ])
    .expect("template");
    let np = one(&docs, "NetworkPolicy");
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["port"], 8080);
    assert!(
        np["spec"]["ingress"][0]["from"].is_null(),
        "probes from anywhere"
    );
    assert_eq!(np["spec"]["ingress"][1]["ports"][0]["port"], 8090);
    assert_eq!(
        np["spec"]["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"]["team"],
        "monitoring"
    );

    let refused = template(&[
        "networkPolicy.enabled=true",
        "networkPolicy.metricsFrom[0].podSelector.matchLabels.app=prometheus",
        "controller.metricsPort=8080",
    ]);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("needs controller.metricsPort to differ")),
        "{refused:?}"
    );
    let docs = template(&["controller.metricsBindAddress=127.0.0.1"]).expect("template");
    assert!(args(one(&docs, "Deployment")).contains(&"--metrics-addr=127.0.0.1:8090".to_string()));

    // H3: a webhook URL in values would land in the ConfigMap in plain text: refused.
    let refused = template(&[
        "notifications.webhooks[0].name=slack",
        "notifications.webhooks[0].url=https://hooks.example/T0/B0/secret",
    ]);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("additional properties 'url' not allowed")),
        "{refused:?}"
    );

    // One replica: no PDB (it would block every drain). Two without a lease: refused.
    let docs = template(&["controller.replicas=1"]).expect("template");
    assert!(of_kind(&docs, "PodDisruptionBudget").is_empty());
    let refused = template(&["controller.leaderElection.enabled=false"]);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("needs controller.leaderElection.enabled")),
        "{refused:?}"
    );
}

/// Every (verb, resource, subresource) a rules list grants.
fn grants(rules: &Value) -> Vec<(String, String)> {
    let mut out = vec![];
    for rule in rules.as_array().expect("rules") {
        for group in rule["apiGroups"].as_array().expect("groups") {
            for resource in rule["resources"].as_array().expect("resources") {
                for verb in rule["verbs"].as_array().expect("verbs") {
                    let (group, resource, verb) = (
                        group.as_str().unwrap_or(""),
                        resource.as_str().unwrap_or(""),
                        verb.as_str().unwrap_or(""),
                    );
                    let (res, sub) = resource.split_once('/').unwrap_or((resource, ""));
                    let qualified = if group.is_empty() {
                        res.to_string()
                    } else {
                        format!("{res}.{group}")
                    };
                    let target = if sub.is_empty() {
                        qualified
                    } else {
                        format!("{qualified} --subresource={sub}")
                    };
                    out.push((verb.to_string(), target));
                }
            }
        }
    }
    out
}

/// `kubectl auth can-i VERB TARGET -n NS --as=SA`.
fn can_i(sa: &str, ns: &str, verb: &str, target: &str) -> bool {
    let mut cmd = Command::new("kubectl");
    cmd.args(["auth", "can-i", verb]);
    cmd.args(target.split_whitespace());
    cmd.args(["-n", ns, &format!("--as={sa}")]);
    let out = cmd.output().expect("kubectl auth can-i");
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

/// Given the chart installed cluster-wide (with a ServiceMonitor), then its objects exist as
/// rendered and are accepted by the API server, its two pods
/// run (on KWOK nodes), and its ServiceAccount can do each thing the rule files grant, in any
/// namespace, and the Lease only in its own — and none of the things it must not; given it
/// installed namespaced, then the same rights hold in that namespace only.
#[tokio::test]
async fn chart_installs_with_exactly_the_rights_the_controller_needs() {
    let client = client().await;
    support::controller::install_aviary_crds(&client).await;
    // Every kind the controller is granted must be served, or `kubectl auth can-i` answers no
    // (this suite must not rely on another having installed the routing CRDs first).
    support::install_crds(
        &client,
        &[
            &support::upstream_crd("prometheus-operator-servicemonitors.yaml"),
            &support::upstream_crd("istio-virtualservice.yaml"),
            &support::upstream_crd("istio-destinationrule.yaml"),
            &support::upstream_crd("gateway-api-httproutes.yaml"),
        ],
    )
    .await;
    let ns = TestNamespace::new(&client, "chart").await;
    let release = Release::install(
        &ns.name,
        &ns.name,
        &[
            "metrics.serviceMonitor.enabled=true",
            "networkPolicy.enabled=true",
            "networkPolicy.metricsFrom[0].podSelector.matchLabels.app=prometheus",
        ],
    );
    let full = format!("{}-aviary", release.name);
    let sa = format!("system:serviceaccount:{}:{full}", ns.name);

    let deploy: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let d = deploy.get(&full).await.expect("Deployment");
    assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(2));
    Api::<ServiceAccount>::namespaced(client.clone(), &ns.name)
        .get(&full)
        .await
        .expect("ServiceAccount");
    Api::<Service>::namespaced(client.clone(), &ns.name)
        .get(&format!("{full}-metrics"))
        .await
        .expect("metrics Service");
    Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns.name)
        .get(&full)
        .await
        .expect("PodDisruptionBudget");
    let cr = Api::<ClusterRole>::all(client.clone())
        .get(&full)
        .await
        .expect("ClusterRole");
    assert_eq!(
        serde_json::to_value(&cr.rules).expect("rules"),
        rules_file("controller.yaml"),
        "the API server stores the rule file unchanged"
    );
    Api::<Role>::namespaced(client.clone(), &ns.name)
        .get(&format!("{full}-leader-election"))
        .await
        .expect("leader-election Role");
    let (sm_resource, _) = kube::discovery::pinned_kind(
        &client,
        &kube::core::GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
    )
    .await
    .expect("ServiceMonitor kind");
    let sm =
        Api::<kube::api::DynamicObject>::namespaced_with(client.clone(), &ns.name, &sm_resource)
            .get(&full)
            .await
            .expect("ServiceMonitor accepted by its CRD's schema");
    assert_eq!(sm.data["spec"]["endpoints"][0]["port"], "metrics");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    poll_until(
        "two controller pods Running",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            let pods = pods.clone();
            async move {
                let list = pods
                    .list(&ListParams::default().labels("app.kubernetes.io/component=controller"))
                    .await
                    .ok()?;
                let running = list
                    .items
                    .iter()
                    .filter(|p| {
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    })
                    .count();
                (running == 2).then_some(())
            }
        },
    )
    .await;

    // Granted, verb by verb, in a namespace of some application.
    let app_ns = "some-app";
    let granted = grants(&rules_file("controller.yaml"));
    let missing: Vec<String> = granted
        .iter()
        .filter(|(verb, target)| !can_i(&sa, app_ns, verb, target))
        .map(|(v, t)| format!("{v} {t}"))
        .collect();
    assert!(missing.is_empty(), "not granted: {missing:?}");
    println!("{} grants checked with kubectl auth can-i", granted.len());
    for (verb, target) in grants(&rules_file("leader-election.yaml")) {
        assert!(
            can_i(&sa, &ns.name, &verb, &target),
            "{verb} {target} in own namespace"
        );
        assert!(
            !can_i(&sa, app_ns, &verb, &target),
            "{verb} {target} elsewhere"
        );
    }
    // Denied.
    for (verb, target) in [
        ("create", "rollouts.aviary.dev"),
        ("delete", "rollouts.aviary.dev"),
        ("get", "secrets"),
        ("list", "secrets"),
        ("watch", "secrets"),
        ("create", "secrets"),
        ("delete", "services"),
        ("create", "services"),
        ("create", "pods"),
        ("delete", "pods"),
        ("watch", "pods"),
        ("update", "deployments.apps"),
        ("get", "configmaps"),
        ("delete", "leases.coordination.k8s.io"),
        ("update", "clusterroles.rbac.authorization.k8s.io"),
        ("create", "customresourcedefinitions.apiextensions.k8s.io"),
        ("get", "nodes"),
        ("delete", "analysistemplates.aviary.dev"),
        ("update", "virtualservices.networking.istio.io"),
        ("delete", "ingresses.networking.k8s.io"),
    ] {
        assert!(
            !can_i(&sa, app_ns, verb, target),
            "must be denied: {verb} {target}"
        );
    }

    // Namespaced: the same rights in the namespaces listed only (and the release namespace's
    // by default).
    let ns2 = TestNamespace::new(&client, "chart-ns").await;
    let ns3 = TestNamespace::new(&client, "chart-ns-b").await;
    let namespaced = Release::install(&ns2.name, &ns2.name, &["rbac.namespaced=true"]);
    let sa2 = format!(
        "system:serviceaccount:{}:{}-aviary",
        ns2.name, namespaced.name
    );
    let listed = format!("rbac.watchNamespaces={{{},{}}}", ns2.name, ns3.name);
    let several = Release::install(
        &format!("{}-b", ns2.name),
        &ns2.name,
        &["rbac.namespaced=true", &listed],
    );
    let sa3 = format!("system:serviceaccount:{}:{}-aviary", ns2.name, several.name);
    for (verb, target) in granted
        .iter()
        .filter(|(_, t)| !t.starts_with("clusteranalysistemplates"))
    {
        assert!(
            can_i(&sa2, &ns2.name, verb, target),
            "{verb} {target} in its namespace"
        );
        assert!(
            !can_i(&sa2, app_ns, verb, target),
            "{verb} {target} outside its namespace"
        );
        for ns in [&ns2.name, &ns3.name] {
            assert!(can_i(&sa3, ns, verb, target), "{verb} {target} in {ns}");
        }
        assert!(
            !can_i(&sa3, app_ns, verb, target),
            "{verb} {target} outside the namespaces listed"
        );
    }
    let d2 = deploy_args(&client, &ns2.name, &format!("{}-aviary", namespaced.name)).await;
    assert!(d2.contains(&format!("--namespace={}", ns2.name)), "{d2:?}");
    let d3 = deploy_args(&client, &ns2.name, &format!("{}-aviary", several.name)).await;
    assert!(
        d3.contains(&format!("--namespace={},{}", ns2.name, ns3.name)),
        "{d3:?}"
    );
}

async fn deploy_args(client: &kube::Client, ns: &str, name: &str) -> Vec<String> {
    controller_container(client, ns, name)
        .await
        .args
        .unwrap_or_default()
}

/// Given the chart installed with `argocd.customizations.enabled`, when the command its install
/// notes print is run (against a stand-in for Argo CD's namespace), then Argo CD's argocd-cm
/// holds exactly the health script and actions of `integrations/argocd/argocd-cm.yaml`, and
/// keeps the keys it had.
#[tokio::test]
async fn chart_argocd_customizations_patch_argocd_cm_as_the_notes_say() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let client = client().await;
    support::controller::install_aviary_crds(&client).await;
    let ns = TestNamespace::new(&client, "chart-argo").await;
    let argocd = TestNamespace::new(&client, "argocd-standin").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &argocd.name);
    let shipped: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "argocd-cm"},
        "data": {"url": "https://argocd.example.com"},
    }))
    .expect("argocd-cm");
    cms.create(&kube::api::PostParams::default(), &shipped)
        .await
        .expect("create argocd-cm");
    let release = Release::install(
        &ns.name,
        &ns.name,
        &["argocd.customizations.enabled=true", "rbac.namespaced=true"],
    );

    let mut cmd = helm();
    cmd.args(["get", "notes", &release.name, "--namespace", &ns.name]);
    let notes = run(cmd).expect("helm get notes");
    let line = notes
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("kubectl -n argocd patch configmap argocd-cm"))
        .unwrap_or_else(|| panic!("the notes print the patch command:\n{notes}"));
    let line = line.replacen("-n argocd ", &format!("-n {} ", argocd.name), 1);
    let mut sh = Command::new("sh");
    sh.args(["-c", &line]);
    run(sh).expect("the notes' command runs");

    let patched = cms.get("argocd-cm").await.expect("argocd-cm").data;
    let patched = patched.unwrap_or_default();
    let want: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo_root().join("integrations/argocd/argocd-cm.yaml"))
            .expect("integrations/argocd/argocd-cm.yaml"),
    )
    .expect("argocd-cm.yaml");
    let want = want["data"].as_object().expect("data");
    assert_eq!(want.len(), 2, "health and actions");
    for (key, value) in want {
        assert_eq!(
            patched.get(key).map(String::as_str),
            value.as_str(),
            "argocd-cm {key} is Aviary's"
        );
    }
    assert_eq!(
        patched.get("url").map(String::as_str),
        Some("https://argocd.example.com"),
        "argocd-cm keeps its own keys"
    );
}

/// `hack/release/project.env` (the one place naming the project's home) and Cargo.toml's version
/// (the one version source): the chart's version, appVersion and default image follow them.
fn release_vars() -> (String, String) {
    let env = std::fs::read_to_string(repo_root().join("hack/release/project.env"))
        .expect("hack/release/project.env");
    let var = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} in project.env"))
            .trim()
            .to_string()
    };
    (
        format!("ghcr.io/{}/{}", var("OWNER"), var("REPO")),
        env!("CARGO_PKG_VERSION").to_string(),
    )
}

/// The published chart: its version and appVersion are the crate's, its default image is the
/// one the release workflow pushes, at that version (a digest pins it when given); and its values
/// accept what Helm gives a chart used as a dependency (`global`, `enabled`).
#[test]
fn chart_defaults_to_the_published_image_and_takes_dependency_values() {
    let (image, version) = release_vars();
    let chart_yaml: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart().join("Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml");
    assert_eq!(chart_yaml["version"], version.as_str());
    assert_eq!(chart_yaml["appVersion"], version.as_str());
    let docs = template(&[]).expect("helm template");
    assert_eq!(
        container(one(&docs, "Deployment"))["image"],
        format!("{image}:{version}").as_str()
    );
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    let docs = template(&[
        "global.imageRegistry=mirror.example",
        "enabled=true",
        &format!("image.digest={digest}"),
    ])
    .expect("global and enabled are accepted");
    assert_eq!(
        container(one(&docs, "Deployment"))["image"],
        format!("{image}:{version}@{digest}").as_str()
    );
    let bad = template(&["image.digest=latest"]).expect_err("a digest that is not one");
    assert!(bad.contains("image/digest"), "{bad}");
}

/// Given the chart installed cluster-wide, a user bound to `edit` in one namespace can read and
/// steer Rollouts there (promote and abort write the status subresource), not elsewhere; a
/// `view` user can read them but not steer them.
#[tokio::test]
async fn chart_aggregates_rollout_rights_into_view_and_edit() {
    use k8s_openapi::api::rbac::v1::RoleBinding;
    let client = client().await;
    support::controller::install_aviary_crds(&client).await;
    let ns = TestNamespace::new(&client, "chart-agg").await;
    let other = TestNamespace::new(&client, "chart-agg-other").await;
    let _release = Release::install(&ns.name, &ns.name, &[]);
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &ns.name);
    for (user, role) in [("jane-edit", "edit"), ("joe-view", "view")] {
        let rb: RoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": user},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }))
        .expect("RoleBinding");
        bindings
            .create(&kube::api::PostParams::default(), &rb)
            .await
            .expect("bind");
    }
    // The aggregation controller fills `edit` and `view` in a moment.
    let steer = "rollouts.aviary.dev --subresource=status";
    poll_until(
        "edit aggregates Aviary's rights",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async { can_i("jane-edit", &ns.name, "patch", steer).then_some(()) },
    )
    .await;
    for (verb, target) in [
        ("patch", "rollouts.aviary.dev"),
        ("create", "rollouts.aviary.dev"),
        ("get", "analysisruns.aviary.dev"),
        ("create", "analysistemplates.aviary.dev"),
        ("update", "rollouts.aviary.dev --subresource=scale"),
    ] {
        assert!(
            can_i("jane-edit", &ns.name, verb, target),
            "edit: {verb} {target}"
        );
    }
    assert!(
        !can_i("jane-edit", &other.name, "patch", steer),
        "not in another namespace"
    );
    poll_until(
        "view aggregates Aviary's read rights",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async { can_i("joe-view", &ns.name, "list", "rollouts.aviary.dev").then_some(()) },
    )
    .await;
    assert!(can_i(
        "joe-view",
        &ns.name,
        "get",
        "analysisruns.aviary.dev"
    ));
    assert!(
        !can_i("joe-view", &ns.name, "patch", steer),
        "view cannot steer"
    );
    assert!(!can_i("joe-view", &ns.name, "patch", "rollouts.aviary.dev"));
}

/// Given a release of the previous chart (0.1.0, as packaged then: tests/data/charts), when it
/// is upgraded to this chart with the image pinned by digest (the one `make image` built, when
/// there is one), then the upgrade succeeds and the Deployment runs the pinned reference.
#[tokio::test]
async fn chart_upgrades_from_the_previous_version_to_a_pinned_image() {
    let client = client().await;
    support::controller::install_aviary_crds(&client).await;
    let ns = TestNamespace::new(&client, "chart-up").await;
    let previous = repo_root().join("tests/data/charts/aviary-0.1.0.tgz");
    let mut cmd = helm();
    cmd.args(["install", &ns.name]).arg(&previous).args([
        "--namespace",
        &ns.name,
        "--set",
        "crds.install=false",
    ]);
    run(cmd).expect("install the previous chart");
    let release = Release {
        name: ns.name.clone(),
        namespace: ns.name.clone(),
    };
    let built = repo_root().join("target/image/digest");
    let digest = match std::fs::read_to_string(&built) {
        Ok(d) => d.trim().to_string(),
        Err(_) => {
            println!(
                "no {} (make image): pinning a stand-in digest",
                built.display()
            );
            format!("sha256:{}", "ab".repeat(32))
        }
    };
    let mut cmd = helm();
    cmd.args(["upgrade", &release.name])
        .arg(chart())
        // As the README says: --reuse-values would keep 0.1.0's default image, never published.
        .args([
            "--namespace",
            &ns.name,
            "--reset-then-reuse-values",
            "--set",
        ])
        .arg(format!("image.digest={digest}"));
    run(cmd).expect("upgrade to this chart");
    let (image, version) = release_vars();
    let full = format!("{}-aviary", release.name);
    let running = controller_container(&client, &ns.name, &full).await.image;
    assert_eq!(running, Some(format!("{image}:{version}@{digest}")));
    let mut cmd = helm();
    cmd.args([
        "history",
        &release.name,
        "--namespace",
        &ns.name,
        "-o",
        "json",
    ]);
    let history: Value = serde_json::from_str(&run(cmd).expect("helm history")).expect("json");
    let last = history
        .as_array()
        .and_then(|h| h.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["status"], "deployed", "{history}");
    assert_eq!(last["chart"], format!("aviary-{version}").as_str());
}

/// Given the chart installed, `kubectl aviary version -o json` names the plugin's build and
/// finds the controller Deployment with the chart's version and image; `--client` asks no
/// cluster.
#[tokio::test]
async fn kubectl_aviary_version_finds_the_installed_controller() {
    let client = client().await;
    support::controller::install_aviary_crds(&client).await;
    let ns = TestNamespace::new(&client, "chart-ver").await;
    let release = Release::install(&ns.name, &ns.name, &["rbac.namespaced=true"]);
    let (image, version) = release_vars();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubectl-aviary"));
    cmd.args(["version", "-o", "json"]);
    let out: Value =
        serde_json::from_str(&run(cmd).expect("kubectl aviary version")).expect("json");
    assert_eq!(out["plugin"]["version"], version.as_str());
    let full = format!("{}-aviary", release.name);
    let found = out["controllers"]
        .as_array()
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["namespace"] == ns.name.as_str() && c["name"] == full.as_str())
        })
        .unwrap_or_else(|| panic!("the release's controller in {out}"));
    assert_eq!(found["version"], version.as_str());
    assert_eq!(found["image"], format!("{image}:{version}").as_str());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubectl-aviary"));
    cmd.args(["version", "--client", "--kubeconfig", "/nonexistent"]);
    let text = run(cmd).expect("--client needs no cluster");
    assert!(
        text.starts_with(&format!("kubectl-aviary {version} (revision ")),
        "{text}"
    );
}
