//! Steering: `promote [--full]`, `abort`, `retry`, `pause`, `resume`, `restart`, `set image`.
//!
//! Each writes exactly what the controller reads (see the planner, `plan::canary`):
//! - abort / retry: `status.abort` true / removed, on the status subresource;
//! - promote: see [`promote_plan`];
//! - pause / resume: `spec.paused`;
//! - restart: `spec.restartAt`;
//! - set image: the image of the named containers, guarded by a JSON Patch `test` of each
//!   container's name at its index, so a concurrent edit of the container list fails cleanly.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use super::info::current_hash;
use super::{CliError, Cluster, Op, print};
use crate::api::Rollout;
use crate::api::wire::PLUGIN_FIELD_MANAGER;

/// What `promote` writes, and what it tells the user.
#[derive(Clone, Debug, PartialEq)]
pub struct PromotePlan {
    /// Merge patch of the Rollout (`spec.paused`).
    pub spec: Option<Value>,
    /// Merge patch of the status subresource (may carry `metadata.resourceVersion`).
    pub status: Option<Value>,
    pub message: String,
}

/// Chooses promote's writes from the Rollout as read:
///
/// - `--full`: `status.promoteFull: true` and the pause conditions cleared (and `spec.paused`
///   false): the remaining steps, pauses and analysis are skipped;
/// - `spec.paused`: set it false — and clear pause conditions too, if the controller also paused;
/// - pause conditions: clear them and leave `controllerPause` alone — the controller sees its
///   pause with no condition and completes the pause step (or moves past an inconclusive
///   analysis);
/// - a canary waiting on a `setWeight` or `analysis` step: `currentStepIndex + 1`, with the
///   Rollout's `resourceVersion` as a precondition so two promotes can't skip two steps.
pub fn promote_plan(ro: &Rollout, full: bool) -> Result<PromotePlan, CliError> {
    let name = ro.name_any();
    let st = ro.status.clone().unwrap_or_default();
    let updating = st.stable_rs.as_deref() != Some(current_hash(ro).as_str());
    let spec_paused = ro.spec.is_paused();
    let has_pause = !st.pause_conditions.is_empty();
    if st.is_aborted() {
        return Err(CliError::Refused(format!(
            "rollout '{name}' is aborted: run 'kubectl aviary retry {name}' to restart its steps, or 'kubectl aviary undo {name}' to roll back"
        )));
    }
    let unpause = spec_paused.then(|| json!({"spec": {"paused": false}}));
    if full {
        if !updating && !spec_paused {
            return Ok(PromotePlan {
                spec: None,
                status: None,
                message: format!("rollout '{name}' is already fully promoted"),
            });
        }
        return Ok(PromotePlan {
            spec: unpause,
            status: updating
                .then(|| json!({"status": {"promoteFull": true, "pauseConditions": null}})),
            message: format!("rollout '{name}' fully promoted"),
        });
    }
    if spec_paused {
        return Ok(PromotePlan {
            spec: unpause,
            status: has_pause.then(|| json!({"status": {"pauseConditions": null}})),
            message: format!("rollout '{name}' promoted (unpaused)"),
        });
    }
    if has_pause {
        let reasons: Vec<String> = st
            .pause_conditions
            .iter()
            .map(|c| format!("{:?}", c.reason))
            .collect();
        return Ok(PromotePlan {
            spec: None,
            status: Some(json!({"status": {"pauseConditions": null}})),
            message: format!(
                "rollout '{name}' promoted: ended the pause ({})",
                reasons.join(", ")
            ),
        });
    }
    let n = ro.steps().len() as i32;
    let idx = st.current_step_index().clamp(0, n);
    if ro.spec.canary().is_some() && updating && idx < n {
        let step = ro.steps()[idx as usize].to_string();
        return Ok(PromotePlan {
            spec: None,
            status: Some(json!({
                "metadata": {"resourceVersion": ro.resource_version()},
                "status": {"currentStepIndex": idx + 1},
            })),
            message: format!(
                "rollout '{name}' promoted: skipped step {}/{n} ({step})",
                idx + 1
            ),
        });
    }
    Ok(PromotePlan {
        spec: None,
        status: None,
        message: if updating {
            format!(
                "rollout '{name}' has no step or pause to promote past: it is completing the update"
            )
        } else {
            format!("rollout '{name}' has nothing to promote: it is not updating and not paused")
        },
    })
}

/// The JSON Patch of `set image`: for each `CONTAINER=IMAGE` (`*` for every container and init
/// container), test the container's name at its index and replace its image.
pub fn set_image_patch(ro: &Rollout, pairs: &[(String, String)]) -> Result<Value, CliError> {
    let spec = ro.spec.template.spec.clone().unwrap_or_default();
    let lists = [
        ("containers", spec.containers.clone()),
        (
            "initContainers",
            spec.init_containers.clone().unwrap_or_default(),
        ),
    ];
    let mut ops = vec![];
    for (container, image) in pairs {
        let mut found = false;
        for (list, containers) in &lists {
            for (i, c) in containers.iter().enumerate() {
                if container == "*" || &c.name == container {
                    found = true;
                    let base = format!("/spec/template/spec/{list}/{i}");
                    ops.push(
                        json!({"op": "test", "path": format!("{base}/name"), "value": c.name}),
                    );
                    ops.push(json!({"op": "add", "path": format!("{base}/image"), "value": image}));
                }
            }
        }
        if !found {
            let names: Vec<&str> = lists
                .iter()
                .flat_map(|(_, cs)| cs.iter().map(|c| c.name.as_str()))
                .collect();
            return Err(CliError::NotFound(format!(
                "container '{container}' not found in rollout '{}' (its containers: {})",
                ro.name_any(),
                names.join(", ")
            )));
        }
    }
    Ok(Value::Array(ops))
}

/// Parses `CONTAINER=IMAGE` arguments.
pub fn parse_image_pairs(args: &[String]) -> Result<Vec<(String, String)>, CliError> {
    if args.is_empty() {
        return Err(CliError::Usage(
            "set image needs CONTAINER=IMAGE (or *=IMAGE for all containers)".into(),
        ));
    }
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((c, i)) if !c.is_empty() && !i.is_empty() => Ok((c.to_string(), i.to_string())),
            _ => Err(CliError::Usage(format!(
                "'{a}' is not CONTAINER=IMAGE (e.g. web=registry/web:2, or *=registry/web:2)"
            ))),
        })
        .collect()
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(PLUGIN_FIELD_MANAGER.into()),
        ..Default::default()
    }
}

impl Cluster {
    /// Merge-patches the Rollout.
    pub async fn patch_rollout(&self, name: &str, patch: &Value) -> Result<Rollout, CliError> {
        match self
            .rollouts()
            .patch(name, &params(), &Patch::Merge(patch))
            .await
        {
            Ok(r) => Ok(r),
            Err(e) => Err(self
                .error(
                    e,
                    &Op::new("patch", "rollouts.aviary.dev", &self.namespace).named(name),
                )
                .await),
        }
    }

    /// Merge-patches the Rollout's status subresource.
    pub async fn patch_rollout_status(
        &self,
        name: &str,
        patch: &Value,
    ) -> Result<Rollout, CliError> {
        match self
            .rollouts()
            .patch_status(name, &params(), &Patch::Merge(patch))
            .await
        {
            Ok(r) => Ok(r),
            Err(e) => Err(self
                .error(
                    e,
                    &Op::new("patch", "rollouts.aviary.dev/status", &self.namespace).named(name),
                )
                .await),
        }
    }

    /// Applies an RFC 6902 JSON Patch to the Rollout.
    pub async fn json_patch_rollout(&self, name: &str, ops: Value) -> Result<Rollout, CliError> {
        let patch: json_patch::Patch = serde_json::from_value(ops)
            .map_err(|e| CliError::Api(format!("building the patch: {e}")))?;
        match self
            .rollouts()
            .patch(name, &params(), &Patch::Json::<()>(patch))
            .await
        {
            Ok(r) => Ok(r),
            Err(e) => Err(self
                .error(
                    e,
                    &Op::new("patch", "rollouts.aviary.dev", &self.namespace).named(name),
                )
                .await),
        }
    }
}

impl Cluster {
    /// A JSON Patch of the Deployment a `workloadRef` names: its pod template is the Rollout's.
    pub async fn json_patch_deployment(&self, name: &str, ops: Value) -> Result<(), CliError> {
        let patch: json_patch::Patch = serde_json::from_value(ops)
            .map_err(|e| CliError::Api(format!("building the patch: {e}")))?;
        let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
            kube::Api::namespaced(self.client.clone(), &self.namespace);
        match api.patch(name, &params(), &Patch::Json::<()>(patch)).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self
                .error(
                    e,
                    &Op::new("patch", "deployments.apps", &self.namespace).named(name),
                )
                .await),
        }
    }

    /// The resourceVersion of Deployment `name` (an undo's patch tests it).
    pub async fn deployment_version(&self, name: &str) -> Result<Option<String>, CliError> {
        let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
            kube::Api::namespaced(self.client.clone(), &self.namespace);
        match api.get(name).await {
            Ok(d) => Ok(d.metadata.resource_version),
            Err(e) => Err(self
                .error(
                    e,
                    &Op::new("get", "deployments.apps", &self.namespace).named(name),
                )
                .await),
        }
    }
}

/// `promote NAME [--full]`. A step skip that loses a race with the controller is re-planned
/// from a fresh read, as long as the rollout is still on the same step (so it never skips two).
pub async fn promote(cluster: &Cluster, name: &str, full: bool) -> Result<(), CliError> {
    let mut attempts = 0;
    loop {
        let ro = cluster.rollout(name).await?;
        let plan = promote_plan(&ro, full)?;
        if let Some(spec) = &plan.spec {
            cluster.patch_rollout(name, spec).await?;
        }
        if let Some(status) = &plan.status {
            match cluster.patch_rollout_status(name, status).await {
                Ok(_) => {}
                Err(CliError::Conflict(m)) if attempts < 5 => {
                    attempts += 1;
                    let fresh = cluster.rollout(name).await?;
                    let step = |r: &Rollout| r.status.as_ref().map(|s| s.current_step_index());
                    if step(&fresh) != step(&ro) {
                        return Err(CliError::Conflict(format!(
                            "rollout '{name}' moved to another step while promoting; nothing skipped ({m})"
                        )));
                    }
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        return print(&format!("{}\n", plan.message));
    }
}

/// `abort NAME`.
pub async fn abort(cluster: &Cluster, name: &str) -> Result<(), CliError> {
    cluster.rollout(name).await?;
    cluster
        // An abort cancels a full promotion not yet acted on: a retry starts over.
        .patch_rollout_status(
            name,
            &json!({"status": {"abort": true, "promoteFull": null}}),
        )
        .await?;
    print(&format!("rollout '{name}' aborted\n"))
}

/// `retry NAME`: removes `status.abort`; the controller restarts the steps.
pub async fn retry(cluster: &Cluster, name: &str) -> Result<(), CliError> {
    let ro = cluster.rollout(name).await?;
    if !ro.status.as_ref().is_some_and(|s| s.is_aborted()) {
        return print(&format!(
            "rollout '{name}' is not aborted: nothing to retry\n"
        ));
    }
    cluster
        .patch_rollout_status(name, &json!({"status": {"abort": null}}))
        .await?;
    print(&format!("rollout '{name}' retried\n"))
}

/// `pause NAME` / `resume NAME`.
pub async fn set_paused(cluster: &Cluster, name: &str, paused: bool) -> Result<(), CliError> {
    cluster.rollout(name).await?;
    cluster
        .patch_rollout(name, &json!({"spec": {"paused": paused}}))
        .await?;
    let word = if paused { "paused" } else { "resumed" };
    print(&format!("rollout '{name}' {word}\n"))
}

/// `restart NAME [--in D]`: sets `spec.restartAt`.
pub async fn restart(
    cluster: &Cluster,
    name: &str,
    after: Option<std::time::Duration>,
) -> Result<(), CliError> {
    cluster.rollout(name).await?;
    let now = Timestamp::now();
    let at = match after {
        Some(d) => now
            .checked_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::ZERO))
            .unwrap_or(now),
        None => now,
    };
    // Whole seconds, as metav1.Time serialises — rounded up: pod creation times are whole
    // seconds too, so a pod created earlier in this second must still count as created before
    // restartAt (rounded down it would escape the restart).
    let at = if at.subsec_nanosecond() == 0 {
        at
    } else {
        Timestamp::from_second(at.as_second().saturating_add(1)).unwrap_or(at)
    };
    cluster
        .patch_rollout(name, &json!({"spec": {"restartAt": at.to_string()}}))
        .await?;
    print(&format!(
        "rollout '{name}' restarts pods created before {at}\n"
    ))
}

/// `set image NAME CONTAINER=IMAGE...`.
pub async fn set_image(cluster: &Cluster, name: &str, args: &[String]) -> Result<(), CliError> {
    let pairs = parse_image_pairs(args)?;
    let ro = cluster.rollout(name).await?;
    let ops = set_image_patch(&ro, &pairs)?;
    // With workloadRef the template is the Deployment's: the same paths, there.
    match &ro.spec.workload_ref {
        Some(w) => cluster.json_patch_deployment(&w.name, ops).await?,
        None => drop(cluster.json_patch_rollout(name, ops).await?),
    }
    let list: Vec<String> = pairs.iter().map(|(c, i)| format!("{c}={i}")).collect();
    print(&format!(
        "rollout '{name}' image updated ({})\n",
        list.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{PauseCondition, PauseReason, RolloutStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn rollout(steps: Value, status: Value, paused: bool) -> Rollout {
        let mut ro: Rollout = serde_json::from_value(json!({
            "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "resourceVersion": "42"},
            "spec": {
                "paused": paused,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:2"}], "initContainers": [{"name": "init", "image": "init:1"}]}},
                "strategy": {"canary": {"steps": steps}}
            },
        }))
        .unwrap_or_default();
        let mut st: RolloutStatus = serde_json::from_value(status).unwrap_or_default();
        if st.current_pod_hash.as_deref() == Some("CURRENT") {
            st.current_pod_hash = Some(current_hash(&ro));
        }
        if st.stable_rs.as_deref() == Some("CURRENT") {
            st.stable_rs = Some(current_hash(&ro));
        }
        ro.status = Some(st);
        ro
    }

    fn pause() -> PauseCondition {
        PauseCondition {
            reason: PauseReason::CanaryPauseStep,
            start_time: Time(Timestamp::UNIX_EPOCH),
        }
    }

    #[test]
    fn promote_writes_what_the_controller_reads() {
        let steps = json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}]);
        let updating =
            json!({"stableRS": "old", "currentPodHash": "CURRENT", "currentStepIndex": 1});
        let mut paused_status = updating.clone();
        paused_status["pauseConditions"] =
            json!([serde_json::to_value(pause()).unwrap_or_default()]);
        paused_status["controllerPause"] = json!(true);
        let at_weight =
            json!({"stableRS": "old", "currentPodHash": "CURRENT", "currentStepIndex": 0});
        let healthy = json!({"stableRS": "CURRENT", "currentStepIndex": 3});
        struct Case {
            what: &'static str,
            ro: Rollout,
            full: bool,
            spec: Option<Value>,
            status: Option<Value>,
        }
        let cases = vec![
            Case {
                what: "pause step: clear the conditions only",
                ro: rollout(steps.clone(), paused_status.clone(), false),
                full: false,
                spec: None,
                status: Some(json!({"status": {"pauseConditions": null}})),
            },
            Case {
                what: "spec.paused only: unpause, nothing more",
                ro: rollout(steps.clone(), at_weight.clone(), true),
                full: false,
                spec: Some(json!({"spec": {"paused": false}})),
                status: None,
            },
            Case {
                what: "spec.paused and a pause step: unpause and clear",
                ro: rollout(steps.clone(), paused_status.clone(), true),
                full: false,
                spec: Some(json!({"spec": {"paused": false}})),
                status: Some(json!({"status": {"pauseConditions": null}})),
            },
            Case {
                what: "waiting on setWeight: skip it, guarded by resourceVersion",
                ro: rollout(steps.clone(), at_weight.clone(), false),
                full: false,
                spec: None,
                status: Some(
                    json!({"metadata": {"resourceVersion": "42"}, "status": {"currentStepIndex": 1}}),
                ),
            },
            Case {
                what: "full",
                ro: rollout(steps.clone(), paused_status.clone(), true),
                full: true,
                spec: Some(json!({"spec": {"paused": false}})),
                status: Some(json!({"status": {"promoteFull": true, "pauseConditions": null}})),
            },
            Case {
                what: "healthy: nothing",
                ro: rollout(steps.clone(), healthy.clone(), false),
                full: false,
                spec: None,
                status: None,
            },
            Case {
                what: "healthy, full: nothing",
                ro: rollout(steps.clone(), healthy.clone(), false),
                full: true,
                spec: None,
                status: None,
            },
        ];
        for c in cases {
            let plan = promote_plan(&c.ro, c.full).unwrap_or_else(|e| panic!("{}: {e}", c.what));
            assert_eq!(plan.spec, c.spec, "{}", c.what);
            assert_eq!(plan.status, c.status, "{}", c.what);
        }
    }

    #[test]
    fn promote_refuses_an_aborted_rollout() {
        let ro = rollout(
            json!([{"setWeight": 20}]),
            json!({"stableRS": "old", "abort": true}),
            false,
        );
        assert!(matches!(
            promote_plan(&ro, false),
            Err(CliError::Refused(_))
        ));
        assert!(matches!(promote_plan(&ro, true), Err(CliError::Refused(_))));
    }

    #[test]
    fn set_image_tests_names_and_replaces_images() {
        let ro = rollout(json!([]), json!({}), false);
        let p = set_image_patch(&ro, &[("web".into(), "web:3".into())]).unwrap_or_default();
        assert_eq!(
            p,
            json!([
                {"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "web"},
                {"op": "add", "path": "/spec/template/spec/containers/0/image", "value": "web:3"},
            ])
        );
        let all = set_image_patch(&ro, &[("*".into(), "x:1".into())]).unwrap_or_default();
        assert_eq!(
            all.as_array().map(Vec::len),
            Some(4),
            "containers and init containers"
        );
        let missing = set_image_patch(&ro, &[("nope".into(), "x:1".into())]);
        assert!(
            matches!(&missing, Err(CliError::NotFound(m)) if m.contains("its containers: web, init")),
            "{missing:?}"
        );
    }

    #[test]
    fn image_pairs_parse() {
        assert_eq!(
            parse_image_pairs(&["web=r/web:2".into()]).ok(),
            Some(vec![("web".to_string(), "r/web:2".to_string())])
        );
        assert!(parse_image_pairs(&["web".into()]).is_err());
        assert!(parse_image_pairs(&[]).is_err());
    }
}
