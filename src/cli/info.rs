//! What `get rollout` shows, built from the objects as read: the rollout's status, strategy, step
//! and weights, then its revisions → ReplicaSets → pods, and its AnalysisRuns with each metric's
//! last values. Pure: a function of the objects, so the tree is table-tested; `-o json|yaml`
//! prints this model as it is.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde::Serialize;

use super::revision_of;
use crate::api::wire::{
    ANALYSIS_TYPE_LABEL, RETIRED_LABEL, ROLLOUT_LABEL, SCALE_DOWN_DEADLINE_ANNOTATION,
    STEP_INDEX_LABEL,
};
use crate::api::{AnalysisRun, POD_TEMPLATE_HASH_LABEL, Rollout, RolloutPhase};
use crate::plan::TemplateHashes;
use crate::plan::canary::weight_at;

/// The whole picture of one Rollout.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutInfo {
    pub name: String,
    pub namespace: String,
    /// Healthy, Progressing, Paused or Degraded — Progressing while the controller has not yet
    /// observed the latest spec.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Canary or BlueGreen.
    pub strategy: String,
    /// Canary steps: index of the current step and how many there are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<StepInfo>,
    /// The weight the current step asks for (canary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_weight: Option<i32>,
    /// The weight traffic actually has (routed: the router's, as recorded in status; basic:
    /// the canary's share of available pods).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual_weight: Option<i32>,
    pub aborted: bool,
    pub images: Vec<ImageInfo>,
    pub replicas: ReplicaCounts,
    /// Newest first.
    pub revisions: Vec<RevisionInfo>,
    /// Runs that could not be tied to a revision.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_analysis_runs: Vec<RunInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<Time>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepInfo {
    pub index: i32,
    pub count: i32,
    /// The current step as Argo names it (`setWeight: 20`, `pause`, `analysis`); none past the
    /// last step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageInfo {
    pub image: String,
    /// stable, canary.
    pub roles: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaCounts {
    pub desired: i32,
    pub current: i32,
    pub updated: i32,
    pub ready: i32,
    pub available: i32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionInfo {
    pub revision: Option<i64>,
    pub replica_sets: Vec<ReplicaSetInfo>,
    pub analysis_runs: Vec<RunInfo>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSetInfo {
    pub name: String,
    pub hash: String,
    /// stable, canary.
    pub roles: Vec<String>,
    /// Healthy, Progressing, ScaledDown.
    pub status: String,
    pub desired: i32,
    pub current: i32,
    pub ready: i32,
    pub available: i32,
    pub images: Vec<String>,
    /// When a running scale-down delay ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_down_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<Time>,
    pub pods: Vec<PodInfo>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodInfo {
    pub name: String,
    /// Running, Pending, Succeeded, Failed, Terminating, or a container's waiting reason
    /// (CrashLoopBackOff, ImagePullBackOff).
    pub status: String,
    pub ready: bool,
    /// Ready containers / containers.
    pub containers: String,
    pub restarts: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<Time>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunInfo {
    pub name: String,
    /// What it measures: `step 2`, `background`, `pre-promotion`, `post-promotion`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Put aside by an abort: no longer counts for the rollout.
    pub retired: bool,
    pub phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<Time>,
    pub metrics: Vec<MetricInfo>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricInfo {
    pub name: String,
    pub phase: String,
    pub successful: i32,
    pub failed: i32,
    pub inconclusive: i32,
    pub error: i32,
    /// The most recent measured values, oldest first (at most three).
    pub last_values: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Whether an AnalysisRun belongs to the Rollout: owned by it, labelled with its name, or named
/// in its status.
pub fn run_belongs_to(run: &AnalysisRun, ro: &Rollout) -> bool {
    let uid = ro.metadata.uid.as_deref().unwrap_or_default();
    let name = ro.name_any();
    let owned = run
        .owner_references()
        .iter()
        .any(|o| !uid.is_empty() && o.uid == uid);
    let labelled = run.labels().get(ROLLOUT_LABEL) == Some(&name);
    let named = status_run_names(ro).contains(&run.name_any());
    owned || labelled || named
}

fn status_run_names(ro: &Rollout) -> Vec<String> {
    let Some(st) = ro.status.as_ref() else {
        return vec![];
    };
    let mut names = vec![];
    if let Some(c) = &st.canary {
        names.extend(
            c.current_step_analysis_run_status
                .iter()
                .map(|r| r.name.clone()),
        );
        names.extend(
            c.current_background_analysis_run_status
                .iter()
                .map(|r| r.name.clone()),
        );
    }
    if let Some(b) = &st.blue_green {
        names.extend(
            b.pre_promotion_analysis_run_status
                .iter()
                .map(|r| r.name.clone()),
        );
        names.extend(
            b.post_promotion_analysis_run_status
                .iter()
                .map(|r| r.name.clone()),
        );
    }
    names
}

/// The hash of the Rollout's current template, as the controller names its revision: the one
/// the status records when it is this template's (a ReplicaSet of Aviary 0.2 keeps its older
/// hash), else the template's own.
pub fn current_hash(ro: &Rollout) -> String {
    // A workloadRef Rollout whose Deployment could not be read has no template here: the
    // controller's last word stands.
    if ro.spec.template.spec.is_none()
        && let Some(h) = ro.status.as_ref().and_then(|s| s.current_pod_hash.clone())
    {
        return h;
    }
    let collision = ro.status.as_ref().and_then(|s| s.collision_count);
    let hashes = TemplateHashes::of(&ro.spec.template, collision);
    match ro
        .status
        .as_ref()
        .and_then(|s| s.current_pod_hash.as_deref())
    {
        Some(h) if hashes.names(h) => h.to_string(),
        _ => hashes.current,
    }
}

/// The phase to show and why: the status' phase, except Progressing while the controller has
/// not observed the latest generation (its phase would be stale).
pub fn display_phase(ro: &Rollout) -> (String, Option<String>) {
    let Some(st) = ro.status.as_ref() else {
        return (
            RolloutPhase::Progressing.to_string(),
            Some("waiting for the controller: the rollout has no status yet (is the Aviary controller running?)".into()),
        );
    };
    let generation = ro.metadata.generation;
    if generation.is_some() && st.observed_generation != generation {
        return (
            RolloutPhase::Progressing.to_string(),
            Some(format!(
                "waiting for the controller to observe generation {}",
                generation.unwrap_or_default()
            )),
        );
    }
    match st.phase {
        Some(p) => (p.to_string(), st.message.clone().filter(|m| !m.is_empty())),
        None => (RolloutPhase::Progressing.to_string(), st.message.clone()),
    }
}

fn images(template: Option<&PodTemplateSpec>) -> Vec<String> {
    template
        .and_then(|t| t.spec.as_ref())
        .map(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(s.containers.iter())
                .filter_map(|c| c.image.clone())
                .collect()
        })
        .unwrap_or_default()
}

fn rs_hash(rs: &ReplicaSet) -> String {
    rs.labels()
        .get(POD_TEMPLATE_HASH_LABEL)
        .cloned()
        .unwrap_or_default()
}

fn pod_info(pod: &Pod) -> PodInfo {
    let st = pod.status.as_ref();
    let statuses = st
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    let n = pod
        .spec
        .as_ref()
        .map(|s| s.containers.len())
        .unwrap_or(statuses.len());
    let ready_n = statuses.iter().filter(|c| c.ready).count();
    let ready = st
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    let waiting = statuses
        .iter()
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
        .find(|r| r != "ContainerCreating");
    let status = if pod.metadata.deletion_timestamp.is_some() {
        "Terminating".to_string()
    } else if let Some(w) = waiting {
        w
    } else {
        st.and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Pending".into())
    };
    PodInfo {
        name: pod.name_any(),
        status,
        ready,
        containers: format!("{ready_n}/{n}"),
        restarts: statuses.iter().map(|c| c.restart_count).sum(),
        created: pod.metadata.creation_timestamp.clone(),
    }
}

fn run_info(run: &AnalysisRun) -> RunInfo {
    let st = run.status.clone().unwrap_or_default();
    let metrics = run
        .spec
        .metrics
        .iter()
        .map(|m| {
            let r = st.metric_result(&m.name);
            MetricInfo {
                name: m.name.clone(),
                phase: r
                    .map(|r| r.phase.to_string())
                    .unwrap_or_else(|| "Pending".into()),
                successful: r.map(|r| r.successful).unwrap_or(0),
                failed: r.map(|r| r.failed).unwrap_or(0),
                inconclusive: r.map(|r| r.inconclusive).unwrap_or(0),
                error: r.map(|r| r.error).unwrap_or(0),
                last_values: r
                    .map(|r| {
                        let vals: Vec<String> = r
                            .measurements
                            .iter()
                            .map(|m| {
                                m.value.clone().unwrap_or_else(|| {
                                    format!("({})", m.phase.as_str().to_lowercase())
                                })
                            })
                            .collect();
                        vals[vals.len().saturating_sub(3)..].to_vec()
                    })
                    .unwrap_or_default(),
                message: r.and_then(|r| r.message.clone()),
            }
        })
        .collect();
    let labels = run.labels();
    let kind = labels.get(ANALYSIS_TYPE_LABEL).map(|t| match t.as_str() {
        "Step" => format!(
            "step {}",
            labels
                .get(STEP_INDEX_LABEL)
                .map(String::as_str)
                .unwrap_or("?")
        ),
        "Background" => "background".into(),
        "PrePromotion" => "pre-promotion".into(),
        "PostPromotion" => "post-promotion".into(),
        other => other.to_lowercase(),
    });
    RunInfo {
        name: run.name_any(),
        kind,
        retired: labels.get(RETIRED_LABEL).is_some_and(|v| v == "true"),
        phase: st.phase.to_string(),
        message: st.message.clone(),
        created: run.metadata.creation_timestamp.clone(),
        metrics,
    }
}

/// Builds the picture of a Rollout from the objects read.
pub fn rollout_info(
    ro: &Rollout,
    replica_sets: &[ReplicaSet],
    pods: &[Pod],
    runs: &[AnalysisRun],
) -> RolloutInfo {
    let st = ro.status.clone().unwrap_or_default();
    let (status, message) = display_phase(ro);
    let hash = current_hash(ro);
    let stable = st.stable_rs.clone();
    let updating = stable.as_deref() != Some(hash.as_str());
    let aborted = st.is_aborted();
    let canary = ro.spec.canary();
    let routed = canary.and_then(|c| c.traffic_routing.as_ref()).is_some();

    let role_of = |h: &str| -> Vec<String> {
        let mut roles = vec![];
        if stable.as_deref() == Some(h) {
            roles.push("stable".to_string());
        }
        if h == hash && updating {
            roles.push(if ro.spec.blue_green().is_some() {
                "preview".to_string()
            } else {
                "canary".to_string()
            });
        }
        roles
    };

    // ReplicaSets with their pods, grouped by revision (newest first).
    let mut by_revision: BTreeMap<i64, Vec<ReplicaSetInfo>> = BTreeMap::new();
    for rs in replica_sets {
        let h = rs_hash(rs);
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        let mut rs_pods: Vec<PodInfo> = pods
            .iter()
            .filter(|p| {
                p.owner_references().iter().any(|o| o.uid == uid)
                    || (uid.is_empty() && p.labels().get(POD_TEMPLATE_HASH_LABEL) == Some(&h))
            })
            .map(pod_info)
            .collect();
        rs_pods.sort_by(|a, b| a.name.cmp(&b.name));
        let desired = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let rst = rs.status.clone().unwrap_or_default();
        let available = rst.available_replicas.unwrap_or(0);
        let rs_status = if desired == 0 && rst.replicas == 0 {
            "ScaledDown"
        } else if available >= desired && rst.replicas == desired {
            "Healthy"
        } else {
            "Progressing"
        };
        by_revision
            .entry(revision_of(rs).unwrap_or(0))
            .or_default()
            .push(ReplicaSetInfo {
                name: rs.name_any(),
                roles: role_of(&h),
                hash: h,
                status: rs_status.into(),
                desired,
                current: rst.replicas,
                ready: rst.ready_replicas.unwrap_or(0),
                available,
                images: images(rs.spec.as_ref().and_then(|s| s.template.as_ref())),
                scale_down_at: rs
                    .annotations()
                    .get(SCALE_DOWN_DEADLINE_ANNOTATION)
                    .cloned(),
                created: rs.metadata.creation_timestamp.clone(),
                pods: rs_pods,
            });
    }

    // AnalysisRuns go under the revision whose hash they carry (label, or name prefix).
    let mut run_infos: Vec<(Option<String>, RunInfo)> = runs
        .iter()
        .map(|run| {
            let h = run
                .labels()
                .get(POD_TEMPLATE_HASH_LABEL)
                .cloned()
                .or_else(|| {
                    replica_sets.iter().map(rs_hash).find(|h| {
                        run.name_any()
                            .starts_with(&format!("{}-{h}-", ro.name_any()))
                    })
                });
            (h, run_info(run))
        })
        .collect();
    run_infos.sort_by(|a, b| {
        (a.1.created.as_ref().map(|t| t.0), &a.1.name)
            .cmp(&(b.1.created.as_ref().map(|t| t.0), &b.1.name))
    });
    let mut revisions: Vec<RevisionInfo> = by_revision
        .into_iter()
        .rev()
        .map(|(rev, rss)| {
            let hashes: Vec<&str> = rss.iter().map(|r| r.hash.as_str()).collect();
            let analysis_runs = run_infos
                .iter()
                .filter(|(h, _)| h.as_deref().is_some_and(|h| hashes.contains(&h)))
                .map(|(_, r)| r.clone())
                .collect();
            RevisionInfo {
                revision: (rev > 0).then_some(rev),
                replica_sets: rss,
                analysis_runs,
            }
        })
        .collect();
    let known: Vec<String> = revisions
        .iter()
        .flat_map(|r| r.replica_sets.iter().map(|rs| rs.hash.clone()))
        .collect();
    let other_analysis_runs = run_infos
        .into_iter()
        .filter(|(h, _)| !h.as_ref().is_some_and(|h| known.contains(h)))
        .map(|(_, r)| r)
        .collect();
    revisions.retain(|r| !r.replica_sets.is_empty());

    // Images: the stable revision's and the canary's.
    let mut image_infos: Vec<ImageInfo> = vec![];
    let mut add_images = |imgs: Vec<String>, role: &str| {
        for image in imgs {
            match image_infos.iter_mut().find(|i| i.image == image) {
                Some(i) => {
                    if !i.roles.iter().any(|r| r == role) {
                        i.roles.push(role.to_string())
                    }
                }
                None => image_infos.push(ImageInfo {
                    image,
                    roles: vec![role.to_string()],
                }),
            }
        }
    };
    let rs_images = |h: &str| {
        replica_sets
            .iter()
            .find(|rs| rs_hash(rs) == h)
            .map(|rs| images(rs.spec.as_ref().and_then(|s| s.template.as_ref())))
    };
    if let Some(s) = stable.as_deref() {
        add_images(rs_images(s).unwrap_or_default(), "stable");
    }
    if updating || stable.is_none() {
        let role = if ro.spec.blue_green().is_some() {
            "preview"
        } else {
            "canary"
        };
        add_images(
            rs_images(&hash).unwrap_or_else(|| images(Some(&ro.spec.template))),
            if stable.is_none() { "stable" } else { role },
        );
    }

    // Steps and weights (canary).
    let n = ro.steps().len() as i32;
    let idx = st.current_step_index().clamp(0, n);
    let step = (canary.is_some() && n > 0).then(|| StepInfo {
        index: idx,
        count: n,
        current: ro.steps().get(idx as usize).map(|s| s.to_string()),
    });
    let (set_weight, actual_weight) = if canary.is_none() {
        (None, None)
    } else if !updating {
        (Some(ro.spec.total_weight()), Some(ro.spec.total_weight()))
    } else {
        let set = if aborted {
            0
        } else {
            weight_at(ro.steps(), idx, ro.spec.total_weight())
        };
        let actual = if routed {
            st.canary
                .as_ref()
                .and_then(|c| c.weights.as_ref())
                .map(|w| w.canary.weight)
                .unwrap_or(0)
        } else {
            let avail = |h: &str| {
                replica_sets
                    .iter()
                    .filter(|rs| rs_hash(rs) == h)
                    .map(|rs| {
                        rs.status
                            .as_ref()
                            .and_then(|s| s.available_replicas)
                            .unwrap_or(0)
                    })
                    .sum::<i32>()
            };
            let c = avail(&hash);
            let total: i32 = replica_sets
                .iter()
                .map(|rs| {
                    rs.status
                        .as_ref()
                        .and_then(|s| s.available_replicas)
                        .unwrap_or(0)
                })
                .sum();
            if total > 0 {
                ((f64::from(c) * 100.0 / f64::from(total)).round()) as i32
            } else {
                0
            }
        };
        (Some(set), Some(actual))
    };

    RolloutInfo {
        name: ro.name_any(),
        namespace: ro.namespace().unwrap_or_default(),
        status,
        message,
        strategy: if ro.spec.blue_green().is_some() {
            "BlueGreen".into()
        } else {
            "Canary".into()
        },
        step,
        set_weight,
        actual_weight,
        aborted,
        images: image_infos,
        replicas: ReplicaCounts {
            desired: ro.spec.replicas(),
            current: st.replicas,
            updated: st.updated_replicas,
            ready: st.ready_replicas,
            available: st.available_replicas,
        },
        revisions,
        other_analysis_runs,
        created: ro.metadata.creation_timestamp.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::render::{Style, rollout_tree};
    use super::*;
    use crate::api::wire::REVISION_ANNOTATION;
    use crate::plan::pod_template_hash;
    use serde_json::{Value, json};

    fn template(image: &str) -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}})
    }

    fn rollout(image: &str, routed: bool, status: Value, generation: i64) -> Rollout {
        let mut canary =
            json!({"steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}]});
        if routed {
            canary["canaryService"] = json!("web-canary");
            canary["stableService"] = json!("web-stable");
            canary["trafficRouting"] = json!({"istio": {"virtualService": {"name": "web"}}});
        }
        let mut ro: Rollout = serde_json::from_value(json!({
            "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "shop", "uid": "ro-uid", "generation": generation},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                     "template": template(image), "strategy": {"canary": canary}},
        }))
        .unwrap_or_default();
        let mut st: crate::api::RolloutStatus = serde_json::from_value(status).unwrap_or_default();
        st.observed_generation = st.observed_generation.or(Some(generation));
        ro.status = Some(st);
        ro
    }

    fn hash(image: &str) -> String {
        let t: PodTemplateSpec = serde_json::from_value(template(image)).unwrap_or_default();
        pod_template_hash(&t, None)
    }

    fn rs(image: &str, revision: i64, replicas: i32, available: i32) -> ReplicaSet {
        let h = hash(image);
        let mut t = template(image);
        t["metadata"]["labels"][POD_TEMPLATE_HASH_LABEL] = json!(h);
        serde_json::from_value(json!({
            "metadata": {"name": format!("web-{h}"), "uid": format!("rs-{h}"),
                "labels": {"app": "web", POD_TEMPLATE_HASH_LABEL: h, ROLLOUT_LABEL: "web"},
                "annotations": {REVISION_ANNOTATION: revision.to_string()},
                "ownerReferences": [{"apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout", "name": "web", "uid": "ro-uid", "controller": true}]},
            "spec": {"replicas": replicas, "selector": {}, "template": t},
            "status": {"replicas": replicas, "readyReplicas": available, "availableReplicas": available},
        }))
        .unwrap_or_default()
    }

    fn pod(image: &str, i: usize, ready: bool) -> Pod {
        let h = hash(image);
        serde_json::from_value(json!({
            "metadata": {"name": format!("web-{h}-{i}"), "labels": {"app": "web", POD_TEMPLATE_HASH_LABEL: h},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("web-{h}"), "uid": format!("rs-{h}")}]},
            "spec": {"containers": [{"name": "web", "image": image}]},
            "status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                "containerStatuses": [{"name": "web", "image": image, "imageID": "", "ready": ready, "restartCount": 0}]},
        }))
        .unwrap_or_default()
    }

    fn run(image: &str) -> AnalysisRun {
        let h = hash(image);
        serde_json::from_value(json!({
            "apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisRun",
            "metadata": {"name": format!("web-{h}-2-1"), "labels": {POD_TEMPLATE_HASH_LABEL: h, ANALYSIS_TYPE_LABEL: "Step", STEP_INDEX_LABEL: "1"},
                "ownerReferences": [{"apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout", "name": "web", "uid": "ro-uid"}]},
            "spec": {"metrics": [{"name": "success-rate", "provider": {"prometheus": {"query": "up"}}}]},
            "status": {"phase": "Running", "metricResults": [{"name": "success-rate", "phase": "Running", "successful": 4, "count": 4,
                "measurements": [{"phase": "Successful", "value": "[0.91]"}, {"phase": "Successful", "value": "[0.97]"},
                                 {"phase": "Successful", "value": "[0.98]"}, {"phase": "Successful", "value": "[0.99]"}]}]},
        }))
        .unwrap_or_default()
    }

    /// A line of the tree: the NAME column is 29 characters wide (a hash may have 9 or 10).
    fn row(prefix: &str, name: &str, rest: &str) -> String {
        format!("{:<29}{rest}", format!("{prefix}{name}"))
    }

    #[test]
    fn the_tree_of_a_paused_routed_canary() {
        let status = json!({"phase": "Paused", "message": "CanaryPauseStep", "stableRS": hash("web:1"),
            "currentPodHash": hash("web:2"), "currentStepIndex": 1, "replicas": 5, "updatedReplicas": 1,
            "readyReplicas": 5, "availableReplicas": 5,
            "canary": {"weights": {"canary": {"weight": 20}, "stable": {"weight": 80}}}});
        let ro = rollout("web:2", true, status, 2);
        let rss = [rs("web:1", 1, 4, 4), rs("web:2", 2, 1, 1)];
        let pods = [pod("web:1", 0, true), pod("web:2", 0, false)];
        let info = rollout_info(&ro, &rss, &pods, &[run("web:2")]);
        let h1 = hash("web:1");
        let h2 = hash("web:2");
        let text = rollout_tree(
            &info,
            &Style {
                color: false,
                now: None,
            },
        );
        let want = format!(
            "Name:            web
Namespace:       shop
Status:          ॥ Paused
Message:         CanaryPauseStep
Strategy:        Canary
  Step:          1/4 (pause)
  SetWeight:     20
  ActualWeight:  20
Images:          web:1 (stable)
                 web:2 (canary)
Replicas:
  Desired:       4
  Current:       5
  Updated:       1
  Ready:         5
  Available:     5

NAME                         KIND         STATUS     INFO
⟳ web                        Rollout      ॥ Paused
├──# revision:2
{}
│     └──# success-rate      Metric       ◌ Running  last: [0.97], [0.98], [0.99]
└──# revision:1
{}
",
            [
                row(
                    "│  ├──⧉ ",
                    &format!("web-{h2}"),
                    "ReplicaSet   ✔ Healthy  canary, 1/1 available"
                ),
                row(
                    "│  │  └──□ ",
                    &format!("web-{h2}-0"),
                    "Pod          ◌ Running  ready:0/1"
                ),
                row(
                    "│  └──α ",
                    &format!("web-{h2}-2-1"),
                    "AnalysisRun  ◌ Running  step 1, ✔ 4,✖ 0"
                ),
            ]
            .join("\n"),
            [
                row(
                    "   └──⧉ ",
                    &format!("web-{h1}"),
                    "ReplicaSet   ✔ Healthy  stable, 4/4 available"
                ),
                row(
                    "      └──□ ",
                    &format!("web-{h1}-0"),
                    "Pod          ✔ Running  ready:1/1"
                ),
            ]
            .join("\n"),
        );
        assert_eq!(text, want, "\n{text}");
    }

    /// (what, rollout, replica sets, expected status, message, step, set weight, actual weight)
    type Case = (
        &'static str,
        Rollout,
        Vec<ReplicaSet>,
        &'static str,
        Option<&'static str>,
        Option<i32>,
        Option<i32>,
        Option<i32>,
    );

    #[test]
    fn status_step_and_weights() {
        let cases: Vec<Case> = vec![
            (
                "healthy: 100/100, past the last step",
                rollout(
                    "web:1",
                    true,
                    json!({"phase": "Healthy", "stableRS": hash("web:1"), "currentStepIndex": 4}),
                    1,
                ),
                vec![rs("web:1", 1, 4, 4)],
                "Healthy",
                None,
                Some(4),
                Some(100),
                Some(100),
            ),
            (
                "aborted: set weight 0, Degraded with the message",
                rollout(
                    "web:2",
                    true,
                    json!({"phase": "Degraded", "message": "Rollout aborted update to revision x: aborted by user", "abort": true,
                    "stableRS": hash("web:1"), "currentStepIndex": 0, "canary": {"weights": {"canary": {"weight": 0}, "stable": {"weight": 100}}}}),
                    2,
                ),
                vec![rs("web:1", 1, 4, 4), rs("web:2", 2, 1, 1)],
                "Degraded",
                Some("Rollout aborted update to revision x: aborted by user"),
                Some(0),
                Some(0),
                Some(0),
            ),
            (
                "the controller has not seen the new spec: Progressing",
                rollout(
                    "web:2",
                    true,
                    json!({"phase": "Healthy", "stableRS": hash("web:1"), "currentStepIndex": 4, "observedGeneration": 1}),
                    2,
                ),
                vec![rs("web:1", 1, 4, 4)],
                "Progressing",
                Some("waiting for the controller to observe generation 2"),
                Some(4),
                Some(100),
                Some(0),
            ),
            (
                "basic canary: the actual weight is the canary's share of available pods",
                rollout(
                    "web:2",
                    false,
                    json!({"phase": "Paused", "message": "CanaryPauseStep", "stableRS": hash("web:1"), "currentStepIndex": 1}),
                    2,
                ),
                vec![rs("web:1", 1, 3, 3), rs("web:2", 2, 1, 1)],
                "Paused",
                Some("CanaryPauseStep"),
                Some(1),
                Some(20),
                Some(25),
            ),
        ];
        for (what, ro, rss, status, message, step, set, actual) in cases {
            let info = rollout_info(&ro, &rss, &[], &[]);
            assert_eq!(info.status, status, "{what}");
            assert_eq!(info.message.as_deref(), message, "{what}");
            assert_eq!(info.step.as_ref().map(|s| s.index), step, "{what}");
            assert_eq!(info.set_weight, set, "{what}");
            assert_eq!(info.actual_weight, actual, "{what}");
        }
    }
}
