//! `kubectl aviary version`: the plugin's build, and the Aviary controllers the cluster runs (the
//! Deployments the chart labels `app.kubernetes.io/name=aviary`), with a warning when their
//! versions differ from the plugin's.

use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde::Serialize;

use super::{CliError, Cluster, Op, Output, print};
use crate::build_info;

/// The chart's labels of the controller's Deployment (`part-of`, which `nameOverride` keeps).
pub const CONTROLLER_SELECTOR: &str =
    "app.kubernetes.io/part-of=aviary,app.kubernetes.io/component=controller";

/// A build of Aviary.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Build {
    pub version: String,
    pub revision: String,
    pub build_date: String,
}

/// A controller Deployment found in the cluster.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Controller {
    pub namespace: String,
    pub name: String,
    /// Its `app.kubernetes.io/version` label (the chart's appVersion).
    pub version: Option<String>,
    pub image: Option<String>,
    /// `ready/desired` replicas.
    pub ready: String,
}

#[derive(Debug, Serialize)]
struct Versions {
    plugin: Build,
    #[serde(skip_serializing_if = "Option::is_none")]
    controllers: Option<Vec<Controller>>,
    /// Where controllers were looked for, when not in every namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    searched: Option<String>,
}

/// This binary's build.
pub fn plugin() -> Build {
    Build {
        version: build_info::VERSION.into(),
        revision: build_info::REVISION.into(),
        build_date: build_info::BUILD_DATE.into(),
    }
}

/// What a controller Deployment tells of the controller it runs.
pub fn controller(d: &Deployment) -> Controller {
    let spec = d.spec.as_ref();
    let image = spec
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.iter().find(|c| c.name == "controller"))
        .and_then(|c| c.image.clone());
    let desired = spec.and_then(|s| s.replicas).unwrap_or(1);
    let ready = d
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    Controller {
        namespace: d.namespace().unwrap_or_default(),
        name: d.name_any(),
        version: d.labels().get("app.kubernetes.io/version").cloned(),
        image,
        ready: format!("{ready}/{desired}"),
    }
}

/// The text of `version`: the plugin's line, then one per controller (`None`: none looked
/// for), and a warning for each whose version is not the plugin's; `searched` says where they
/// were looked for when not everywhere.
pub fn text(plugin: &Build, controllers: Option<&[Controller]>, searched: Option<&str>) -> String {
    let mut out = format!(
        "kubectl-aviary {} (revision {}, built {})\n",
        plugin.version, plugin.revision, plugin.build_date
    );
    let Some(controllers) = controllers else {
        return out;
    };
    if controllers.is_empty() {
        let where_ = searched.map_or(String::new(), |s| format!(" {s}"));
        out.push_str(&format!(
            "controller: none found{where_} (no Deployment labelled {CONTROLLER_SELECTOR})\n"
        ));
    }
    for c in controllers {
        out.push_str(&format!(
            "controller {}/{}: {}, image {}, {} ready\n",
            c.namespace,
            c.name,
            c.version.as_deref().unwrap_or("version unknown"),
            c.image.as_deref().unwrap_or("unknown"),
            c.ready
        ));
        if let Some(v) = c.version.as_deref().filter(|v| *v != plugin.version) {
            out.push_str(&format!(
                "warning: controller {}/{} is {v}, the plugin {}: use the plugin of the controller's version\n",
                c.namespace, c.name, plugin.version
            ));
        }
    }
    out
}

/// Prints the plugin's build and, given a `cluster`, its controllers: in every namespace, or,
/// for a user who may not list Deployments everywhere (a namespace's `view` or `edit`), in the
/// current namespace. When neither may be listed, the plugin's build is printed (as `-o` asks)
/// and the error returned.
pub async fn run(cluster: Option<&Cluster>, output: Output) -> Result<(), CliError> {
    let plugin = plugin();
    let selector = ListParams::default().labels(CONTROLLER_SELECTOR);
    let (controllers, searched) = match cluster {
        None => (None, None),
        Some(cluster) => {
            let everywhere = Api::<Deployment>::all(cluster.client.clone())
                .list(&selector)
                .await;
            let (list, searched, op) = match everywhere {
                Err(kube::Error::Api(s)) if s.code == 403 => {
                    let ns = &cluster.namespace;
                    let here = Api::<Deployment>::namespaced(cluster.client.clone(), ns)
                        .list(&selector)
                        .await;
                    (
                        here,
                        Some(format!(
                            "in namespace '{ns}' (Deployments cannot be listed in every namespace)"
                        )),
                        Op::new("list", "deployments.apps", ns),
                    )
                }
                other => (other, None, Op::new("list", "deployments.apps", "")),
            };
            match list {
                Ok(l) => {
                    let mut found: Vec<Controller> = l.items.iter().map(controller).collect();
                    found.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
                    (Some(found), searched)
                }
                Err(e) => {
                    // The plugin's own build first, as kubectl version does, then the error.
                    emit(
                        &Versions {
                            plugin,
                            controllers: None,
                            searched: None,
                        },
                        output,
                    )?;
                    return Err(cluster.error(e, &op).await);
                }
            }
        }
    };
    emit(
        &Versions {
            plugin,
            controllers,
            searched,
        },
        output,
    )
}

fn emit(versions: &Versions, output: Output) -> Result<(), CliError> {
    match output.encode(versions)? {
        Some(encoded) => print(&encoded),
        None => print(&text(
            &versions.plugin,
            versions.controllers.as_deref(),
            versions.searched.as_deref(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(version: &str, ready: i32) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "aviary", "namespace": "aviary-system",
                         "labels": {"app.kubernetes.io/version": version}},
            "spec": {"replicas": 2, "selector": {},
                     "template": {"spec": {"containers": [
                         {"name": "controller", "image": "ghcr.io/aviary-dev/aviary:0.1.0"}]}}},
            "status": {"readyReplicas": ready}
        }))
        .expect("deployment")
    }

    #[test]
    fn the_plugin_and_each_controller_are_printed_and_skew_is_warned() {
        let plugin = Build {
            version: "0.2.0".into(),
            revision: "abc".into(),
            build_date: "2026-12-03T00:00:00Z".into(),
        };
        let same = controller(&deployment("0.2.0", 2));
        assert_eq!(same.ready, "2/2");
        let text_same = text(&plugin, Some(&[same]), None);
        assert!(
            text_same
                .starts_with("kubectl-aviary 0.2.0 (revision abc, built 2026-12-03T00:00:00Z)\n")
        );
        assert!(text_same.contains("controller aviary-system/aviary: 0.2.0, image ghcr.io/aviary-dev/aviary:0.1.0, 2/2 ready"));
        assert!(!text_same.contains("warning"));
        let older = text(&plugin, Some(&[controller(&deployment("0.1.0", 1))]), None);
        assert!(
            older.contains("warning: controller aviary-system/aviary is 0.1.0, the plugin 0.2.0"),
            "{older}"
        );
        assert!(text(&plugin, Some(&[]), None).contains("controller: none found"));
        assert_eq!(
            text(&plugin, None, None).lines().count(),
            1,
            "--client: the plugin only"
        );
    }

    #[test]
    fn the_build_information_is_filled_in() {
        let b = plugin();
        assert_eq!(b.version, env!("CARGO_PKG_VERSION"));
        assert!(!b.revision.is_empty());
        assert_eq!(
            b.build_date.len(),
            "2026-12-03T00:00:00Z".len(),
            "{}",
            b.build_date
        );
    }
}
