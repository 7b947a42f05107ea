//! `history NAME` and `undo NAME [--to-revision N]`.
//!
//! Revisions are the Rollout's ReplicaSets (label `aviary.dev/rollout`, annotation
//! `aviary.dev/revision`, controlled by the Rollout), read from the API server.
//!
//! Undo copies revision N's pod template back into `spec.template`. The template stored in a
//! ReplicaSet is not the one the Rollout had: the API server filled in defaults
//! (`imagePullPolicy`, `terminationMessagePath`, probe timings, …), and copying it as it is would
//! give the template a new hash — a new revision walking all the steps, instead of the instant
//! return to the stable ReplicaSet that undo means. So [`reproduce_template`] removes defaulted
//! fields until the template hashes to the ReplicaSet's own `rollouts-pod-template-hash` again:
//! the exact template the Rollout had, verified.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde::Serialize;
use serde_json::{Value, json};

use super::info::current_hash;
use super::render::{age, table};
use super::{CliError, Cluster, Output, print, revision_of};
use crate::api::{POD_TEMPLATE_HASH_LABEL, Rollout};
use crate::plan::TemplateHashes;

/// One revision in the history.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub revision: i64,
    pub replica_set: String,
    pub hash: String,
    pub images: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<Time>,
    /// How it ended (or where it stands): stable, canary, aborted, promoted then replaced, …
    pub outcome: String,
    /// Whether it is the Rollout's current template.
    pub current: bool,
}

fn rs_hash(rs: &ReplicaSet) -> String {
    rs.labels()
        .get(POD_TEMPLATE_HASH_LABEL)
        .cloned()
        .unwrap_or_default()
}

fn rs_images(rs: &ReplicaSet) -> Vec<String> {
    rs.spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
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

/// The history of a Rollout, newest first. `events` are the (reason, message) of the Rollout's
/// Events, used to tell how revisions that are gone from status ended.
pub fn history(
    ro: &Rollout,
    replica_sets: &[ReplicaSet],
    events: &[(String, String)],
) -> Vec<HistoryEntry> {
    let st = ro.status.clone().unwrap_or_default();
    let current = current_hash(ro);
    let stable = st.stable_rs.clone().unwrap_or_default();
    let stable_rev = replica_sets
        .iter()
        .find(|rs| rs_hash(rs) == stable)
        .and_then(revision_of);
    let n = ro.steps().len() as i32;
    let mut out: Vec<HistoryEntry> = replica_sets
        .iter()
        .filter_map(|rs| {
            let revision = revision_of(rs)?;
            let hash = rs_hash(rs);
            let event_says = |what: &str| {
                events
                    .iter()
                    .any(|(_, m)| m.contains(&format!("{what} update to revision {hash}")))
            };
            let outcome = if hash == stable && hash == current {
                "stable".to_string()
            } else if hash == stable {
                "stable, being replaced".to_string()
            } else if hash == current {
                if st.is_aborted() {
                    format!(
                        "aborted: {}",
                        st.message.clone().unwrap_or_else(|| "aborted".into())
                    )
                } else if !st.pause_conditions.is_empty() || ro.spec.is_paused() {
                    format!(
                        "canary, paused at step {}/{n}",
                        st.current_step_index().min(n)
                    )
                } else {
                    format!("canary, at step {}/{n}", st.current_step_index().min(n))
                }
            } else if event_says("completed") {
                "promoted, later replaced".to_string()
            } else if event_says("aborted") {
                "aborted, then replaced".to_string()
            } else if stable_rev.is_some_and(|s| revision > s) {
                "replaced before promotion".to_string()
            } else {
                "replaced".to_string()
            };
            Some(HistoryEntry {
                revision,
                replica_set: rs.name_any(),
                images: rs_images(rs),
                created: rs.metadata.creation_timestamp.clone(),
                outcome,
                current: hash == current,
                hash,
            })
        })
        .collect();
    out.sort_by_key(|e| std::cmp::Reverse(e.revision));
    out
}

/// The history as a table.
pub fn history_table(entries: &[HistoryEntry], now: Option<Timestamp>) -> String {
    let mut rows = vec![vec![
        "REVISION".to_string(),
        "IMAGES".into(),
        "CREATED".into(),
        "OUTCOME".into(),
    ]];
    for e in entries {
        let created = match (&e.created, now) {
            (Some(t), Some(now)) => format!("{} ({} ago)", t.0, age(now, t.0)),
            (Some(t), None) => t.0.to_string(),
            _ => String::new(),
        };
        rows.push(vec![
            format!("{}{}", e.revision, if e.current { " *" } else { "" }),
            e.images.join(","),
            created,
            e.outcome.clone(),
        ]);
    }
    table(&rows)
}

/// Fields the API server defaults in a ReplicaSet's pod template, relative to the pod spec and
/// to each container: (path within the object, default value).
const POD_DEFAULTS: &[(&str, &str)] = &[
    ("dnsPolicy", "\"ClusterFirst\""),
    ("restartPolicy", "\"Always\""),
    ("schedulerName", "\"default-scheduler\""),
    ("securityContext", "{}"),
    ("terminationGracePeriodSeconds", "30"),
    ("enableServiceLinks", "true"),
];
const CONTAINER_DEFAULTS: &[(&str, &str)] = &[
    ("terminationMessagePath", "\"/dev/termination-log\""),
    ("terminationMessagePolicy", "\"File\""),
    ("imagePullPolicy", "\"IfNotPresent\""),
    ("imagePullPolicy", "\"Always\""),
    ("resources", "{}"),
];
const PROBE_DEFAULTS: &[(&str, &str)] = &[
    ("timeoutSeconds", "1"),
    ("periodSeconds", "10"),
    ("successThreshold", "1"),
    ("failureThreshold", "3"),
];

/// JSON pointers (within the template) of every field holding its API-server default.
fn defaulted_fields(template: &Value) -> Vec<String> {
    let mut out = vec![];
    let is = |v: Option<&Value>, d: &str| {
        v.is_some_and(|v| serde_json::from_str::<Value>(d).is_ok_and(|d| &d == v))
    };
    let spec = &template["spec"];
    for (k, d) in POD_DEFAULTS {
        if is(spec.get(*k), d) {
            out.push(format!("/spec/{k}"));
        }
    }
    for list in ["containers", "initContainers"] {
        for (i, c) in spec[list].as_array().into_iter().flatten().enumerate() {
            let base = format!("/spec/{list}/{i}");
            for (k, d) in CONTAINER_DEFAULTS {
                if is(c.get(*k), d) {
                    out.push(format!("{base}/{k}"));
                }
            }
            for (j, p) in c["ports"].as_array().into_iter().flatten().enumerate() {
                if is(p.get("protocol"), "\"TCP\"") {
                    out.push(format!("{base}/ports/{j}/protocol"));
                }
            }
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                let Some(p) = c.get(probe) else { continue };
                for (k, d) in PROBE_DEFAULTS {
                    if is(p.get(*k), d) {
                        out.push(format!("{base}/{probe}/{k}"));
                    }
                }
                if is(p.pointer("/httpGet/scheme"), "\"HTTP\"") {
                    out.push(format!("{base}/{probe}/httpGet/scheme"));
                }
            }
            for (j, e) in c["env"].as_array().into_iter().flatten().enumerate() {
                if is(e.pointer("/valueFrom/fieldRef/apiVersion"), "\"v1\"") {
                    out.push(format!("{base}/env/{j}/valueFrom/fieldRef/apiVersion"));
                }
            }
        }
    }
    for (i, v) in spec["volumes"].as_array().into_iter().flatten().enumerate() {
        for source in ["configMap", "secret", "projected", "downwardAPI"] {
            if is(v.pointer(&format!("/{source}/defaultMode")), "420") {
                out.push(format!("/spec/volumes/{i}/{source}/defaultMode"));
            }
        }
    }
    out
}

fn remove_pointer(v: &mut Value, pointer: &str) {
    if let Some((parent, key)) = pointer.rsplit_once('/')
        && let Some(Value::Object(m)) = v.pointer_mut(parent)
    {
        m.remove(key);
    }
}

/// Calls `f` with every `k`-subset of `0..n` (as index lists) until it returns true or the
/// budget runs out; returns the subset found.
fn find_subset(
    n: usize,
    k: usize,
    budget: &mut u32,
    f: &mut dyn FnMut(&[usize]) -> bool,
) -> Option<Vec<usize>> {
    fn go(
        start: usize,
        n: usize,
        k: usize,
        acc: &mut Vec<usize>,
        budget: &mut u32,
        f: &mut dyn FnMut(&[usize]) -> bool,
    ) -> bool {
        if acc.len() == k {
            if *budget == 0 {
                return false;
            }
            *budget -= 1;
            return f(acc);
        }
        for i in start..n {
            acc.push(i);
            if go(i + 1, n, k, acc, budget, f) {
                return true;
            }
            acc.pop();
            if *budget == 0 {
                return false;
            }
        }
        false
    }
    let mut acc = vec![];
    go(0, n, k, &mut acc, budget, f).then_some(acc)
}

/// The template the Rollout had when it created `rs`: the ReplicaSet's template without its hash
/// label and without the defaults the API server added, chosen so that it hashes to the
/// ReplicaSet's hash. `false` when no such template was found (the defaults-stripped template
/// is returned then; the controller will treat it as a new revision).
pub fn reproduce_template(
    rs: &ReplicaSet,
    collision_count: Option<i32>,
) -> (PodTemplateSpec, bool) {
    let mut template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    // Role metadata (canaryMetadata, …) is the ReplicaSet's, never the Rollout template's.
    let role_keys = crate::plan::pod_metadata::read(crate::plan::pod_metadata::Annotations::of(
        rs.annotations(),
    ))
    .role_keys();
    if let Some(meta) = template.metadata.as_mut() {
        crate::plan::pod_metadata::strip(meta, &role_keys);
    }
    let want = rs_hash(rs);
    // `antiAffinity` added a term to the ReplicaSet that the Rollout's template never had: the
    // template without it first, then as it is (the user may have written such a term).
    let stripped = crate::plan::anti_affinity::without_injected(&template);
    let mut first = None;
    for t in stripped {
        let (found, exact) = reproduce_from(t, &want, collision_count);
        if exact {
            return (found, true);
        }
        first.get_or_insert(found);
    }
    let (found, exact) = reproduce_from(template, &want, collision_count);
    match (exact, first) {
        (false, Some(t)) => (t, false),
        _ => (found, exact),
    }
}

/// [`reproduce_template`] for one candidate template (hash label already removed).
fn reproduce_from(
    template: PodTemplateSpec,
    want: &str,
    collision_count: Option<i32>,
) -> (PodTemplateSpec, bool) {
    let value = serde_json::to_value(&template).unwrap_or(Value::Null);
    let candidates = defaulted_fields(&value);
    let build = |keep: &[usize]| -> Option<PodTemplateSpec> {
        let mut v = value.clone();
        for (i, p) in candidates.iter().enumerate() {
            if !keep.contains(&i) {
                remove_pointer(&mut v, p);
            }
        }
        serde_json::from_value(v).ok()
    };
    // Most templates set none of the defaulted fields explicitly: try keeping none first, then
    // one, two, … explicit ones.
    let mut budget: u32 = 200_000;
    for kept in 0..=candidates.len() {
        let mut check = |keep: &[usize]| {
            build(keep).is_some_and(|t| TemplateHashes::of(&t, collision_count).names(want))
        };
        if let Some(keep) = find_subset(candidates.len(), kept, &mut budget, &mut check)
            && let Some(t) = build(&keep)
        {
            return (t, true);
        }
        if budget == 0 {
            break;
        }
    }
    (build(&[]).unwrap_or(template), false)
}

/// What undo decided.
#[derive(Clone, Debug, PartialEq)]
pub enum UndoPlan {
    /// The current template is already that revision's.
    Skip { revision: i64 },
    /// Replace `spec.template` with this template.
    Rollback {
        revision: i64,
        template: Box<PodTemplateSpec>,
        exact: bool,
    },
}

/// Chooses the revision (default: the highest below the current one) and its template.
pub fn undo_plan(
    ro: &Rollout,
    replica_sets: &[ReplicaSet],
    to_revision: Option<i64>,
) -> Result<UndoPlan, CliError> {
    let name = ro.name_any();
    let current = current_hash(ro);
    let revisions: BTreeMap<i64, &ReplicaSet> = replica_sets
        .iter()
        .filter_map(|rs| Some((revision_of(rs)?, rs)))
        .collect();
    let current_rev = revisions
        .iter()
        .find(|(_, rs)| rs_hash(rs) == current)
        .map(|(r, _)| *r);
    let target = match to_revision {
        Some(n) => n,
        None => {
            // The highest revision below the current one; when the current template is the
            // oldest (an earlier undo reused its ReplicaSet), the stable revision.
            let below = current_rev.unwrap_or(i64::MAX);
            let stable = ro.status.as_ref().and_then(|s| s.stable_rs.clone());
            let stable_rev = revisions
                .iter()
                .find(|(_, rs)| Some(rs_hash(rs)) == stable && rs_hash(rs) != current)
                .map(|(r, _)| *r);
            revisions
                .keys()
                .rev()
                .find(|r| **r < below)
                .copied()
                .or(stable_rev)
                .ok_or_else(|| {
                    CliError::NotFound(format!(
                        "rollout '{name}' has no previous revision to roll back to"
                    ))
                })?
        }
    };
    let Some(rs) = revisions.get(&target) else {
        let known: Vec<String> = revisions.keys().map(|r| r.to_string()).collect();
        return Err(CliError::NotFound(format!(
            "revision {target} of rollout '{name}' not found (revisions: {})",
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        )));
    };
    if rs_hash(rs) == current {
        return Ok(UndoPlan::Skip { revision: target });
    }
    let collision = ro.status.as_ref().and_then(|s| s.collision_count);
    let (template, exact) = reproduce_template(rs, collision);
    if TemplateHashes::of(&template, collision).names(&current) {
        return Ok(UndoPlan::Skip { revision: target });
    }
    Ok(UndoPlan::Rollback {
        revision: target,
        template: Box::new(template),
        exact,
    })
}

async fn rollout_events(cluster: &Cluster, name: &str) -> Vec<(String, String)> {
    let api: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(cluster.client.clone(), &cluster.namespace);
    api.list(&ListParams::default().fields(&format!("regarding.name={name}")))
        .await
        .map(|l| {
            l.items
                .into_iter()
                .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// `history NAME`.
pub async fn run_history(cluster: &Cluster, name: &str, output: Output) -> Result<(), CliError> {
    let ro = cluster.rollout(name).await?;
    let rss = cluster.replica_sets(&ro).await?;
    let events = rollout_events(cluster, name).await;
    let entries = history(&ro, &rss, &events);
    if let Some(text) = output.encode(&entries)? {
        return print(&text);
    }
    if entries.is_empty() {
        return print(&format!("rollout '{name}' has no revisions yet\n"));
    }
    print(&history_table(&entries, Some(Timestamp::now())))
}

/// `undo NAME [--to-revision N]`.
pub async fn run_undo(
    cluster: &Cluster,
    name: &str,
    to_revision: Option<i64>,
) -> Result<(), CliError> {
    let ro = cluster.rollout(name).await?;
    let rss = cluster.replica_sets(&ro).await?;
    match undo_plan(&ro, &rss, to_revision)? {
        UndoPlan::Skip { revision } => print(&format!(
            "skipped rollback (current template already matches revision {revision})\n"
        )),
        UndoPlan::Rollback {
            revision,
            template,
            exact,
        } => {
            match &ro.spec.workload_ref {
                // The template is the Deployment's: rolled back there (the Rollout then takes
                // it as it takes any edit of the Deployment).
                Some(w) => {
                    let version = cluster.deployment_version(&w.name).await?;
                    let ops = json!([
                        {"op": "test", "path": "/metadata/resourceVersion", "value": version},
                        {"op": "replace", "path": "/spec/template", "value": template},
                    ]);
                    cluster.json_patch_deployment(&w.name, ops).await?;
                }
                None => {
                    let ops = json!([
                        {"op": "test", "path": "/metadata/resourceVersion", "value": ro.resource_version()},
                        {"op": "replace", "path": "/spec/template", "value": template},
                    ]);
                    cluster.json_patch_rollout(name, ops).await?;
                }
            }
            if !exact {
                eprintln!(
                    "warning: could not reproduce revision {revision}'s exact template (its ReplicaSet's hash did not match); the controller may roll it out as a new revision"
                );
            }
            print(&format!(
                "rollout '{name}' rolled back to revision {revision}\n"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::{self, REVISION_ANNOTATION, ROLLOUT_LABEL};
    use crate::plan::pod_template_hash;

    fn template(v: Value) -> PodTemplateSpec {
        serde_json::from_value(v).unwrap_or_default()
    }

    /// A ReplicaSet as the API server stores it: the Rollout's template plus the hash label and
    /// the defaults the server fills in.
    fn stored_rs(revision: i64, original: &PodTemplateSpec, defaulted: Value) -> ReplicaSet {
        let hash = pod_template_hash(original, None);
        let mut t = serde_json::to_value(original).unwrap_or_default();
        t["metadata"]["labels"][POD_TEMPLATE_HASH_LABEL] = json!(hash);
        json_patch::merge(&mut t, &defaulted);
        serde_json::from_value(json!({
            "metadata": {
                "name": format!("web-{hash}"),
                "labels": {POD_TEMPLATE_HASH_LABEL: hash, ROLLOUT_LABEL: "web"},
                "annotations": {REVISION_ANNOTATION: revision.to_string()},
            },
            "spec": {"selector": {}, "template": t},
        }))
        .unwrap_or_default()
    }

    fn defaults() -> Value {
        json!({"spec": {
            "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
            "securityContext": {}, "terminationGracePeriodSeconds": 30,
            "containers": [{"name": "web", "image": "web:1", "imagePullPolicy": "IfNotPresent",
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                "resources": {}, "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"},
                    "timeoutSeconds": 1, "periodSeconds": 5, "successThreshold": 1, "failureThreshold": 3}}]
        }})
    }

    #[test]
    fn reproduces_the_original_template_from_a_defaulted_replica_set() {
        let cases = [
            // Nothing explicit.
            json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:1",
                "ports": [{"containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5}}]}}),
            // Some defaults written explicitly by the user: they must stay.
            json!({"metadata": {"labels": {"app": "web"}}, "spec": {"restartPolicy": "Always", "containers": [{"name": "web", "image": "web:1",
                "imagePullPolicy": "IfNotPresent", "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5}}]}}),
        ];
        for (i, original) in cases.into_iter().enumerate() {
            let original = template(original);
            let rs = stored_rs(1, &original, defaults());
            let (t, exact) = reproduce_template(&rs, None);
            assert!(exact, "{original:?}");
            if i == 0 {
                assert_eq!(t, original);
            } else {
                // A port's explicit `protocol: TCP` is Argo's CRD default: the hash cannot tell
                // it from none, so the one revision may come back without it.
                assert_eq!(
                    pod_template_hash(&t, None),
                    pod_template_hash(&original, None)
                );
                assert_eq!(
                    t.spec.as_ref().and_then(|s| s.restart_policy.as_deref()),
                    Some("Always"),
                    "an explicit default the hash does see stays"
                );
            }
        }
    }

    /// antiAffinity: the ReplicaSet carries a term the Rollout's template never had (beside
    /// the user's own anti-affinity); undo finds the template without it.
    #[test]
    fn reproduces_the_template_without_the_injected_anti_affinity_term() {
        let own = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}});
        for (anti, affinity) in [
            (
                json!({"requiredDuringSchedulingIgnoredDuringExecution": {}}),
                Value::Null,
            ),
            (
                json!({"preferredDuringSchedulingIgnoredDuringExecution": {"weight": 10}}),
                Value::Null,
            ),
            (
                json!({"requiredDuringSchedulingIgnoredDuringExecution": {}}),
                own.clone(),
            ),
            // Written empty by the user: kept so.
            (
                json!({"requiredDuringSchedulingIgnoredDuringExecution": {}}),
                json!({}),
            ),
            (
                json!({"preferredDuringSchedulingIgnoredDuringExecution": {"weight": 5}}),
                json!({"podAntiAffinity": {}}),
            ),
        ] {
            let original = template(json!({"metadata": {"labels": {"app": "web"}},
                "spec": {"affinity": affinity, "containers": [{"name": "web", "image": "web:1"}]}}));
            let ro: Rollout = serde_json::from_value(json!({
                "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout",
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": original,
                    "strategy": {"canary": {"antiAffinity": anti}}},
                "status": {"stableRS": "old"}
            }))
            .unwrap_or_default();
            let mut injected = original.clone();
            crate::plan::anti_affinity::inject(&ro, "new", &mut injected);
            assert_ne!(injected, original, "the term was injected");
            let mut rs = stored_rs(2, &original, json!({}));
            if let Some(spec) = rs.spec.as_mut()
                && let Some(t) = spec.template.as_mut()
            {
                t.spec = injected.spec.clone();
            }
            let (t, exact) = reproduce_template(&rs, None);
            assert!(exact, "{anti}, {affinity}");
            assert_eq!(t, original);
        }
    }

    /// Role metadata (canaryMetadata, …): the ReplicaSet's template carries labels and
    /// annotations the Rollout's never had, listed in its record annotations; undo finds the
    /// template without them, including keys an unfinished sync still had to take off.
    #[test]
    fn reproduces_the_template_without_role_metadata() {
        let original = template(
            json!({"metadata": {"labels": {"app": "web"}, "annotations": {"team": "a"}},
            "spec": {"containers": [{"name": "web", "image": "web:1"}]}}),
        );
        let mut rs = stored_rs(2, &original, json!({}));
        if let Some(meta) = rs
            .spec
            .as_mut()
            .and_then(|s| s.template.as_mut())
            .and_then(|t| t.metadata.as_mut())
        {
            meta.labels.get_or_insert_with(Default::default).extend([
                ("role".to_string(), "canary".to_string()),
                ("old".to_string(), "x".to_string()),
            ]);
            meta.annotations
                .get_or_insert_with(Default::default)
                .insert("release".to_string(), "candidate".to_string());
        }
        rs.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .extend([
                (
                    wire::POD_METADATA_ANNOTATION.to_string(),
                    r#"{"labels":{"role":"canary"},"annotations":{"release":"candidate"}}"#
                        .to_string(),
                ),
                (
                    wire::POD_METADATA_STALE_ANNOTATION.to_string(),
                    r#"{"labels":["old"]}"#.to_string(),
                ),
            ]);
        let (t, exact) = reproduce_template(&rs, None);
        assert!(exact);
        assert_eq!(t, original);
    }

    fn ro_with(image: &str, stable: &str) -> Rollout {
        let mut ro: Rollout = serde_json::from_value(json!({
            "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "resourceVersion": "7"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}},
                "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}}
        }))
        .unwrap_or_default();
        ro.status = Some(crate::api::RolloutStatus {
            stable_rs: Some(stable.to_string()),
            ..Default::default()
        });
        ro
    }

    fn tmpl(image: &str) -> PodTemplateSpec {
        template(
            json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}}),
        )
    }

    #[test]
    fn undo_picks_the_previous_revision_and_skips_the_current_one() {
        let rss: Vec<ReplicaSet> = [(1, "web:1"), (2, "web:2"), (3, "web:3")]
            .iter()
            .map(|(r, i)| stored_rs(*r, &tmpl(i), json!({"spec": {"dnsPolicy": "ClusterFirst", "containers": [{"name": "web", "image": i, "imagePullPolicy": "IfNotPresent"}]}})))
            .collect();
        let h2 = pod_template_hash(&tmpl("web:2"), None);
        let ro = ro_with("web:3", &h2);
        // Default: the highest revision below the current one (3) is 2.
        assert_eq!(
            undo_plan(&ro, &rss, None).ok(),
            Some(UndoPlan::Rollback {
                revision: 2,
                template: Box::new(tmpl("web:2")),
                exact: true
            })
        );
        assert_eq!(
            undo_plan(&ro, &rss, Some(1)).ok(),
            Some(UndoPlan::Rollback {
                revision: 1,
                template: Box::new(tmpl("web:1")),
                exact: true
            })
        );
        assert_eq!(
            undo_plan(&ro, &rss, Some(3)).ok(),
            Some(UndoPlan::Skip { revision: 3 })
        );
        assert!(
            matches!(undo_plan(&ro, &rss, Some(9)), Err(CliError::NotFound(m)) if m.contains("revisions: 1, 2, 3"))
        );
        // The current template has no ReplicaSet yet: the previous one is the newest there is.
        let ro4 = ro_with("web:4", &h2);
        assert!(matches!(
            undo_plan(&ro4, &rss, None),
            Ok(UndoPlan::Rollback { revision: 3, .. })
        ));
        // The current template is revision 1 (an earlier undo): back to the stable revision.
        let ro1 = ro_with("web:1", &h2);
        assert!(matches!(
            undo_plan(&ro1, &rss, None),
            Ok(UndoPlan::Rollback { revision: 2, .. })
        ));
        // Nothing before revision 1, and it is the stable one.
        let h1 = pod_template_hash(&tmpl("web:1"), None);
        let only1 = ro_with("web:1", &h1);
        assert!(matches!(
            undo_plan(&only1, &rss, None),
            Err(CliError::NotFound(_))
        ));
    }

    #[test]
    fn history_says_how_each_revision_ended() {
        let rss: Vec<ReplicaSet> = [(1, "web:1"), (2, "web:2"), (3, "web:3"), (4, "web:4")]
            .iter()
            .map(|(r, i)| stored_rs(*r, &tmpl(i), json!({})))
            .collect();
        let h = |i: &str| pod_template_hash(&tmpl(i), None);
        let ro = ro_with("web:4", &h("web:3"));
        let events = vec![
            (
                "RolloutCompleted".to_string(),
                format!(
                    "Rollout completed update to revision {} (was x): fully promoted",
                    h("web:1")
                ),
            ),
            (
                "RolloutAborted".to_string(),
                format!(
                    "Rollout aborted update to revision {}: aborted by user",
                    h("web:2")
                ),
            ),
        ];
        let outcomes: Vec<(i64, String, bool)> = history(&ro, &rss, &events)
            .into_iter()
            .map(|e| (e.revision, e.outcome, e.current))
            .collect();
        assert_eq!(
            outcomes,
            vec![
                (4, "canary, at step 0/2".to_string(), true),
                (3, "stable, being replaced".to_string(), false),
                (2, "aborted, then replaced".to_string(), false),
                (1, "promoted, later replaced".to_string(), false),
            ]
        );
    }
}
