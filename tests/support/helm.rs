//! Helm, as the tests run it: the chart, `helm` itself, and releases uninstalled when dropped.

use std::path::PathBuf;
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Container;
use kube::api::Api;

use super::repo_root;

pub fn chart() -> PathBuf {
    repo_root().join("charts/aviary")
}

/// `helm` from PATH (`hack/cluster.sh env` puts the built one there), else the build cache.
pub fn helm() -> Command {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("helm").is_file()))
        .unwrap_or(false);
    if on_path {
        return Command::new("helm");
    }
    let cached = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/aviary/helm-v3.21.4/helm");
    assert!(
        cached.is_file(),
        "helm not found on PATH nor at {}: run `hack/build-bins.sh helm` (or `make bins`)",
        cached.display()
    );
    Command::new(cached)
}

/// Runs `cmd`: its stdout, or an error with both outputs.
pub fn run(mut cmd: Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{cmd:?} failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Uninstalls a release when dropped (its ClusterRole and binding are cluster-scoped: deleting
/// the namespace would leave them).
pub struct Release {
    pub name: String,
    pub namespace: String,
}

impl Release {
    pub fn install(name: &str, namespace: &str, sets: &[&str]) -> Self {
        let mut cmd = helm();
        cmd.args(["install", name]).arg(chart()).args([
            "--namespace",
            namespace,
            "--set",
            "crds.install=false",
        ]);
        for s in sets {
            cmd.args(["--set", s]);
        }
        run(cmd).expect("helm install");
        Release {
            name: name.into(),
            namespace: namespace.into(),
        }
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let mut cmd = helm();
        cmd.args(["uninstall", &self.name, "--namespace", &self.namespace]);
        let _ = cmd.output();
    }
}

/// The controller container of the chart's Deployment `ns/name`, as installed.
pub async fn controller_container(client: &kube::Client, ns: &str, name: &str) -> Container {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .expect("Deployment")
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.containers.into_iter().next())
        .expect("a container")
}
