//! `migrate NAME`: an Argo Rollouts Rollout handed over to Aviary where it stands — its
//! ReplicaSets (the same `rollouts-pod-template-hash`, so the same names), its Services and its
//! routing objects at their current weights, its step — without restarting a pod or moving
//! traffic.
//!
//! Each stage is idempotent and the order makes a rerun resume where a stopped one left off:
//!
//! 1. The Argo Rollout gets Argo's controller-instance-id label, so Argo's usual controller lets
//!    go of it (its Service and DestinationRule cleanup looks the Rollout up by name and finds
//!    it, so nothing is stripped).
//! 2. The Aviary Rollout is created from the converted spec, held by
//!    [`MIGRATING_ANNOTATION`] (the controller leaves it alone), and given Argo's status (the
//!    stable revision, the step, pauses, weights) with Aviary's steps hash.
//! 3. Argo's managed-by annotation comes off the Services and the DestinationRule (Argo would
//!    strip the hash selector of a Service whose Rollout is gone).
//! 4. Its ReplicaSets are adopted while the Argo Rollout still exists: controlled by the Aviary
//!    Rollout, labelled for its watch, Argo's scale-down deadline carried over; pods are not
//!    touched. Never orphaned first: a Deployment whose selector matches them (a workloadRef's
//!    shares their labels) would adopt them within milliseconds and scale them to 0.
//! 5. The Argo Rollout is deleted, orphaning what else it owns, on the condition that it is
//!    still the version whose status was copied (a change meanwhile: back to 2).
//! 6. The hold comes off: the controller plans from Argo's status and finds everything where
//!    it wants it.
//!
//! Argo's AnalysisRuns are left to Argo's kind (an analysis under way starts again under Aviary);
//! an Argo field Aviary does not support stops the migration before anything is written.

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    Preconditions, PropagationPolicy,
};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::errors::CliError;
use super::{Cluster, Op, print};
use crate::api::wire::{
    ARGO_INSTANCE_ID_LABEL, ARGO_MANAGED_BY_ANNOTATION, ARGO_SCALE_DOWN_DEADLINE_ANNOTATION,
    MIGRATING_ANNOTATION, PLUGIN_FIELD_MANAGER, POD_TEMPLATE_HASH_LABEL, ROLLOUT_LABEL,
    SCALE_DOWN_DEADLINE_ANNOTATION,
};
use crate::api::{Rollout, RolloutStatus};

/// Argo CD's default tracking label, and its annotation-based tracking.
const ARGOCD_TRACKING_LABEL: &str = "app.kubernetes.io/instance";
const ARGOCD_TRACKING_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";

/// The instance id `migrate` hands the Argo Rollout to: no Argo controller runs with it.
const HANDED_TO: &str = "aviary-migration";

fn argo_rollouts() -> ApiResource {
    ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Rollout".into(),
        plural: "rollouts".into(),
    }
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(PLUGIN_FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// `migrate NAME`.
pub async fn run(cluster: &Cluster, name: &str) -> Result<(), CliError> {
    let ns = cluster.namespace.clone();
    let argo_api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), &ns, &argo_rollouts());
    let ours_api = cluster.rollouts();
    let argo_op = Op::new("get", "rollouts.argoproj.io", &ns).named(name);
    let argo = match argo_api.get_opt(name).await {
        Ok(a) => a,
        Err(e) => return Err(cluster.error(e, &argo_op).await),
    };
    let ours_op = Op::new("get", "rollouts.aviary.dev", &ns).named(name);
    let ours = match ours_api.get_opt(name).await {
        Ok(o) => o,
        Err(e) => return Err(cluster.error(e, &ours_op).await),
    };
    let held = ours
        .as_ref()
        .is_some_and(|o| crate::api::wire::migrating(&o.metadata));
    let ours = match (argo, ours) {
        (None, None) => {
            return Err(CliError::NotFound(format!(
                "no Argo Rollout '{name}' (argoproj.io/v1alpha1) in namespace '{ns}' to migrate"
            )));
        }
        (None, Some(_)) if !held => {
            return print(&format!(
                "rollout '{name}' is already Aviary's: nothing to migrate\n"
            ));
        }
        (Some(_), Some(_)) if !held => {
            return Err(CliError::Refused(format!(
                "an Aviary Rollout '{name}' already exists and is not being migrated: delete it (or rename the Argo Rollout) and run migrate again"
            )));
        }
        (Some(argo), ours) => hand_over(cluster, &argo_api, argo, ours).await?,
        // Stopped after the Argo Rollout went: its status was copied before it did.
        (None, Some(ours)) => ours,
    };
    // What the Aviary Rollout controls now (adopted in stage 4, by this run or an earlier).
    let adopted: Vec<(String, i32)> = cluster
        .replica_sets(&ours)
        .await?
        .into_iter()
        .map(|rs| {
            let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            (rs.name_any(), replicas)
        })
        .collect();
    release(cluster, name).await?;
    let mut lines = vec![format!(
        "rollout '{name}' migrated from Argo Rollouts; no pod restarted"
    )];
    for (rs, replicas) in &adopted {
        lines.push(format!("  adopted ReplicaSet {rs} ({replicas} replicas)"));
    }
    lines.extend(autoscalers_left(cluster, name).await);
    let st = ours.status.unwrap_or_default();
    lines.push(format!(
        "  stable {}, current {}, step {}",
        st.stable_rs.as_deref().unwrap_or("-"),
        st.current_pod_hash.as_deref().unwrap_or("-"),
        st.current_step_index
            .map_or("-".to_string(), |i| i.to_string())
    ));
    print(&(lines.join("\n") + "\n"))
}

/// Everything that could refuse the migration, checked before anything is written: the spec
/// converts, the Services it names exist, its selector selects, the status reads.
async fn check(
    cluster: &Cluster,
    argo: &DynamicObject,
) -> Result<(Rollout, RolloutStatus), CliError> {
    let converted = convert(argo)?;
    services_exist(cluster, &converted).await?;
    selects_something(cluster, &converted).await?;
    let status = status_from_argo(&argo.data["status"], &converted)?;
    Ok((converted, status))
}

/// Stages 1 to 5: the Argo Rollout let go of by Argo, copied (spec and status) into a held
/// Aviary Rollout, its Services freed of Argo's annotation, what it controls adopted, and
/// deleted. Returns the Aviary Rollout as its status was written.
async fn hand_over(
    cluster: &Cluster,
    argo_api: &Api<DynamicObject>,
    argo: DynamicObject,
    ours: Option<Rollout>,
) -> Result<Rollout, CliError> {
    let name = argo.name_any();
    let ns = cluster.namespace.clone();
    let op = |verb| Op::new(verb, "rollouts.argoproj.io", &ns).named(&name);
    check(cluster, &argo).await?;
    // 1. Argo's usual controller lets go of it; a reconcile of Argo's already under way may
    // still write (its status patch carries no resourceVersion): wait until it holds still.
    let label = json!({"metadata": {"labels": {ARGO_INSTANCE_ID_LABEL: HANDED_TO}}});
    if let Err(e) = argo_api
        .patch(&name, &params(), &Patch::Merge(&label))
        .await
    {
        return Err(cluster.error(e, &op("patch")).await);
    }
    settled(cluster, argo_api, &name).await?;
    let mut ours = ours;
    for _ in 0..5 {
        let argo = match argo_api.get(&name).await {
            Ok(a) => a,
            Err(e) => return Err(cluster.error(e, &op("get")).await),
        };
        let argo_uid = argo.uid().unwrap_or_default();
        let (converted, status) = check(cluster, &argo).await?;
        // 2. The held Aviary Rollout — created, or its spec this read's — with this read's
        // status, whole (a field Argo has since cleared goes too).
        match ours.take() {
            Some(held) => replace_spec(cluster, &held, &converted).await?,
            None => drop(create_held(cluster, &converted, &argo).await?),
        }
        let written = write_status(cluster, &name, &status).await?;
        // 3. Services and DestinationRule freed of Argo's annotation.
        free_services(cluster, &converted).await?;
        // 4. What it controls becomes ours while it still exists: an orphan whose labels a
        // Deployment's selector matches (a workloadRef's shares them) would be adopted by that
        // Deployment's controller within milliseconds, and scaled to 0; an orphaned canary
        // Ingress would be refused as someone else's. Its AnalysisRuns are stopped.
        adopt_replica_sets(cluster, &written, &argo_uid).await?;
        adopt_canary_ingresses(cluster, &written, &argo_uid).await?;
        terminate_argo_runs(cluster, &argo_uid).await?;
        // 5. Deleted, as long as it is the version just copied.
        let delete = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Orphan),
            preconditions: Some(Preconditions {
                resource_version: argo.resource_version(),
                uid: argo.uid(),
            }),
            ..Default::default()
        };
        match argo_api.delete(&name, &delete).await {
            Ok(_) => {
                wait_gone(cluster, argo_api, &name).await?;
                return Ok(written);
            }
            // Argo changed it after the read (a reconcile in flight): copy again.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                ours = Some(written);
                continue;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(written),
            Err(e) => return Err(cluster.error(e, &op("delete")).await),
        }
    }
    Err(CliError::Conflict(format!(
        "Argo Rollout '{name}' kept changing while it was copied; scale Argo Rollouts' controller down and run migrate again (it resumes)"
    )))
}

/// Waits (up to 30 s) until the Argo Rollout's resourceVersion has held still for 2 s: a
/// reconcile Argo's controller began before it let go finishes first.
async fn settled(cluster: &Cluster, api: &Api<DynamicObject>, name: &str) -> Result<(), CliError> {
    let quiet = Duration::from_secs(2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last: Option<(Option<String>, tokio::time::Instant)> = None;
    loop {
        let version = match api.get(name).await {
            Ok(a) => a.resource_version(),
            Err(e) => {
                return Err(cluster
                    .error(
                        e,
                        &Op::new("get", "rollouts.argoproj.io", &cluster.namespace).named(name),
                    )
                    .await);
            }
        };
        let now = tokio::time::Instant::now();
        match &last {
            Some((v, since)) if *v == version => {
                if now.duration_since(*since) >= quiet {
                    return Ok(());
                }
            }
            _ => last = Some((version, now)),
        }
        if now >= deadline {
            return Err(CliError::Conflict(format!(
                "Argo Rollout '{name}' is still being changed after 30 s (is another Argo Rollouts controller, with an instance id, running it?); scale it down and run migrate again (it resumes)"
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A held Rollout's spec replaced by this read's conversion (a rerun, or Argo changed it).
async fn replace_spec(
    cluster: &Cluster,
    held: &Rollout,
    converted: &Rollout,
) -> Result<(), CliError> {
    let ops = json!([
        {"op": "test", "path": "/metadata/uid", "value": held.metadata.uid},
        {"op": "replace", "path": "/spec", "value": converted.spec},
    ]);
    cluster
        .json_patch_rollout(&held.name_any(), ops)
        .await
        .map(drop)
}

/// The Argo Rollout's spec as Aviary's (`kubectl aviary convert`'s rules); an unsupported
/// field stops the migration, naming it.
fn convert(argo: &DynamicObject) -> Result<Rollout, CliError> {
    let name = argo.name_any();
    let mut doc = json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": argo.data["spec"].clone(),
    });
    let keep = |m: Option<&std::collections::BTreeMap<String, String>>, drop: &[&str]| {
        m.map(|m| {
            m.iter()
                .filter(|(k, _)| !drop.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<std::collections::BTreeMap<_, _>>()
        })
        .filter(|m| !m.is_empty())
    };
    // Not Argo CD's tracking (label or annotation): Argo CD would prune the Aviary Rollout — and
    // the ReplicaSets it now owns — as extraneous until Git holds it.
    let labels_dropped = [ARGO_INSTANCE_ID_LABEL, ARGOCD_TRACKING_LABEL];
    if let Some(labels) = keep(argo.metadata.labels.as_ref(), &labels_dropped) {
        doc["metadata"]["labels"] = json!(labels);
    }
    let dropped = [
        "kubectl.kubernetes.io/last-applied-configuration",
        ARGOCD_TRACKING_ANNOTATION,
    ];
    if let Some(annotations) = keep(argo.metadata.annotations.as_ref(), &dropped) {
        doc["metadata"]["annotations"] = json!(annotations);
    }
    let text = serde_yaml::to_string(&doc).map_err(|e| CliError::Output(e.to_string()))?;
    let file = format!("Argo Rollout {name}");
    let converted = super::convert::convert_text(&file, &text)?;
    if !converted.unsupported.is_empty() {
        return Err(CliError::Refused(format!(
            "Argo Rollout '{name}' uses what Aviary does not support, so it cannot be taken over as it runs: {}; change the Argo Rollout (or port it by hand) and run migrate again",
            converted.unsupported.join("; ")
        )));
    }
    serde_yaml::from_str(&converted.yaml).map_err(|e| {
        CliError::Refused(format!(
            "Argo Rollout '{name}' does not convert to an Aviary Rollout: {e}"
        ))
    })
}

/// Creates the Aviary Rollout, held ([`MIGRATING_ANNOTATION`]) until its ReplicaSets are
/// adopted.
async fn create_held(
    cluster: &Cluster,
    converted: &Rollout,
    argo: &DynamicObject,
) -> Result<Rollout, CliError> {
    let mut ro = converted.clone();
    ro.metadata.namespace = Some(cluster.namespace.clone());
    ro.annotations_mut().insert(
        MIGRATING_ANNOTATION.to_string(),
        argo.uid().unwrap_or_default(),
    );
    let post = PostParams {
        field_manager: Some(PLUGIN_FIELD_MANAGER.into()),
        ..Default::default()
    };
    match cluster.rollouts().create(&post, &ro).await {
        Ok(created) => Ok(created),
        Err(e) => Err(cluster
            .error(
                e,
                &Op::new("create", "rollouts.aviary.dev", &cluster.namespace).named(&ro.name_any()),
            )
            .await),
    }
}

/// Argo's status as Aviary's: what Argo recomputes (phase, conditions, generations) and its
/// AnalysisRuns' names (Argo's kind) left out; the steps hash Aviary's own.
pub fn status_from_argo(argo: &Value, ro: &Rollout) -> Result<RolloutStatus, CliError> {
    let mut st = argo.clone();
    if let Some(m) = st.as_object_mut() {
        for k in [
            "observedGeneration",
            "workloadObservedGeneration",
            "phase",
            "message",
            "conditions",
            "currentStepHash",
            "HPAReplicas",
            "selector",
        ] {
            m.remove(k);
        }
    }
    for (part, runs) in [
        (
            "canary",
            &[
                "currentStepAnalysisRunStatus",
                "currentBackgroundAnalysisRunStatus",
                "currentExperiment",
                "stablePingPong",
            ][..],
        ),
        (
            "blueGreen",
            &[
                "prePromotionAnalysisRunStatus",
                "postPromotionAnalysisRunStatus",
            ][..],
        ),
    ] {
        if let Some(m) = st.get_mut(part).and_then(Value::as_object_mut) {
            for r in runs {
                m.remove(*r);
            }
        }
    }
    let mut status: RolloutStatus = serde_json::from_value(st).map_err(|e| {
        CliError::Refused(format!(
            "the Argo Rollout's status does not read as Aviary's: {e}"
        ))
    })?;
    if ro.spec.canary().is_some() {
        status.current_step_hash = Some(crate::plan::hash::hash_of(&ro.spec.steps()));
    }
    Ok(status)
}

async fn write_status(
    cluster: &Cluster,
    name: &str,
    status: &RolloutStatus,
) -> Result<Rollout, CliError> {
    // Whole: a merge patch would keep what Argo has cleared since an earlier copy.
    let ops = json!([{"op": "add", "path": "/status", "value": status}]);
    let patch: json_patch::Patch = serde_json::from_value(ops)
        .map_err(|e| CliError::Api(format!("building the patch: {e}")))?;
    match cluster
        .rollouts()
        .patch_status(name, &params(), &Patch::Json::<()>(patch))
        .await
    {
        Ok(r) => Ok(r),
        Err(e) => Err(cluster
            .error(
                e,
                &Op::new("patch", "rollouts.aviary.dev/status", &cluster.namespace).named(name),
            )
            .await),
    }
}

/// Every Service the converted strategy names exists (conversion may name ones Argo did not
/// need: a routed canary without them): otherwise nothing is written.
async fn services_exist(cluster: &Cluster, ro: &Rollout) -> Result<(), CliError> {
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    for name in ro.spec.service_names() {
        match services.get_opt(name).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(CliError::Refused(format!(
                    "Service '{name}' (named by the converted strategy: Aviary routes through both a stable and a canary Service) does not exist: create it, selecting the rollout's pods, and run migrate again"
                )));
            }
            Err(e) => {
                return Err(cluster
                    .error(
                        e,
                        &Op::new("get", "services", &cluster.namespace).named(name),
                    )
                    .await);
            }
        }
    }
    Ok(())
}

/// Stage 3: Argo's managed-by annotation off the Rollout's Services and DestinationRule.
async fn free_services(cluster: &Cluster, ro: &Rollout) -> Result<(), CliError> {
    let off = json!({"metadata": {"annotations": {ARGO_MANAGED_BY_ANNOTATION: null}}});
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let canary = ro.spec.strategy.canary.as_ref();
    for name in ro.spec.service_names() {
        match services.patch(name, &params(), &Patch::Merge(&off)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                return Err(cluster
                    .error(
                        e,
                        &Op::new("patch", "services", &cluster.namespace).named(name),
                    )
                    .await);
            }
        }
    }
    let rule = canary
        .and_then(|c| c.traffic_routing.as_ref())
        .and_then(|t| t.istio.as_ref())
        .and_then(|i| i.destination_rule.as_ref())
        .map(|d| d.name.clone());
    if let Some(rule) = rule {
        let resource = ApiResource {
            group: "networking.istio.io".into(),
            version: "v1".into(),
            api_version: "networking.istio.io/v1".into(),
            kind: "DestinationRule".into(),
            plural: "destinationrules".into(),
        };
        let target = crate::traffic::ObjectName::parse(&rule);
        let api: Api<DynamicObject> = Api::namespaced_with(
            cluster.client.clone(),
            target.namespace_or(&cluster.namespace),
            &resource,
        );
        match api
            .patch(&target.name, &params(), &Patch::Merge(&off))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                return Err(cluster
                    .error(
                        e,
                        &Op::new(
                            "patch",
                            "destinationrules.networking.istio.io",
                            &cluster.namespace,
                        )
                        .named(&rule),
                    )
                    .await);
            }
        }
    }
    Ok(())
}

/// Waits (up to a minute) for the deleted Argo Rollout to be gone: the garbage collector first
/// takes its owner references off the ReplicaSets (orphaning them).
async fn wait_gone(
    cluster: &Cluster,
    api: &Api<DynamicObject>,
    name: &str,
) -> Result<(), CliError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match api.get_opt(name).await {
            Ok(None) => return Ok(()),
            Ok(Some(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Ok(Some(_)) => {
                return Err(CliError::Conflict(format!(
                    "Argo Rollout '{name}' is still being deleted after a minute (a finalizer?); run migrate again once it is gone (it resumes)"
                )));
            }
            Err(e) => {
                return Err(cluster
                    .error(
                        e,
                        &Op::new("get", "rollouts.argoproj.io", &cluster.namespace).named(name),
                    )
                    .await);
            }
        }
    }
}

/// The Rollout's selector, resolved from its Deployment with `workloadRef`: refused when empty
/// (a missing Deployment), before anything is written — an empty selector would list every
/// ReplicaSet of the namespace.
async fn selects_something(cluster: &Cluster, ro: &Rollout) -> Result<(), CliError> {
    let resolved = cluster.with_workload(ro.clone()).await;
    let s = &resolved.spec.selector;
    if s.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && s.match_expressions.as_ref().is_none_or(|m| m.is_empty())
    {
        let why = match &ro.spec.workload_ref {
            Some(w) => format!(
                "its workloadRef's Deployment '{}' cannot be read, and the Rollout gives no selector of its own: create the Deployment (or add spec.selector)",
                w.name
            ),
            None => "it has no selector: add spec.selector".to_string(),
        };
        return Err(CliError::Refused(format!(
            "Argo Rollout '{}' cannot be taken over: {why}, then run migrate again",
            ro.name_any()
        )));
    }
    Ok(())
}

/// The owner references of an object taken over from the Argo Rollout `argo_uid`: Argo's
/// replaced by `ours` (the controller), any other kept.
fn owners_with(
    existing: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
    argo_uid: &str,
    ours: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    existing
        .iter()
        .filter(|o| o.uid != argo_uid && o.uid != ours.uid)
        .cloned()
        .chain(std::iter::once(ours.clone()))
        .collect()
}

/// Whether the Argo Rollout `argo_uid` controls the object.
fn argo_controls(
    owners: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
    argo_uid: &str,
) -> bool {
    owners
        .iter()
        .any(|o| o.controller == Some(true) && o.uid == argo_uid)
}

/// Stage 4: the ReplicaSets the Argo Rollout `argo_uid` controls (of the Rollout's selector,
/// with a pod-template hash): controlled by the Aviary Rollout instead, labelled for its watch,
/// Argo's scale-down deadline carried over. Nothing else is adopted — not an orphan, which may
/// be anyone's. Returns each adopted with its size.
async fn adopt_replica_sets(
    cluster: &Cluster,
    ours: &Rollout,
    argo_uid: &str,
) -> Result<Vec<(String, i32)>, CliError> {
    let ns = &cluster.namespace;
    let Some(owner) = ours.controller_owner_ref(&()) else {
        return Err(CliError::Refused(format!(
            "rollout '{}' has no UID yet; run migrate again",
            ours.name_any()
        )));
    };
    let api: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), ns);
    let resolved = cluster.with_workload(ours.clone()).await;
    selects_something(cluster, &resolved).await?;
    let selector = kube::core::Selector::try_from(resolved.spec.selector.clone())
        .map_err(|e| CliError::Refused(format!("spec.selector can't select ReplicaSets: {e}")))?;
    let params_list =
        ListParams::default().labels(&format!("{},{POD_TEMPLATE_HASH_LABEL}", selector));
    let list = match api.list(&params_list).await {
        Ok(l) => l.items,
        Err(e) => return Err(cluster.error(e, &Op::new("list", "replicasets", ns)).await),
    };
    let mut adopted = vec![];
    for rs in list {
        if !argo_controls(rs.owner_references(), argo_uid) {
            continue;
        }
        let mut annotations = json!({});
        if let Some(deadline) = rs.annotations().get(ARGO_SCALE_DOWN_DEADLINE_ANNOTATION) {
            annotations[SCALE_DOWN_DEADLINE_ANNOTATION] = json!(deadline);
        }
        let patch = json!({"metadata": {
            "resourceVersion": rs.resource_version(),
            "ownerReferences": owners_with(rs.owner_references(), argo_uid, &owner),
            "labels": {ROLLOUT_LABEL: ours.name_any()},
            "annotations": annotations,
        }});
        let name = rs.name_any();
        if let Err(e) = api.patch(&name, &params(), &Patch::Merge(&patch)).await {
            return Err(cluster
                .error(e, &Op::new("patch", "replicasets", ns).named(&name))
                .await);
        }
        let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        adopted.push((name, replicas));
    }
    Ok(adopted)
}

/// Stage 4, NGINX: the canary Ingress Argo created beside each stable Ingress (the same name
/// Aviary gives it) becomes the Aviary Rollout's; its router then applies its fields as its own.
async fn adopt_canary_ingresses(
    cluster: &Cluster,
    ours: &Rollout,
    argo_uid: &str,
) -> Result<(), CliError> {
    let Some(nginx) = ours
        .spec
        .canary()
        .and_then(|c| c.traffic_routing.as_ref())
        .and_then(|t| t.nginx.as_ref())
    else {
        return Ok(());
    };
    let Some(owner) = ours.controller_owner_ref(&()) else {
        return Ok(());
    };
    let api: Api<Ingress> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    for stable in nginx.stable_ingresses() {
        let name = crate::traffic::nginx::canary_ingress_name(&ours.name_any(), stable);
        let op = Op::new("patch", "ingresses.networking.k8s.io", &cluster.namespace).named(&name);
        let ingress = match api.get_opt(&name).await {
            Ok(Some(i)) => i,
            Ok(None) => continue,
            Err(e) => return Err(cluster.error(e, &op).await),
        };
        if !argo_controls(ingress.owner_references(), argo_uid) {
            continue;
        }
        let patch = json!({"metadata": {
            "resourceVersion": ingress.resource_version(),
            "ownerReferences": owners_with(ingress.owner_references(), argo_uid, &owner),
        }});
        if let Err(e) = api.patch(&name, &params(), &Patch::Merge(&patch)).await {
            return Err(cluster.error(e, &op).await);
        }
    }
    Ok(())
}

/// Stage 4: the Argo Rollout's AnalysisRuns still running are terminated (Argo's analysis
/// controller would go on measuring, and a background run without `count` runs for ever).
async fn terminate_argo_runs(cluster: &Cluster, argo_uid: &str) -> Result<(), CliError> {
    let resource = ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "AnalysisRun".into(),
        plural: "analysisruns".into(),
    };
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client.clone(), &cluster.namespace, &resource);
    let runs = match api.list(&ListParams::default()).await {
        Ok(l) => l.items,
        // Argo's AnalysisRun kind is not installed: nothing runs.
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => {
            return Err(cluster
                .error(
                    e,
                    &Op::new("list", "analysisruns.argoproj.io", &cluster.namespace),
                )
                .await);
        }
    };
    let stop = json!({"spec": {"terminate": true}});
    for run in runs {
        let owned = run.owner_references().iter().any(|o| o.uid == argo_uid);
        let finished = matches!(
            run.data["status"]["phase"].as_str(),
            Some("Successful" | "Failed" | "Error" | "Inconclusive")
        );
        if !owned || finished || run.data["spec"]["terminate"] == json!(true) {
            continue;
        }
        let name = run.name_any();
        if let Err(e) = api.patch(&name, &params(), &Patch::Merge(&stop)).await {
            return Err(cluster
                .error(
                    e,
                    &Op::new("patch", "analysisruns.argoproj.io", &cluster.namespace).named(&name),
                )
                .await);
        }
    }
    Ok(())
}

/// A note for each HorizontalPodAutoscaler still aimed at the Argo Rollout (best effort: the
/// migration is done whatever this finds).
async fn autoscalers_left(cluster: &Cluster, name: &str) -> Vec<String> {
    let api: Api<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler> =
        Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let Ok(list) = api.list(&ListParams::default()).await else {
        return vec![];
    };
    list.items
        .into_iter()
        .filter(|h| {
            h.spec.as_ref().is_some_and(|s| {
                let t = &s.scale_target_ref;
                t.kind == "Rollout"
                    && t.name == name
                    && t.api_version
                        .as_deref()
                        .is_some_and(|v| v.starts_with("argoproj.io/"))
            })
        })
        .map(|h| {
            format!(
                "  note: HorizontalPodAutoscaler {} still targets the Argo Rollout: set its scaleTargetRef.apiVersion to aviary.dev/v1alpha1",
                h.name_any()
            )
        })
        .collect()
}

/// Stage 6: the hold off; the controller takes over.
async fn release(cluster: &Cluster, name: &str) -> Result<(), CliError> {
    let off = json!({"metadata": {"annotations": {MIGRATING_ANNOTATION: null}}});
    match cluster
        .rollouts()
        .patch(name, &params(), &Patch::Merge(&off))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => Err(cluster
            .error(
                e,
                &Op::new("patch", "rollouts.aviary.dev", &cluster.namespace).named(name),
            )
            .await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout() -> Rollout {
        serde_json::from_value(json!({
            "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "web:2"}]}},
                "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}},
        }))
        .expect("rollout")
    }

    #[test]
    fn argos_status_keeps_the_step_and_weights_and_takes_our_steps_hash() {
        let argo = json!({
            "observedGeneration": "3", "phase": "Paused", "message": "CanaryPauseStep",
            "currentPodHash": "7c9f8d5b4", "stableRS": "5d6b7c8f9", "currentStepIndex": 1,
            "currentStepHash": "argos-own", "HPAReplicas": 4, "selector": "app=web",
            "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2026-12-01T10:00:00Z"}],
            "controllerPause": true, "collisionCount": 1,
            "conditions": [{"type": "Progressing", "status": "True"}],
            "canary": {"weights": {"canary": {"weight": 20, "podTemplateHash": "7c9f8d5b4", "serviceName": "web-canary"},
                "stable": {"weight": 80, "podTemplateHash": "5d6b7c8f9", "serviceName": "web-stable"}},
                "currentStepAnalysisRunStatus": {"name": "web-7c9f8d5b4-2-1", "status": "Running"}},
        });
        let ro = rollout();
        let st = status_from_argo(&argo, &ro).expect("status");
        assert_eq!(st.stable_rs.as_deref(), Some("5d6b7c8f9"));
        assert_eq!(st.current_pod_hash.as_deref(), Some("7c9f8d5b4"));
        assert_eq!(st.current_step_index, Some(1));
        assert_eq!(st.controller_pause, Some(true));
        assert_eq!(st.pause_conditions.len(), 1);
        assert_eq!(st.collision_count, Some(1));
        assert_eq!(
            st.current_step_hash,
            Some(crate::plan::hash::hash_of(&ro.spec.steps()))
        );
        assert_eq!(st.phase, None);
        assert!(st.conditions.is_empty());
        let canary = st.canary.expect("canary status");
        assert!(canary.current_step_analysis_run_status.is_none());
        assert_eq!(canary.weights.map(|w| w.canary.weight), Some(20));
    }
}
