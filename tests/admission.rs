//! Admission against the real API server: every example applies cleanly and unchanged, and
//! each invalid manifest in the table is rejected with a message naming the offending field.
//!
//! Given the local cluster (`hack/cluster.sh up`) with Aviary's generated CRDs installed, when a
//! manifest is server-side applied (strict field validation, as kubectl does), then the API
//! server's structural schema and CEL rules accept or reject it — no controller involved.

mod support;

use std::path::Path;

use kube::api::{Api, DynamicObject, Patch, PatchParams, ValidationDirective};
use kube::core::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};
use kube::{Client, ResourceExt};
use serde_json::Value;
use support::{TestNamespace, client, install_crds, upstream_crd, yaml_documents};

/// Installs Aviary's CRDs from `crds/` (the drift check keeps them equal to the types) and the
/// upstream Istio VirtualService CRD the Istio example needs.
async fn install(client: &Client) {
    let root = support::repo_root();
    let ours = [
        "rollouts.yaml",
        "analysistemplates.yaml",
        "clusteranalysistemplates.yaml",
        "analysisruns.yaml",
    ]
    .map(|f| root.join("crds").join(f));
    let istio = upstream_crd("istio-virtualservice.yaml");
    let mut files: Vec<&Path> = ours.iter().map(|p| p.as_path()).collect();
    files.push(&istio);
    install_crds(client, &files).await;
}

/// Server-side applies `value` as it stands, with strict field validation.
async fn apply(
    client: &Client,
    ns: &str,
    value: &Value,
    dry_run: bool,
) -> Result<DynamicObject, kube::Error> {
    let (group, version) = match value["apiVersion"].as_str().unwrap_or("").split_once('/') {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (
            String::new(),
            value["apiVersion"].as_str().unwrap_or("").to_owned(),
        ),
    };
    let gvk = GroupVersionKind::gvk(&group, &version, value["kind"].as_str().unwrap_or(""));
    let (ar, caps) = pinned_kind(client, &gvk).await?;
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Namespaced => Api::namespaced_with(client.clone(), ns, &ar),
        Scope::Cluster => Api::all_with(client.clone(), &ar),
    };
    let name = value["metadata"]["name"].as_str().unwrap_or_default();
    let mut pp = PatchParams::apply(support::FIELD_MANAGER);
    pp.field_validation = Some(ValidationDirective::Strict);
    pp.dry_run = dry_run;
    api.patch(name, &pp, &Patch::Apply(value)).await
}

/// The YAML files in `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn examples_apply_cleanly_and_unchanged() {
    let files = yaml_files(&support::repo_root().join("examples"));
    assert!(
        files.len() >= 4,
        "expected the four examples, found {files:?}"
    );
    apply_unchanged(&files, "admission-examples", 6).await;
}

/// `tests/data/valid/` sets every supported field; all of it must be accepted as written.
#[tokio::test]
async fn every_supported_field_is_accepted_unchanged() {
    let files = yaml_files(&support::repo_root().join("tests/data/valid"));
    apply_unchanged(&files, "admission-valid", 8).await;
}

/// Applies every document of `files` into a fresh namespace; each must be accepted, and each
/// Aviary object must be stored exactly as written.
async fn apply_unchanged(files: &[std::path::PathBuf], prefix: &str, at_least: usize) {
    let client = client().await;
    install(&client).await;
    let ns = TestNamespace::new(&client, prefix).await;
    let mut ours = 0;
    for file in files {
        let text = std::fs::read_to_string(file).expect("read example");
        for doc in yaml_documents(&text) {
            assert!(
                doc["metadata"].get("namespace").is_none(),
                "{}: must not pin a namespace",
                file.display()
            );
            let applied = apply(&client, &ns.name, &doc, false)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "{}: {} {} was rejected: {e}",
                        file.display(),
                        doc["kind"],
                        doc["metadata"]["name"]
                    )
                });
            if doc["apiVersion"] == aviary::api::API_VERSION {
                // Nothing pruned, nothing defaulted: the stored spec is the manifest's.
                let stored = serde_json::to_value(&applied).expect("serialise");
                assert_eq!(
                    stored["spec"],
                    doc["spec"],
                    "{}: {} {} changed on the server",
                    file.display(),
                    doc["kind"],
                    applied.name_any()
                );
                ours += 1;
            }
        }
    }
    assert!(ours >= at_least, "only {ours} Aviary objects in {files:?}");
}

// ---------------------------------------------------------------------------------------------
// The table of invalid manifests

const ROLLOUT: &str = r#"
apiVersion: aviary.dev/v1alpha1
kind: Rollout
metadata: {name: canary}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: example.invalid/web:1}]}
  strategy:
    canary:
      canaryService: web-canary
      stableService: web-stable
      trafficRouting:
        istio: {virtualService: {name: web, routes: [primary]}}
      steps:
      - setWeight: 20
      - pause: {duration: 30s}
      - analysis:
          templates: [{templateName: success-rate}]
          args: [{name: service-name, value: web}]
      - pause: {}
      - setWeight: 100
      analysis:
        templates: [{templateName: success-rate}]
        args: [{name: service-name, value: web}]
        startingStep: 1
"#;

const BLUE_GREEN: &str = r#"
apiVersion: aviary.dev/v1alpha1
kind: Rollout
metadata: {name: bluegreen}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: example.invalid/web:1}]}
  strategy:
    blueGreen:
      activeService: web-active
      previewService: web-preview
      prePromotionAnalysis:
        templates: [{templateName: success-rate}]
"#;

const TEMPLATE: &str = r#"
apiVersion: aviary.dev/v1alpha1
kind: AnalysisTemplate
metadata: {name: success-rate}
spec:
  args: [{name: service-name}]
  metrics:
  - name: success-rate
    interval: 1m
    successCondition: result[0] >= 0.95
    failureLimit: 3
    provider:
      prometheus: {address: "http://prometheus:9090", query: up}
"#;

const CLUSTER_TEMPLATE: &str = r#"
apiVersion: aviary.dev/v1alpha1
kind: ClusterAnalysisTemplate
metadata: {name: aviary-admission-test}
spec:
  metrics:
  - name: up
    provider:
      web: {url: "http://example.invalid/health", jsonPath: "{$.ok}"}
"#;

const RUN: &str = r#"
apiVersion: aviary.dev/v1alpha1
kind: AnalysisRun
metadata: {name: run}
spec:
  args: [{name: service-name, value: web}]
  metrics:
  - name: success-rate
    successCondition: result[0] >= 0.95
    provider:
      prometheus: {query: up}
"#;

/// An invalid manifest: `base` with `patch` merged in (objects merge, `null` deletes, anything
/// else replaces), and the substrings the rejection must contain — the field's path first.
struct Case {
    name: &'static str,
    base: &'static str,
    patch: &'static str,
    expect: &'static [&'static str],
    /// Apply to the existing base object (for rules on updates) instead of a new one.
    update: bool,
}

const fn case(
    name: &'static str,
    base: &'static str,
    patch: &'static str,
    expect: &'static [&'static str],
) -> Case {
    Case {
        name,
        base,
        patch,
        expect,
        update: false,
    }
}

const NOT_SUPPORTED: &str = "is not supported by Aviary";

const CASES: &[Case] = &[
    // --- Rollout: strategy ---------------------------------------------------------------
    case(
        "two strategies",
        ROLLOUT,
        "spec: {strategy: {blueGreen: {activeService: web-active}}}",
        &["spec.strategy", "exactly one of canary or blueGreen"],
    ),
    case(
        "no strategy",
        ROLLOUT,
        "spec: {strategy: {canary: null}}",
        &["spec.strategy", "exactly one of canary or blueGreen"],
    ),
    case(
        "missing strategy",
        ROLLOUT,
        "spec: {strategy: null}",
        &["spec.strategy", "Required value"],
    ),
    // --- Rollout: steps ---------------------------------------------------------------------
    case(
        "step with two actions",
        ROLLOUT,
        "spec: {strategy: {canary: {steps: [{setWeight: 10, pause: {}}]}}}",
        &[
            "spec.strategy.canary.steps[0]",
            "exactly one of setWeight, pause, analysis or setCanaryScale",
        ],
    ),
    case(
        "empty step",
        ROLLOUT,
        "spec: {strategy: {canary: {steps: [{setWeight: 10}, {}]}}}",
        &[
            "spec.strategy.canary.steps[1]",
            "exactly one of setWeight, pause, analysis or setCanaryScale",
        ],
    ),
    case(
        "setWeight above 100",
        ROLLOUT,
        "spec: {strategy: {canary: {steps: [{setWeight: 101}]}}}",
        &[
            "spec.strategy.canary.steps",
            "setWeight and setCanaryScale.weight are at most 100",
        ],
    ),
    case(
        "negative setWeight",
        ROLLOUT,
        "spec: {strategy: {canary: {steps: [{setWeight: -1}]}}}",
        &[
            "spec.strategy.canary.steps[0].setWeight",
            "greater than or equal to 0",
        ],
    ),
    case(
        "pause duration with unknown unit",
        ROLLOUT,
        "spec: {strategy: {canary: {steps: [{pause: {duration: 5x}}]}}}",
        &[
            "spec.strategy.canary.steps[0].pause.duration",
            "duration string",
        ],
    ),
    case(
        "pause duration without unit",
        ROLLOUT,
        "spec: {strategy: {canary: {steps: [{pause: {duration: '30'}}]}}}",
        &[
            "spec.strategy.canary.steps[0].pause.duration",
            "duration string",
        ],
    ),
    case(
        "negative pause duration",
        ROLLOUT,
        "spec: {strategy: {canary: {steps: [{pause: {duration: -5}}]}}}",
        &[
            "spec.strategy.canary.steps[0].pause.duration",
            "integer seconds (0 to 9223372036)",
        ],
    ),
    case(
        "pause duration in days",
        ROLLOUT,
        "spec: {strategy: {canary: {steps: [{setWeight: 5}, {pause: {duration: 1d}}]}}}",
        &[
            "spec.strategy.canary.steps[1].pause.duration",
            "duration string",
        ],
    ),
    // --- Bounds: whatever is admitted, the controller can decode (a value past its type's range
    // once failed every list of its kind) ---------------------------------------------------
    case(
        "pause duration past the largest duration",
        ROLLOUT,
        "spec: {strategy: {canary: {steps: [{pause: {duration: 99999999999999999999999999999999999999999s}}]}}}",
        &[
            "spec.strategy.canary.steps[0].pause.duration",
            "up to 999999h",
        ],
    ),
    case(
        "pause duration in integer seconds past the largest duration",
        ROLLOUT,
        "spec: {strategy: {canary: {steps: [{pause: {duration: 9223372037}}]}}}",
        &[
            "spec.strategy.canary.steps[0].pause.duration",
            "0 to 9223372036",
        ],
    ),
    case(
        "pause duration with units out of order",
        ROLLOUT,
        "spec: {strategy: {canary: {steps: [{pause: {duration: 30m1h}}]}}}",
        &[
            "spec.strategy.canary.steps[0].pause.duration",
            "largest first",
        ],
    ),
    case(
        "replicas past int32",
        ROLLOUT,
        "spec: {replicas: 3000000000}",
        &["spec.replicas", "less than or equal to 2147483647"],
    ),
    case(
        "a container port past int32",
        ROLLOUT,
        "spec: {template: {spec: {containers: [{name: web, image: example.invalid/web:1, ports: [{containerPort: 3000000000}]}]}}}",
        &[
            "spec.template.spec.containers[0].ports[0].containerPort",
            "less than or equal to 2147483647",
        ],
    ),
    case(
        "a probe port past int32",
        ROLLOUT,
        "spec: {template: {spec: {containers: [{name: web, image: example.invalid/web:1, readinessProbe: {tcpSocket: {port: 3000000000}}}]}}}",
        &[
            "spec.template.spec.containers[0].readinessProbe.tcpSocket.port",
            "less than or equal to 2147483647",
        ],
    ),
    case(
        "maxSurge past int32",
        ROLLOUT,
        "spec: {strategy: {canary: {maxSurge: 3000000000}}}",
        &["spec.strategy.canary.maxSurge", "from 0 to 2147483647"],
    ),
    case(
        "interval past the largest duration",
        RUN,
        "spec: {metrics: [{name: m, interval: 99999999999999999999999999999999999999999s, provider: {prometheus: {query: up}}}]}",
        &["spec.metrics[0].interval", "up to 999999h"],
    ),
    case(
        "experiment step",
        ROLLOUT,
        "spec: {strategy: {canary: {steps: [{experiment: {templates: [{name: x, specRef: canary}]}}]}}}",
        &["spec.strategy.canary.steps[0].experiment", NOT_SUPPORTED],
    ),
    case(
        "setHeaderRoute step",
        ROLLOUT,
        "spec: {strategy: {canary: {steps: [{setHeaderRoute: {name: h}}]}}}",
        &[
            "spec.strategy.canary.steps[0].setHeaderRoute",
            NOT_SUPPORTED,
        ],
    ),
    case(
        "setMirrorRoute step",
        ROLLOUT,
        "spec: {strategy: {canary: {steps: [{setMirrorRoute: {name: m, percentage: 10}}]}}}",
        &[
            "spec.strategy.canary.steps[0].setMirrorRoute",
            NOT_SUPPORTED,
        ],
    ),
    case(
        "step plugin",
        ROLLOUT,
        "spec: {strategy: {canary: {steps: [{plugin: {name: x}}]}}}",
        &["spec.strategy.canary.steps[0].plugin", NOT_SUPPORTED],
    ),
    case(
        "setCanaryScale with two fields",
        ROLLOUT,
        "spec: {strategy: {canary: {steps: [{setCanaryScale: {weight: 10, replicas: 2}}]}}}",
        &[
            "spec.strategy.canary.steps[0].setCanaryScale",
            "exactly one of weight, replicas or matchTrafficWeight",
        ],
    ),
    case(
        "setCanaryScale without traffic routing",
        ROLLOUT,
        "spec: {strategy: {canary: {trafficRouting: null, steps: [{setCanaryScale: {replicas: 2}}]}}}",
        &[
            "spec.strategy.canary.steps",
            "setCanaryScale steps require trafficRouting",
        ],
    ),
    case(
        "analysis step without templates",
        ROLLOUT,
        "spec: {strategy: {canary: {steps: [{analysis: {templates: []}}]}}}",
        &[
            "spec.strategy.canary.steps[0].analysis.templates",
            "at least 1 items",
        ],
    ),
    case(
        "analysis template reference without a name",
        ROLLOUT,
        "spec: {strategy: {canary: {steps: [{analysis: {templates: [{clusterScope: true}]}}]}}}",
        &[
            "spec.strategy.canary.steps[0].analysis.templates[0].templateName",
            "Required value",
        ],
    ),
    case(
        "argument with value and valueFrom",
        ROLLOUT,
        "spec: {strategy: {canary: {steps: [{analysis: {templates: [{templateName: t}], args: [{name: a, value: x, valueFrom: {podTemplateHashValue: Stable}}]}}]}}}",
        &[
            "spec.strategy.canary.steps[0].analysis.args[0]",
            "exactly one of value or valueFrom",
        ],
    ),
    case(
        "rollout arg fieldRef outside metadata, spec and status",
        ROLLOUT,
        "spec: {strategy: {canary: {steps: [{analysis: {templates: [{templateName: t}], args: [{name: a, valueFrom: {fieldRef: {fieldPath: apiVersion}}}]}}]}}}",
        &[
            "spec.strategy.canary.steps[0].analysis.args[0].valueFrom.fieldRef.fieldPath",
            "or a spec.* or status.* path",
        ],
    ),
    case(
        "unknown podTemplateHashValue",
        ROLLOUT,
        "spec: {strategy: {canary: {steps: [{analysis: {templates: [{templateName: t}], args: [{name: a, valueFrom: {podTemplateHashValue: Canary}}]}}]}}}",
        &[
            "spec.strategy.canary.steps[0].analysis.args[0].valueFrom.podTemplateHashValue",
            "Unsupported value",
        ],
    ),
    case(
        "duplicate argument names",
        ROLLOUT,
        "spec: {strategy: {canary: {steps: [{analysis: {templates: [{templateName: t}], args: [{name: a, value: x}, {name: a, value: y}]}}]}}}",
        &[
            ".spec.strategy.canary.steps[0].analysis.args",
            r#"duplicate entries for key [name="a"]"#,
        ],
    ),
    case(
        "analysisRunMetadata with a number for a label",
        ROLLOUT,
        "spec: {strategy: {canary: {steps: [{analysis: {templates: [{templateName: t}], analysisRunMetadata: {labels: {a: 1}}}}]}}}",
        &[
            "spec.strategy.canary.steps[0].analysis.analysisRunMetadata.labels.a",
            "expected string",
        ],
    ),
    case(
        "too many steps",
        ROLLOUT,
        "spec: {strategy: {canary: {steps: [{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1},{setWeight: 1}]}}}",
        &["spec.strategy.canary.steps", "must have at most 100 items"],
    ),
    // --- Rollout: services and traffic routing -----------------------------------------------
    case(
        "canaryService equals stableService",
        ROLLOUT,
        "spec: {strategy: {canary: {canaryService: web, stableService: web}}}",
        &[
            "spec.strategy.canary.canaryService",
            "must name different Services",
        ],
    ),
    case(
        "traffic routing without canaryService",
        ROLLOUT,
        "spec: {strategy: {canary: {canaryService: null}}}",
        &[
            "spec.strategy.canary.trafficRouting",
            "requires both canaryService and stableService",
        ],
    ),
    case(
        "traffic routing without stableService",
        ROLLOUT,
        "spec: {strategy: {canary: {stableService: null}}}",
        &[
            "spec.strategy.canary.trafficRouting",
            "requires both canaryService and stableService",
        ],
    ),
    case(
        "traffic routing without a router",
        ROLLOUT,
        "spec: {strategy: {canary: {trafficRouting: {istio: null}}}}",
        &[
            "spec.strategy.canary.trafficRouting",
            "exactly one of istio, nginx or gatewayAPI",
        ],
    ),
    case(
        "two routers",
        ROLLOUT,
        "spec: {strategy: {canary: {trafficRouting: {nginx: {stableIngress: web}}}}}",
        &[
            "spec.strategy.canary.trafficRouting",
            "exactly one of istio, nginx or gatewayAPI",
        ],
    ),
    case(
        "istio virtualService and virtualServices",
        ROLLOUT,
        "spec: {strategy: {canary: {trafficRouting: {istio: {virtualServices: [{name: other}]}}}}}",
        &[
            "spec.strategy.canary.trafficRouting.istio",
            "exactly one of virtualService or virtualServices",
        ],
    ),
    case(
        "istio virtualService without a name",
        ROLLOUT,
        "spec: {strategy: {canary: {trafficRouting: {istio: {virtualService: {name: null}}}}}}",
        &[
            "spec.strategy.canary.trafficRouting.istio.virtualService.name",
            "Required value",
        ],
    ),
    case(
        "istio tlsRoutes",
        ROLLOUT,
        "spec: {strategy: {canary: {trafficRouting: {istio: {virtualService: {tlsRoutes: [{port: 443}]}}}}}}",
        &[
            "spec.strategy.canary.trafficRouting.istio.virtualService.tlsRoutes",
            NOT_SUPPORTED,
        ],
    ),
    case(
        "istio destinationRule with one subset for both",
        ROLLOUT,
        "spec: {strategy: {canary: {trafficRouting: {istio: {destinationRule: {name: web, canarySubsetName: s, stableSubsetName: s}}}}}}",
        &[
            "spec.strategy.canary.trafficRouting.istio.destinationRule.canarySubsetName",
            "must differ",
        ],
    ),
    case(
        "nginx stableIngress and stableIngresses",
        ROLLOUT,
        "spec: {strategy: {canary: {trafficRouting: {istio: null, nginx: {stableIngress: a, stableIngresses: [b]}}}}}",
        &[
            "spec.strategy.canary.trafficRouting.nginx",
            "exactly one of stableIngress or stableIngresses",
        ],
    ),
    case(
        "gatewayAPI without a route",
        ROLLOUT,
        "spec: {strategy: {canary: {trafficRouting: {istio: null, gatewayAPI: {}}}}}",
        &[
            "spec.strategy.canary.trafficRouting.gatewayAPI",
            "exactly one of httpRoute or httpRoutes",
        ],
    ),
    case(
        "alb routing",
        ROLLOUT,
        "spec: {strategy: {canary: {trafficRouting: {istio: null, alb: {ingress: web, servicePort: 80}}}}}",
        &["spec.strategy.canary.trafficRouting.alb", NOT_SUPPORTED],
    ),
    case(
        "smi routing",
        ROLLOUT,
        "spec: {strategy: {canary: {trafficRouting: {istio: null, smi: {rootService: web}}}}}",
        &["spec.strategy.canary.trafficRouting.smi", NOT_SUPPORTED],
    ),
    case(
        "traffic router plugin",
        ROLLOUT,
        "spec: {strategy: {canary: {trafficRouting: {istio: null, plugins: {argoproj-labs/gatewayAPI: {httpRoute: web}}}}}}",
        &[
            "spec.strategy.canary.trafficRouting.plugins",
            NOT_SUPPORTED,
            "trafficRouting.gatewayAPI",
        ],
    ),
    case(
        "managedRoutes",
        ROLLOUT,
        "spec: {strategy: {canary: {trafficRouting: {managedRoutes: [{name: header}]}}}}",
        &[
            "spec.strategy.canary.trafficRouting.managedRoutes",
            NOT_SUPPORTED,
        ],
    ),
    case(
        "maxTrafficWeight with istio",
        ROLLOUT,
        "spec: {strategy: {canary: {trafficRouting: {maxTrafficWeight: 1000}}}}",
        &[
            "spec.strategy.canary.trafficRouting.maxTrafficWeight",
            "supported with nginx only",
        ],
    ),
    case(
        "setWeight above maxTrafficWeight",
        ROLLOUT,
        "spec: {strategy: {canary: {trafficRouting: {istio: null, nginx: {stableIngress: web}, maxTrafficWeight: 1000}, steps: [{setWeight: 500}, {setWeight: 1001}]}}}",
        &[
            "spec.strategy.canary.steps",
            "or trafficRouting.maxTrafficWeight when set",
        ],
    ),
    case(
        "setCanaryScale weight above 100",
        ROLLOUT,
        "spec: {strategy: {canary: {steps: [{setCanaryScale: {weight: 150}}]}}}",
        &["spec.strategy.canary.steps", "at most 100"],
    ),
    // --- Rollout: other canary fields -----------------------------------------------------
    case(
        "maxSurge and maxUnavailable both 0",
        ROLLOUT,
        "spec: {strategy: {canary: {maxSurge: 0, maxUnavailable: '0%'}}}",
        &["spec.strategy.canary.maxUnavailable", "cannot both be 0"],
    ),
    case(
        "maxSurge not a percentage",
        ROLLOUT,
        "spec: {strategy: {canary: {maxSurge: lots}}}",
        &["spec.strategy.canary.maxSurge", "percentage"],
    ),
    case(
        "negative scaleDownDelaySeconds",
        ROLLOUT,
        "spec: {strategy: {canary: {scaleDownDelaySeconds: -1}}}",
        &[
            "spec.strategy.canary.scaleDownDelaySeconds",
            "greater than or equal to 0",
        ],
    ),
    case(
        "background analysis startingStep past the steps",
        ROLLOUT,
        "spec: {strategy: {canary: {analysis: {startingStep: 5}}}}",
        &[
            "spec.strategy.canary.analysis.startingStep",
            "index of one of the steps",
        ],
    ),
    case(
        "dynamicStableScale without trafficRouting",
        ROLLOUT,
        "spec: {strategy: {canary: {dynamicStableScale: true, trafficRouting: null}}}",
        &[
            "spec.strategy.canary.dynamicStableScale",
            "applies only with trafficRouting",
        ],
    ),
    case(
        "dynamicStableScale with scaleDownDelaySeconds",
        ROLLOUT,
        "spec: {strategy: {canary: {dynamicStableScale: true, scaleDownDelaySeconds: 30}}}",
        &[
            "spec.strategy.canary.scaleDownDelaySeconds",
            "cannot be used with scaleDownDelaySeconds",
        ],
    ),
    case(
        "antiAffinity with both kinds",
        ROLLOUT,
        "spec: {strategy: {canary: {antiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: {weight: 1}, requiredDuringSchedulingIgnoredDuringExecution: {}}}}}",
        &["spec.strategy.canary.antiAffinity", "exactly one of"],
    ),
    case(
        "antiAffinity weight above 100",
        ROLLOUT,
        "spec: {strategy: {canary: {antiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: {weight: 101}}}}}",
        &[
            "spec.strategy.canary.antiAffinity.preferredDuringSchedulingIgnoredDuringExecution.weight",
            "less than or equal to 100",
        ],
    ),
    case(
        "canaryMetadata reusing a template label",
        ROLLOUT,
        "spec: {strategy: {canary: {canaryMetadata: {labels: {app: other}}}}}",
        &[
            "spec.strategy.canary.canaryMetadata.labels",
            "may not reuse a key of template.metadata.labels",
        ],
    ),
    case(
        "canaryMetadata with a label value Kubernetes refuses",
        ROLLOUT,
        "spec: {strategy: {canary: {canaryMetadata: {labels: {role: 'canary pods!'}}}}}",
        &[
            "spec.strategy.canary.canaryMetadata.labels.role",
            "should match",
        ],
    ),
    case(
        "stableMetadata with a label key Kubernetes refuses",
        ROLLOUT,
        "spec: {strategy: {canary: {stableMetadata: {labels: {'bad key': x}}}}}",
        &[
            "spec.strategy.canary.stableMetadata.labels",
            "label keys must be Kubernetes qualified names",
        ],
    ),
    case(
        "previewMetadata with a label key prefix over 253 characters",
        BLUE_GREEN,
        "spec: {strategy: {blueGreen: {previewMetadata: {labels: {aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/x: x}}}}}",
        &[
            "spec.strategy.blueGreen.previewMetadata.labels",
            "label keys must be Kubernetes qualified names",
        ],
    ),
    case(
        "canaryMetadata with an annotation key Kubernetes refuses",
        ROLLOUT,
        "spec: {strategy: {canary: {canaryMetadata: {annotations: {'not a valid key!': x}}}}}",
        &[
            "spec.strategy.canary.canaryMetadata.annotations",
            "annotation keys must be Kubernetes qualified names",
        ],
    ),
    case(
        "stableMetadata setting the pod-template hash",
        ROLLOUT,
        "spec: {strategy: {canary: {stableMetadata: {labels: {rollouts-pod-template-hash: x}}}}}",
        &[
            "spec.strategy.canary.stableMetadata.labels",
            "rollouts-pod-template-hash label is Aviary's",
        ],
    ),
    case(
        "replicaProgressThreshold above 100 %",
        ROLLOUT,
        "spec: {strategy: {canary: {replicaProgressThreshold: {type: Percent, value: 101}}}}",
        &[
            "spec.strategy.canary.replicaProgressThreshold.value",
            "at most 100",
        ],
    ),
    case(
        "replicaProgressThreshold of another type",
        ROLLOUT,
        "spec: {strategy: {canary: {replicaProgressThreshold: {type: Replicas, value: 2}}}}",
        &[
            "spec.strategy.canary.replicaProgressThreshold.type",
            "Unsupported value",
        ],
    ),
    case(
        "pingPong",
        ROLLOUT,
        "spec: {strategy: {canary: {pingPong: {pingService: a, pongService: b}}}}",
        &["spec.strategy.canary.pingPong", NOT_SUPPORTED],
    ),
    case(
        "minPodsPerReplicaSet without trafficRouting",
        ROLLOUT,
        "spec: {strategy: {canary: {minPodsPerReplicaSet: 2, trafficRouting: null}}}",
        &[
            "spec.strategy.canary.minPodsPerReplicaSet",
            "applies only with trafficRouting",
        ],
    ),
    case(
        "unknown canary field",
        ROLLOUT,
        "spec: {strategy: {canary: {stepz: []}}}",
        &[
            ".spec.strategy.canary.stepz",
            "field not declared in schema",
        ],
    ),
    // --- Rollout: spec ------------------------------------------------------------------
    case(
        "workloadRef beside a template",
        ROLLOUT,
        "spec: {workloadRef: {apiVersion: apps/v1, kind: Deployment, name: web}}",
        &[
            "spec.template",
            "template and workloadRef exclude each other",
        ],
    ),
    case(
        "workloadRef to a ReplicaSet",
        ROLLOUT,
        "spec: {template: null, workloadRef: {apiVersion: apps/v1, kind: ReplicaSet, name: web}}",
        &["spec.workloadRef.kind", "apps/v1 Deployment only"],
    ),
    case(
        "workloadRef scaleDown misspelt",
        ROLLOUT,
        "spec: {template: null, workloadRef: {apiVersion: apps/v1, kind: Deployment, name: web, scaleDown: onSuccess}}",
        &["spec.workloadRef.scaleDown", "onsuccess"],
    ),
    case(
        "workloadRef without a name",
        ROLLOUT,
        "spec: {template: null, workloadRef: {apiVersion: apps/v1, kind: Deployment, name: \"\"}}",
        &["spec.workloadRef.name"],
    ),
    case(
        "negative rollbackWindow",
        ROLLOUT,
        "spec: {rollbackWindow: {revisions: -1}}",
        &["spec.rollbackWindow.revisions"],
    ),
    case(
        "selector not matching the template's labels",
        ROLLOUT,
        "spec: {selector: {matchLabels: {app: api}}}",
        &[
            "spec.selector",
            "selector.matchLabels must match template.metadata.labels",
        ],
    ),
    case(
        "template without labels",
        ROLLOUT,
        "spec: {template: {metadata: null}}",
        &[
            "spec.selector",
            "selector.matchLabels must match template.metadata.labels",
        ],
    ),
    case(
        "missing selector",
        ROLLOUT,
        "spec: {selector: null}",
        &["spec.selector", "selector is required"],
    ),
    case(
        "missing template",
        ROLLOUT,
        "spec: {template: null}",
        &["spec.template", "template is required"],
    ),
    case(
        "negative replicas",
        ROLLOUT,
        "spec: {replicas: -1}",
        &["spec.replicas", "greater than or equal to 0"],
    ),
    case(
        "progress deadline not above minReadySeconds",
        ROLLOUT,
        "spec: {minReadySeconds: 600}",
        &[
            "spec.progressDeadlineSeconds",
            "greater than minReadySeconds",
        ],
    ),
    case(
        "unknown spec field",
        ROLLOUT,
        "spec: {replica: 3}",
        &[".spec.replica", "field not declared in schema"],
    ),
    Case {
        name: "selector changed",
        base: ROLLOUT,
        patch: "spec: {selector: {matchLabels: {app: other}}, template: {metadata: {labels: {app: other}}}}",
        expect: &["spec.selector", "immutable"],
        update: true,
    },
    // --- Rollout: blue-green ------------------------------------------------------------
    case(
        "activeService equals previewService",
        BLUE_GREEN,
        "spec: {strategy: {blueGreen: {previewService: web-active}}}",
        &[
            "spec.strategy.blueGreen.previewService",
            "must name different Services",
        ],
    ),
    case(
        "blue-green without activeService",
        BLUE_GREEN,
        "spec: {strategy: {blueGreen: {activeService: null}}}",
        &["spec.strategy.blueGreen.activeService", "Required value"],
    ),
    case(
        "scaleDownDelayRevisionLimit above revisionHistoryLimit",
        BLUE_GREEN,
        "spec: {revisionHistoryLimit: 2, strategy: {blueGreen: {scaleDownDelayRevisionLimit: 3}}}",
        &[
            "spec.strategy.blueGreen.scaleDownDelayRevisionLimit",
            "cannot exceed revisionHistoryLimit",
        ],
    ),
    case(
        "negative scaleDownDelayRevisionLimit",
        ROLLOUT,
        "spec: {strategy: {canary: {scaleDownDelayRevisionLimit: -1}}}",
        &[
            "spec.strategy.canary.scaleDownDelayRevisionLimit",
            "greater than or equal to 0",
        ],
    ),
    case(
        "negative autoPromotionSeconds",
        BLUE_GREEN,
        "spec: {strategy: {blueGreen: {autoPromotionSeconds: -5}}}",
        &[
            "spec.strategy.blueGreen.autoPromotionSeconds",
            "greater than or equal to 0",
        ],
    ),
    case(
        "activeMetadata reusing a template annotation",
        BLUE_GREEN,
        "spec: {template: {metadata: {annotations: {team: a}}}, strategy: {blueGreen: {activeMetadata: {annotations: {team: b}}}}}",
        &[
            "spec.strategy.blueGreen.activeMetadata.annotations",
            "may not reuse a key of template.metadata.annotations",
        ],
    ),
    case(
        "blue-green maxUnavailable not a count or percentage",
        BLUE_GREEN,
        "spec: {strategy: {blueGreen: {maxUnavailable: half}}}",
        &[
            "spec.strategy.blueGreen.maxUnavailable",
            "must be an integer from 0 to 2147483647 or a percentage",
        ],
    ),
    case(
        "prePromotionAnalysis without templates",
        BLUE_GREEN,
        "spec: {strategy: {blueGreen: {prePromotionAnalysis: {templates: null}}}}",
        &[
            "spec.strategy.blueGreen.prePromotionAnalysis.templates",
            "Required value",
        ],
    ),
    // --- AnalysisTemplate ------------------------------------------------------------------
    case(
        "metric without provider",
        TEMPLATE,
        "spec: {metrics: [{name: m, successCondition: 'true'}]}",
        &["spec.metrics[0].provider", "Required value"],
    ),
    case(
        "metric with an empty provider",
        TEMPLATE,
        "spec: {metrics: [{name: m, provider: {}}]}",
        &["spec.metrics[0].provider", "one of prometheus, web or job"],
    ),
    case(
        "metric with two providers",
        TEMPLATE,
        "spec: {metrics: [{name: m, provider: {prometheus: {query: up}, web: {url: 'http://x'}}}]}",
        &[
            "spec.metrics[0].provider",
            "only one of prometheus, web or job",
        ],
    ),
    case(
        "count above 1 without interval",
        TEMPLATE,
        "spec: {metrics: [{name: m, count: 5, provider: {prometheus: {query: up}}}]}",
        &["spec.metrics[0].count", "count > 1 requires interval"],
    ),
    case(
        "count below failureLimit",
        TEMPLATE,
        "spec: {metrics: [{name: m, interval: 1m, count: 2, failureLimit: 3, provider: {prometheus: {query: up}}}]}",
        &[
            "spec.metrics[0].count",
            "count must be >= failureLimit + consecutiveSuccessLimit",
        ],
    ),
    case(
        "interval not a duration",
        TEMPLATE,
        "spec: {metrics: [{name: m, interval: soon, provider: {prometheus: {query: up}}}]}",
        &["spec.metrics[0].interval", "duration string"],
    ),
    case(
        "initialDelay with a space",
        TEMPLATE,
        "spec: {metrics: [{name: m, initialDelay: 5 m, provider: {prometheus: {query: up}}}]}",
        &["spec.metrics[0].initialDelay", "duration string"],
    ),
    case(
        "failureLimit below -1",
        TEMPLATE,
        "spec: {metrics: [{name: m, failureLimit: -2, provider: {prometheus: {query: up}}}]}",
        &["spec.metrics[0].failureLimit", "must be >= -1"],
    ),
    case(
        "failureLimit -1 without consecutiveSuccessLimit",
        TEMPLATE,
        "spec: {metrics: [{name: m, interval: 1m, failureLimit: -1, provider: {prometheus: {query: up}}}]}",
        &[
            "spec.metrics[0].failureLimit",
            "requires consecutiveSuccessLimit",
        ],
    ),
    case(
        "failureLimit neither integer nor argument",
        TEMPLATE,
        "spec: {metrics: [{name: m, failureLimit: lots, provider: {prometheus: {query: up}}}]}",
        &["spec.metrics[0].failureLimit", "{{args.NAME}}"],
    ),
    case(
        "negative consecutiveErrorLimit",
        TEMPLATE,
        "spec: {metrics: [{name: m, consecutiveErrorLimit: -1, provider: {prometheus: {query: up}}}]}",
        &["spec.metrics[0].consecutiveErrorLimit", "must be >= 0"],
    ),
    case(
        "duplicate metric names",
        TEMPLATE,
        "spec: {metrics: [{name: m, provider: {prometheus: {query: up}}}, {name: m, provider: {prometheus: {query: down}}}]}",
        &[".spec.metrics", r#"duplicate entries for key [name="m"]"#],
    ),
    case(
        "no metrics",
        TEMPLATE,
        "spec: {metrics: []}",
        &["spec", "a template needs metrics, templates"],
    ),
    case(
        "metric without a name",
        TEMPLATE,
        "spec: {metrics: [{provider: {prometheus: {query: up}}}]}",
        &[
            ".spec.metrics",
            r#"element 0: associative list with keys has an element that omits all key fields ["name"]"#,
        ],
    ),
    case(
        "prometheus without a query",
        TEMPLATE,
        "spec: {metrics: [{name: m, provider: {prometheus: {address: 'http://p:9090'}}}]}",
        &[
            "spec.metrics[0].provider.prometheus.query",
            "Required value",
        ],
    ),
    case(
        "prometheus rangeQuery without a step",
        TEMPLATE,
        "spec: {metrics: [{name: m, provider: {prometheus: {query: up, rangeQuery: {start: 'now() - duration(\"5m\")', end: 'now()'}}}}]}",
        &[
            "spec.metrics[0].provider.prometheus.rangeQuery.step",
            "Required value",
        ],
    ),
    case(
        "prometheus sigv4",
        TEMPLATE,
        "spec: {metrics: [{name: m, provider: {prometheus: {query: up, authentication: {sigv4: {region: eu-west-1}}}}}]}",
        &[
            "spec.metrics[0].provider.prometheus.authentication.sigv4",
            NOT_SUPPORTED,
        ],
    ),
    case(
        "web oauth2 without its client",
        TEMPLATE,
        "spec: {metrics: [{name: m, provider: {web: {url: 'http://x', authentication: {oauth2: {tokenUrl: 'http://t'}}}}}]}",
        &[
            "spec.metrics[0].provider.web.authentication.oauth2.clientId",
            "Required value",
        ],
    ),
    case(
        "web basicAuth and oauth2",
        TEMPLATE,
        "spec: {metrics: [{name: m, provider: {web: {url: 'http://x', authentication: {basicAuth: {username: u, password: p}, oauth2: {tokenUrl: 'http://t', clientId: c, clientSecret: s}}}}}]}",
        &[
            "spec.metrics[0].provider.web.authentication.oauth2",
            "either basicAuth or oauth2",
        ],
    ),
    case(
        "prometheus timeout of 0",
        TEMPLATE,
        "spec: {metrics: [{name: m, provider: {prometheus: {query: up, timeout: 0}}}]}",
        &[
            "spec.metrics[0].provider.prometheus.timeout",
            "greater than or equal to 1",
        ],
    ),
    case(
        "datadog provider",
        TEMPLATE,
        "spec: {metrics: [{name: m, provider: {datadog: {query: 'avg:x'}}}]}",
        &["spec.metrics[0].provider.datadog", NOT_SUPPORTED],
    ),
    case(
        "job provider with a condition",
        TEMPLATE,
        "spec: {metrics: [{name: m, successCondition: 'result == 1', provider: {job: {spec: {template: {}}}}}]}",
        &[
            "spec.metrics[0].provider.job",
            "a job metric's result is its Job's outcome",
        ],
    ),
    case(
        "job and prometheus",
        TEMPLATE,
        "spec: {metrics: [{name: m, provider: {prometheus: {query: up}, job: {spec: {template: {}}}}}]}",
        &[
            "spec.metrics[0].provider",
            "only one of prometheus, web or job",
        ],
    ),
    case(
        "web PATCH",
        TEMPLATE,
        "spec: {metrics: [{name: m, provider: {web: {url: 'http://x', method: PATCH}}}]}",
        &[
            "spec.metrics[0].provider.web.method",
            "GET (the default), POST or PUT",
        ],
    ),
    case(
        "web body with GET",
        TEMPLATE,
        "spec: {metrics: [{name: m, provider: {web: {url: 'http://x', body: '{}'}}}]}",
        &[
            "spec.metrics[0].provider.web.method",
            "only with method POST or PUT",
        ],
    ),
    case(
        "web body and jsonBody",
        TEMPLATE,
        "spec: {metrics: [{name: m, provider: {web: {url: 'http://x', method: POST, body: '{}', jsonBody: {a: 1}}}}]}",
        &[
            "spec.metrics[0].provider.web.jsonBody",
            "either body or jsonBody",
        ],
    ),
    case(
        "argument with value and valueFrom",
        TEMPLATE,
        "spec: {args: [{name: a, value: x, valueFrom: {secretKeyRef: {name: s, key: k}}}]}",
        &["spec.args[0].valueFrom", "either value or valueFrom"],
    ),
    case(
        "valueFrom with two sources",
        TEMPLATE,
        "spec: {args: [{name: a, valueFrom: {secretKeyRef: {name: s, key: k}, fieldRef: {fieldPath: metadata.name}}}]}",
        &[
            "spec.args[0].valueFrom",
            "exactly one of secretKeyRef or fieldRef",
        ],
    ),
    case(
        "duplicate template arguments",
        TEMPLATE,
        "spec: {args: [{name: a}, {name: a}]}",
        &[".spec.args", r#"duplicate entries for key [name="a"]"#],
    ),
    case(
        "nested template without a name",
        TEMPLATE,
        "spec: {templates: [{clusterScope: true}]}",
        &["spec.templates[0].templateName", "Required value"],
    ),
    case(
        "measurementRetention limit 0",
        TEMPLATE,
        "spec: {measurementRetention: [{metricName: success-rate, limit: 0}]}",
        &[
            "spec.measurementRetention[0].limit",
            "greater than or equal to 1",
        ],
    ),
    case(
        "unknown metric field",
        TEMPLATE,
        "spec: {metrics: [{name: m, succesCondition: x, provider: {prometheus: {query: up}}}]}",
        &[
            r#".spec.metrics[name="m"].succesCondition"#,
            "field not declared in schema",
        ],
    ),
    // --- ClusterAnalysisTemplate and AnalysisRun ----------------------------------------------
    case(
        "cluster template web without url",
        CLUSTER_TEMPLATE,
        "spec: {metrics: [{name: up, provider: {web: {jsonPath: x}}}]}",
        &["spec.metrics[0].provider.web.url", "Required value"],
    ),
    case(
        "cluster template kayenta",
        CLUSTER_TEMPLATE,
        "spec: {metrics: [{name: up, provider: {kayenta: {address: 'http://k'}}}]}",
        &["spec.metrics[0].provider.kayenta", NOT_SUPPORTED],
    ),
    case(
        "run ttlStrategy",
        RUN,
        "spec: {ttlStrategy: {secondsAfterCompletion: 60}}",
        &["spec.ttlStrategy", NOT_SUPPORTED],
    ),
    case(
        "run metric count without interval",
        RUN,
        "spec: {metrics: [{name: m, count: 3, provider: {prometheus: {query: up}}}]}",
        &["spec.metrics[0].count", "count > 1 requires interval"],
    ),
    case(
        "run without metrics",
        RUN,
        "spec: {metrics: null}",
        &["spec.metrics", "Required value"],
    ),
];

/// Merges `patch` into `base`: objects merge key by key, `null` deletes, anything else replaces.
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else {
                    merge(b.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("bad YAML in the table: {e}\n{text}"))
}

#[tokio::test]
async fn invalid_manifests_are_rejected_naming_the_field() {
    assert!(CASES.len() >= 40, "the table needs at least 40 cases");
    let client = client().await;
    install(&client).await;
    let ns = TestNamespace::new(&client, "admission-invalid").await;

    // Every base is valid as it stands, so each rejection below comes from its patch. The bases
    // are created for real: update cases apply to them.
    for base in [ROLLOUT, BLUE_GREEN, TEMPLATE, CLUSTER_TEMPLATE, RUN] {
        let doc = yaml(base);
        apply(&client, &ns.name, &doc, false)
            .await
            .unwrap_or_else(|e| panic!("base {} was rejected: {e}", doc["metadata"]["name"]));
    }

    let mut failures = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let mut doc = yaml(case.base);
        merge(&mut doc, &yaml(case.patch));
        if !case.update && doc["kind"] != "ClusterAnalysisTemplate" {
            doc["metadata"]["name"] = Value::from(format!("case-{i}"));
        }
        match apply(&client, &ns.name, &doc, true).await {
            Ok(_) => failures.push(format!("{:>2} {}: accepted", i, case.name)),
            Err(kube::Error::Api(status)) => {
                let missing: Vec<_> = case
                    .expect
                    .iter()
                    .filter(|s| !status.message.contains(*s))
                    .collect();
                if !missing.is_empty() {
                    failures.push(format!(
                        "{:>2} {}: rejected without {missing:?}: {}",
                        i, case.name, status.message
                    ));
                }
            }
            Err(e) => failures.push(format!("{:>2} {}: request failed: {e}", i, case.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

/// F14 (issue 21): a Rollout named with 64+ characters was admitted, then every ReplicaSet
/// create failed (the name is a label value, at most 63) and was retried forever, with no
/// status and no Event. It is refused at admission, naming the field and the limit; 63 is fine.
#[tokio::test]
async fn a_rollout_name_longer_than_a_label_value_is_refused() {
    let client = client().await;
    install(&client).await;
    let ns = TestNamespace::new(&client, "admission-long-name").await;
    let mut doc = yaml(ROLLOUT);
    doc["metadata"]["name"] = Value::from("a".repeat(64));
    match apply(&client, &ns.name, &doc, true).await {
        Ok(_) => panic!("a 64-character Rollout name was accepted"),
        Err(kube::Error::Api(status)) => {
            assert!(
                status
                    .message
                    .contains("metadata.name must be at most 63 characters"),
                "{}",
                status.message
            );
        }
        Err(e) => panic!("request failed: {e}"),
    }
    doc["metadata"]["name"] = Value::from("a".repeat(63));
    apply(&client, &ns.name, &doc, true)
        .await
        .unwrap_or_else(|e| panic!("a 63-character name was refused: {e}"));
}

/// Only int32 fields are bounded as int32 (found by review: resource quantities, which are
/// int-or-string too, were bounded, refusing `memory: 4294967296` that was valid and decodes).
#[tokio::test]
async fn an_integer_quantity_past_int32_is_admitted() {
    let client = client().await;
    install(&client).await;
    let ns = TestNamespace::new(&client, "admission-quantity").await;
    let mut doc = yaml(ROLLOUT);
    doc["spec"]["template"]["spec"]["containers"][0]["resources"] =
        serde_json::json!({"limits": {"memory": 4_294_967_296_u64}});
    apply(&client, &ns.name, &doc, true)
        .await
        .unwrap_or_else(|e| panic!("an integer memory limit past 2^31 was refused: {e}"));
    let ro: aviary::api::lenient::Lenient<aviary::api::Rollout> =
        serde_json::from_value(doc).expect("metadata");
    assert!(
        matches!(ro, aviary::api::lenient::Lenient::Decoded(_)),
        "and it decodes"
    );
}
