//! `kubectl aviary`: the SRE's kubectl plugin — inspect and steer Rollouts from the terminal.
//!
//! Each command group has its module; the pure parts (building the rollout tree from objects,
//! choosing promote's patch, undo's template, lint and convert) are plain functions with table
//! tests, and the I/O around them is thin. Dependency direction: `cli` uses `api` (and
//! `plan::pod_template_hash`, `analysis::condition` for lint), never the controller.
//!
//! Conventions follow kubectl: `--kubeconfig`, `--context`, `-n/--namespace` (default: the
//! context's namespace), `-A` for lists, `-o json|yaml`, and exit codes scripts can rely on
//! (see [`errors`]).

pub mod actions;
pub mod convert;
pub mod errors;
pub mod get;
pub mod history;
pub mod info;
pub mod lint;
pub mod list;
pub mod migrate;
pub mod render;
pub mod status;
pub mod version;

use std::path::PathBuf;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use serde::Serialize;

use crate::api::lenient::Lenient;
use crate::api::wire::{ARGO_REVISION_ANNOTATION, REVISION_ANNOTATION, ROLLOUT_LABEL};
use crate::api::{AnalysisRun, Rollout};
pub use errors::{CliError, Op};

/// `-o`: how to print a result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// For people.
    #[default]
    Text,
    Json,
    Yaml,
}

impl Output {
    /// Parses `-o`'s value.
    pub fn parse(s: &str) -> Result<Output, CliError> {
        match s {
            "json" => Ok(Output::Json),
            "yaml" => Ok(Output::Yaml),
            "text" | "wide" | "" => Ok(Output::Text),
            other => Err(CliError::Usage(format!(
                "unknown output format '{other}': use -o json or -o yaml"
            ))),
        }
    }

    /// Serialises `value` as JSON or YAML (`None` for text).
    pub fn encode<T: Serialize>(self, value: &T) -> Result<Option<String>, CliError> {
        let text = match self {
            Output::Text => return Ok(None),
            Output::Json => serde_json::to_string_pretty(value)
                .map(|s| s + "\n")
                .map_err(|e| CliError::Output(e.to_string()))?,
            Output::Yaml => {
                serde_yaml::to_string(value).map_err(|e| CliError::Output(e.to_string()))?
            }
        };
        Ok(Some(text))
    }
}

/// Which cluster and namespace: kubectl's global flags.
#[derive(Clone, Debug, Default)]
pub struct Target {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub namespace: Option<String>,
}

/// A connection to the cluster and the namespace commands act in.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
    /// The API server's URL, for messages.
    pub server: String,
}

/// Builds a client as kubectl would: `--kubeconfig`, else `$KUBECONFIG` (merged), else
/// `~/.kube/config`, else in-cluster; `--context` picks the context.
pub async fn connect(target: &Target) -> Result<Cluster, CliError> {
    let options = KubeConfigOptions {
        context: target.context.clone(),
        ..Default::default()
    };
    let described = |e: &dyn std::fmt::Display| errors::one_line(&e.to_string());
    let mut config = match &target.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| {
                CliError::Kubeconfig(format!(
                    "cannot read kubeconfig {}: {}",
                    path.display(),
                    described(&e)
                ))
            })?;
            Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| kubeconfig_error(&e.to_string(), target))?
        }
        None => match Config::from_kubeconfig(&options).await {
            Ok(c) => c,
            Err(e) if target.context.is_none() => match Config::incluster() {
                Ok(c) => c,
                Err(_) => return Err(kubeconfig_error(&e.to_string(), target)),
            },
            Err(e) => return Err(kubeconfig_error(&e.to_string(), target)),
        },
    };
    config.connect_timeout = Some(std::time::Duration::from_secs(10));
    let server = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_string();
    let namespace = target
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| errors::from_transport(&e, &server))?;
    Ok(Cluster {
        client,
        namespace,
        server,
    })
}

fn kubeconfig_error(message: &str, target: &Target) -> CliError {
    let m = errors::one_line(message);
    let hint = if let Some(ctx) = &target.context {
        format!("check that context '{ctx}' exists (kubectl config get-contexts)")
    } else {
        "set KUBECONFIG or pass --kubeconfig".to_string()
    };
    CliError::Kubeconfig(format!("no usable cluster configuration: {m}: {hint}"))
}

impl Cluster {
    /// Turns a failed request into the one-line error, asking discovery when a 404 may mean
    /// that Aviary is not installed.
    pub async fn error(&self, err: kube::Error, op: &Op) -> CliError {
        match &err {
            kube::Error::Api(status) => match errors::classify_status(status, op) {
                errors::Classified::Final(msg, kind) => {
                    errors::from_classified(msg, kind, op, &self.server)
                }
                errors::Classified::MaybeNotInstalled => {
                    if self.aviary_installed().await {
                        errors::from_classified(
                            format!(
                                "{} not found: {}",
                                op.name.as_deref().unwrap_or(op.resource),
                                errors::one_line(&status.message)
                            ),
                            errors::Kind::NotFound,
                            op,
                            &self.server,
                        )
                    } else {
                        CliError::NotInstalled {
                            server: self.server.clone(),
                        }
                    }
                }
            },
            _ => errors::from_transport(&err, &self.server),
        }
    }

    /// Whether the cluster serves `aviary.dev/v1alpha1` (an error other than 404 counts as yes:
    /// the real request's error is then the better message).
    pub async fn aviary_installed(&self) -> bool {
        match self
            .client
            .list_api_group_resources(crate::api::API_VERSION)
            .await
        {
            Ok(list) => list.resources.iter().any(|r| r.name == "rollouts"),
            Err(e) => !errors::is_not_found(&e),
        }
    }

    pub fn rollouts(&self) -> Api<Rollout> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Reads one Rollout, with the one-line error when it can't.
    pub async fn rollout(&self, name: &str) -> Result<Rollout, CliError> {
        let api: Api<Lenient<Rollout>> = Api::namespaced(self.client.clone(), &self.namespace);
        match api.get(name).await {
            Ok(Lenient::Decoded(r)) => Ok(self.with_workload(r).await),
            Ok(Lenient::Undecodable(u)) => Err(CliError::Refused(format!(
                "rollout '{name}' cannot be read: {}; fix that field (the controller leaves the rollout alone until then)",
                u.error
            ))),
            Err(e) => Err(self
                .error(
                    e,
                    &Op::new("get", "rollouts.aviary.dev", &self.namespace).named(name),
                )
                .await),
        }
    }

    /// With `workloadRef`: the Rollout with its Deployment's pod template (and selector, when it
    /// has none), as the controller sees it. Unresolved when the Deployment can't be read or
    /// used: what the Rollout shows then comes from its status, and the controller reports why.
    pub(crate) async fn with_workload(&self, ro: Rollout) -> Rollout {
        let Some(reference) = &ro.spec.workload_ref else {
            return ro;
        };
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        match api.get(&reference.name).await {
            Ok(deployment) => crate::plan::workload::resolve(&ro, &deployment)
                .map(|(resolved, _)| resolved)
                .unwrap_or(ro),
            Err(_) => ro,
        }
    }

    /// The ReplicaSets the Rollout controls, read from the API server (never a cache: the
    /// controller's cache is trimmed of pod templates), oldest revision first.
    pub async fn replica_sets(&self, ro: &Rollout) -> Result<Vec<ReplicaSet>, CliError> {
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &self.namespace);
        let lp = ListParams::default().labels(&format!("{ROLLOUT_LABEL}={}", ro.name_any()));
        let list = match api.list(&lp).await {
            Ok(l) => l.items,
            Err(e) => {
                return Err(self
                    .error(e, &Op::new("list", "replicasets", &self.namespace))
                    .await);
            }
        };
        let uid = ro.metadata.uid.clone().unwrap_or_default();
        let mut owned: Vec<ReplicaSet> = list
            .into_iter()
            .filter(|rs| {
                rs.owner_references()
                    .iter()
                    .any(|o| o.uid == uid && o.controller == Some(true))
            })
            .collect();
        owned.sort_by_key(|rs| (revision_of(rs).unwrap_or(0), rs.name_any()));
        Ok(owned)
    }

    /// The pods selected by the Rollout's selector (grouped by ReplicaSet later).
    pub async fn pods(&self, ro: &Rollout) -> Result<Vec<Pod>, CliError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let lp = ListParams::default().labels(&selector_string(ro));
        match api.list(&lp).await {
            Ok(l) => Ok(l.items),
            Err(e) => Err(self
                .error(e, &Op::new("list", "pods", &self.namespace))
                .await),
        }
    }

    /// The AnalysisRuns of the Rollout: owned by it, labelled with its name, or named in its
    /// status.
    pub async fn analysis_runs(&self, ro: &Rollout) -> Result<Vec<AnalysisRun>, CliError> {
        // Decoded one by one: a run our types reject is left out with a warning.
        let api: Api<Lenient<AnalysisRun>> = Api::namespaced(self.client.clone(), &self.namespace);
        let list: Vec<AnalysisRun> = match api.list(&ListParams::default()).await {
            Ok(l) => l
                .items
                .into_iter()
                .filter_map(|run| match run {
                    Lenient::Decoded(run) => Some(run),
                    Lenient::Undecodable(u) => {
                        eprintln!(
                            "warning: analysisrun {} cannot be read: {}; fix that field",
                            u.metadata.name.as_deref().unwrap_or_default(),
                            u.error
                        );
                        None
                    }
                })
                .collect(),
            Err(e) => {
                return Err(self
                    .error(
                        e,
                        &Op::new("list", "analysisruns.aviary.dev", &self.namespace),
                    )
                    .await);
            }
        };
        Ok(list
            .into_iter()
            .filter(|run| info::run_belongs_to(run, ro))
            .collect())
    }
}

/// `spec.selector.matchLabels` as a label selector string (`a=b,c=d`).
pub fn selector_string(ro: &Rollout) -> String {
    ro.spec
        .selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A ReplicaSet's revision number (Argo Rollouts' on one taken over from it, as the controller
/// reads it).
pub fn revision_of(rs: &ReplicaSet) -> Option<i64> {
    rs.annotations()
        .get(REVISION_ANNOTATION)
        .or_else(|| rs.annotations().get(ARGO_REVISION_ANNOTATION))
        .and_then(|r| r.parse().ok())
}

/// Writes to stdout, turning a closed pipe into a quiet success (`… | head`).
pub fn print(text: &str) -> Result<(), CliError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e.into()),
    }
}
