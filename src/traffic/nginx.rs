//! ingress-nginx: a canary Ingress `<rollout>-<stableIngress>-canary` that mirrors the stable
//! Ingress's paths to the stable Service, pointed at the canary Service, with
//! `<prefix>/canary: "true"` and `<prefix>/canary-weight: "<w>"` (semantics §5).
//!
//! The canary Ingress is wholly Aviary's: rebuilt from the stable Ingress on every call by
//! [`desired_canary_ingress`], owned by the Rollout (so it goes when the Rollout goes) and
//! server-side applied with one field manager, which also removes annotations we stopped
//! setting. The stable Ingress is only read.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::BoxFuture;
use k8s_openapi::api::networking::v1::{HTTPIngressRuleValue, Ingress, IngressRule, IngressSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, ApiResource, Patch, PatchParams};
use serde_json::Value;
use tracing::{debug, info};

use super::{
    MAX_WEIGHT, RouteTarget, RoutingObject, RoutingSnapshot, TrafficError, TrafficRouter,
    WeightChange, WeightWrite, check_weight, classify_write_error,
};
use crate::api::wire::FIELD_MANAGER;

/// The ingress class annotation older setups use instead of `spec.ingressClassName`; the
/// canary Ingress must be picked up by the same controller as the stable one.
pub const INGRESS_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

const CANARY_SUFFIX: &str = "-canary";
/// Longest object name (DNS subdomain).
const MAX_NAME_LEN: usize = 253;

/// The canary Ingress's name: `<rollout>-<stableIngress>-canary`, the prefix cut so the name
/// fits in 253 characters (as Argo Rollouts does, so a migrated Rollout finds its Ingress).
pub fn canary_ingress_name(rollout: &str, stable_ingress: &str) -> String {
    let mut prefix = format!("{rollout}-{stable_ingress}");
    if prefix.len() > MAX_NAME_LEN - CANARY_SUFFIX.len() {
        prefix.truncate(MAX_NAME_LEN - CANARY_SUFFIX.len());
        // A cut after '.' would leave ".-canary", which is not a valid name.
        while prefix.ends_with(['.', '-']) {
            prefix.pop();
        }
    }
    format!("{prefix}{CANARY_SUFFIX}")
}

/// What the NGINX router is configured with, from `trafficRouting.nginx`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NginxConfig {
    pub stable_ingress: String,
    /// `annotationPrefix` (default `nginx.ingress.kubernetes.io`).
    pub annotation_prefix: String,
    /// `additionalIngressAnnotations`: the prefix is added to keys that lack it.
    pub additional_annotations: BTreeMap<String, String>,
    /// `canaryIngressAnnotations`: keys verbatim, overriding the additional ones.
    pub canary_annotations: BTreeMap<String, String>,
    /// `trafficRouting.maxTrafficWeight`: the total weights are shares of
    /// (`<prefix>/canary-weight-total`); 100 when unset.
    pub max_traffic_weight: Option<i32>,
}

impl NginxConfig {
    fn canary_key(&self) -> String {
        format!("{}/canary", self.annotation_prefix)
    }

    fn weight_key(&self) -> String {
        format!("{}/canary-weight", self.annotation_prefix)
    }

    fn weight_total_key(&self) -> String {
        format!("{}/canary-weight-total", self.annotation_prefix)
    }

    /// The total the canary weight is a share of.
    pub fn total(&self) -> i32 {
        self.max_traffic_weight.unwrap_or(MAX_WEIGHT).max(1)
    }
}

/// The canary Ingress's annotations, last one wins: the stable Ingress's class annotation,
/// `additionalIngressAnnotations` (prefixed), `canaryIngressAnnotations`, then always
/// `<prefix>/canary` and `<prefix>/canary-weight`.
pub fn canary_annotations(
    config: &NginxConfig,
    stable: &Ingress,
    canary_weight: i32,
) -> BTreeMap<String, String> {
    let mut annotations = BTreeMap::new();
    if let Some(class) = stable
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(INGRESS_CLASS_ANNOTATION))
    {
        annotations.insert(INGRESS_CLASS_ANNOTATION.to_string(), class.clone());
    }
    let prefix_slash = format!("{}/", config.annotation_prefix);
    for (key, value) in &config.additional_annotations {
        let key = if key.starts_with(&prefix_slash) {
            key.clone()
        } else {
            format!("{prefix_slash}{key}")
        };
        annotations.insert(key, value.clone());
    }
    for (key, value) in &config.canary_annotations {
        annotations.insert(key.clone(), value.clone());
    }
    annotations.insert(config.canary_key(), "true".to_string());
    annotations.insert(config.weight_key(), canary_weight.to_string());
    // Only with maxTrafficWeight, as Argo Rollouts writes it: ingress-nginx defaults it to 100.
    // Ours alone: a total among the user's annotations would make the weight read as
    // unknown for ever.
    match config.max_traffic_weight {
        Some(total) => annotations.insert(config.weight_total_key(), total.to_string()),
        None => annotations.remove(&config.weight_total_key()),
    };
    annotations
}

/// The owner reference that makes the Rollout the canary Ingress's controller.
pub fn rollout_owner_reference(target: &RouteTarget) -> OwnerReference {
    OwnerReference {
        api_version: crate::api::API_VERSION.to_string(),
        kind: "Rollout".to_string(),
        name: target.rollout.clone(),
        uid: target.rollout_uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Builds the canary Ingress from the stable one: only the paths whose backend is the stable
/// Service, pointed at the canary Service (rules left without paths are dropped; a default
/// backend is not copied, it would take all unmatched traffic); `spec.tls` and
/// `spec.ingressClassName` as they are.
pub fn desired_canary_ingress(
    stable: &Ingress,
    target: &RouteTarget,
    config: &NginxConfig,
    canary_weight: i32,
) -> Result<Ingress, TrafficError> {
    check_weight(canary_weight, config.total())?;
    let stable_name = stable.metadata.name.as_deref().unwrap_or_default();
    let spec = stable.spec.clone().unwrap_or_default();
    let rules: Vec<IngressRule> = spec
        .rules
        .unwrap_or_default()
        .into_iter()
        .filter_map(|rule| {
            let paths: Vec<_> = rule
                .http?
                .paths
                .into_iter()
                .filter_map(|mut path| {
                    let service = path.backend.service.as_mut()?;
                    if service.name != target.stable_service {
                        return None;
                    }
                    service.name.clone_from(&target.canary_service);
                    Some(path)
                })
                .collect();
            (!paths.is_empty()).then_some(IngressRule {
                host: rule.host,
                http: Some(HTTPIngressRuleValue { paths }),
            })
        })
        .collect();
    if rules.is_empty() {
        return Err(TrafficError::Invalid(format!(
            "Ingress '{}/{stable_name}' has no path whose backend is the stable Service '{}': \
             point a path at it or correct strategy.canary.trafficRouting.nginx",
            target.namespace, target.stable_service
        )));
    }
    Ok(Ingress {
        metadata: ObjectMeta {
            name: Some(canary_ingress_name(&target.rollout, stable_name)),
            namespace: Some(target.namespace.clone()),
            annotations: Some(canary_annotations(config, stable, canary_weight)),
            owner_references: Some(vec![rollout_owner_reference(target)]),
            ..ObjectMeta::default()
        },
        spec: Some(IngressSpec {
            ingress_class_name: spec.ingress_class_name,
            rules: Some(rules),
            tls: spec.tls,
            default_backend: None,
        }),
        status: None,
    })
}

/// Refuses an Ingress with the canary name that this Rollout does not control: it belongs to
/// someone else (or to a deleted Rollout of the same name), and taking it over could reroute
/// their traffic.
pub fn check_controller(existing: &Ingress, target: &RouteTarget) -> Result<(), TrafficError> {
    let controller = existing
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true));
    match controller {
        Some(r) if r.uid == target.rollout_uid => Ok(()),
        other => Err(TrafficError::Invalid(format!(
            "Ingress '{}/{}' exists and is {}: Aviary will not take it over; delete or rename \
             it so the Rollout can create its canary Ingress",
            target.namespace,
            existing.metadata.name.as_deref().unwrap_or_default(),
            match other {
                Some(r) => format!("controlled by {} '{}' (uid {})", r.kind, r.name, r.uid),
                None => "not controlled by this Rollout".to_string(),
            }
        ))),
    }
}

/// The annotation keys [`FIELD_MANAGER`] set by server-side apply, from `managedFields`; None
/// when it has applied none (or the server does not report managed fields).
fn applied_annotation_keys(meta: &ObjectMeta) -> Option<BTreeSet<String>> {
    let entry = meta.managed_fields.iter().flatten().find(|e| {
        e.manager.as_deref() == Some(FIELD_MANAGER) && e.operation.as_deref() == Some("Apply")
    })?;
    let fields = &entry.fields_v1.as_ref()?.0;
    let keys = fields
        .pointer("/f:metadata/f:annotations")
        .and_then(serde_json::Value::as_object)
        .map(|a| {
            a.keys()
                .filter_map(|k| k.strip_prefix("f:"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Some(keys)
}

/// Whether applying `desired` would change `existing`: its spec, our owner reference, or the
/// annotations we applied (values, and keys we no longer set, which apply would remove).
pub fn needs_apply(existing: &Ingress, desired: &Ingress) -> bool {
    if existing.spec != desired.spec {
        return true;
    }
    let has_owner = |r: &OwnerReference| {
        existing
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|e| e == r)
    };
    if !desired
        .metadata
        .owner_references
        .iter()
        .flatten()
        .all(has_owner)
    {
        return true;
    }
    let desired_annotations = desired.metadata.annotations.clone().unwrap_or_default();
    let existing_annotations = existing.metadata.annotations.clone().unwrap_or_default();
    if desired_annotations
        .iter()
        .any(|(k, v)| existing_annotations.get(k) != Some(v))
    {
        return true;
    }
    match applied_annotation_keys(&existing.metadata) {
        Some(applied) => applied != desired_annotations.keys().cloned().collect(),
        None => true,
    }
}

/// The canary weight an Ingress shows: `<prefix>/canary-weight` when `<prefix>/canary` is
/// "true"; 0 when it is not a canary; None when the weight is unreadable.
pub fn canary_weight_of(ingress: &Ingress, annotation_prefix: &str) -> Option<i32> {
    let annotations = ingress.metadata.annotations.as_ref();
    let get =
        |suffix: &str| annotations.and_then(|a| a.get(&format!("{annotation_prefix}/{suffix}")));
    if get("canary").map(String::as_str) != Some("true") {
        return Some(0);
    }
    match get("canary-weight") {
        // ingress-nginx gives a canary without weight (or header/cookie match) no traffic.
        None => Some(0),
        Some(w) => w.trim().parse().ok(),
    }
}

/// The total an Ingress's canary weight is a share of: `<prefix>/canary-weight-total`, 100 when
/// absent (ingress-nginx's default) or unreadable.
pub fn canary_weight_total_of(ingress: &Ingress, annotation_prefix: &str) -> i32 {
    ingress
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(&format!("{annotation_prefix}/canary-weight-total")))
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(MAX_WEIGHT)
}

/// Shifts traffic with one canary Ingress per stable Ingress.
#[derive(Clone, Debug)]
pub struct NginxRouter {
    config: NginxConfig,
}

impl NginxRouter {
    pub fn new(
        stable_ingress: &str,
        annotation_prefix: &str,
        additional_annotations: BTreeMap<String, String>,
        canary_annotations: BTreeMap<String, String>,
    ) -> Self {
        NginxRouter {
            config: NginxConfig {
                stable_ingress: stable_ingress.to_string(),
                annotation_prefix: annotation_prefix.to_string(),
                additional_annotations,
                canary_annotations,
                max_traffic_weight: None,
            },
        }
    }

    /// With `trafficRouting.maxTrafficWeight`: weights are shares of it.
    pub fn with_max_traffic_weight(mut self, total: Option<i32>) -> Self {
        self.config.max_traffic_weight = total;
        self
    }

    fn canary_name(&self, target: &RouteTarget) -> String {
        canary_ingress_name(&target.rollout, &self.config.stable_ingress)
    }

    /// The canary Ingress as a snapshot (`Value::Null` when it does not exist).
    fn snapshot_of(&self, target: &RouteTarget, ingress: Option<&Ingress>) -> RoutingSnapshot {
        RoutingSnapshot {
            object: self.object(target),
            body: ingress
                .and_then(|i| serde_json::to_value(i).ok())
                .unwrap_or(Value::Null),
        }
    }

    /// Builds the canary Ingress from the stable one, read now, and server-side applies it when
    /// it differs. Not guarded by a snapshot: the canary Ingress is wholly ours.
    async fn apply_weight(
        &self,
        client: &kube::Client,
        target: &RouteTarget,
        canary_weight: i32,
    ) -> Result<WeightWrite, TrafficError> {
        check_weight(canary_weight, self.config.total())?;
        let api: Api<Ingress> = Api::namespaced(client.clone(), &target.namespace);
        let stable = api
            .get_opt(&self.config.stable_ingress)
            .await?
            .ok_or_else(|| TrafficError::NotFound {
                kind: "Ingress".into(),
                name: format!("{}/{}", target.namespace, self.config.stable_ingress),
                fix: "create the stable Ingress, or correct \
                      strategy.canary.trafficRouting.nginx.stableIngress(es) in the Rollout"
                    .into(),
            })?;
        let mut desired = desired_canary_ingress(&stable, target, &self.config, canary_weight)?;
        let name = self.canary_name(target);
        let what = format!("Ingress '{}/{name}'", target.namespace);
        let (from, params) = match api.get_opt(&name).await? {
            Some(existing) => {
                check_controller(&existing, target)?;
                // A total someone else left on it (another field manager, Argo Rollouts' after
                // a migration) is taken over with the right value: applied without the key, it
                // would stay, and the weight read as unknown for ever.
                let prefix = &self.config.annotation_prefix;
                if canary_weight_total_of(&existing, prefix) != self.config.total()
                    && let Some(a) = desired.metadata.annotations.as_mut()
                {
                    a.insert(
                        self.config.weight_total_key(),
                        self.config.total().to_string(),
                    );
                }
                if !needs_apply(&existing, &desired) {
                    debug!(ingress = %name, weight = canary_weight, "canary Ingress up to date");
                    return Ok(WeightWrite {
                        change: WeightChange::Unchanged,
                        after: self.snapshot_of(target, Some(&existing)),
                    });
                }
                // Ours: force takes back fields someone edited by hand, and the
                // resourceVersion makes the apply fail if the object was replaced (by one we
                // would have refused) since we checked its owner.
                desired
                    .metadata
                    .resource_version
                    .clone_from(&existing.metadata.resource_version);
                (
                    canary_weight_of(&existing, &self.config.annotation_prefix),
                    PatchParams::apply(FIELD_MANAGER).force(),
                )
            }
            // Not forced: should someone else create an Ingress of this name meanwhile, the
            // apply conflicts on their fields instead of taking it over.
            None => (Some(0), PatchParams::apply(FIELD_MANAGER)),
        };
        let written = api
            .patch(&name, &params, &Patch::Apply(&desired))
            .await
            .map_err(|e| classify_write_error(e, &what))?;
        info!(ingress = %name, ?from, to = canary_weight, "set canary weight");
        Ok(WeightWrite {
            change: WeightChange::Updated {
                from,
                to: canary_weight,
            },
            after: self.snapshot_of(target, Some(&written)),
        })
    }

    async fn read_canary(
        &self,
        client: &kube::Client,
        target: &RouteTarget,
    ) -> Result<RoutingSnapshot, TrafficError> {
        let api: Api<Ingress> = Api::namespaced(client.clone(), &target.namespace);
        let existing = api.get_opt(&self.canary_name(target)).await?;
        Ok(self.snapshot_of(target, existing.as_ref()))
    }
}

impl TrafficRouter for NginxRouter {
    fn kind(&self) -> &'static str {
        "NGINX"
    }

    fn total_weight(&self) -> i32 {
        self.config.total()
    }

    /// The canary Ingress: the object whose weight annotation this router sets.
    fn object(&self, target: &RouteTarget) -> RoutingObject {
        RoutingObject::new(
            ApiResource::erase::<Ingress>(&()),
            &target.namespace,
            &self.canary_name(target),
        )
    }

    fn read<'a>(
        &'a self,
        client: &'a kube::Client,
        target: &'a RouteTarget,
    ) -> BoxFuture<'a, Result<RoutingSnapshot, TrafficError>> {
        Box::pin(self.read_canary(client, target))
    }

    fn weight_in(
        &self,
        snapshot: &RoutingSnapshot,
        target: &RouteTarget,
    ) -> Result<Option<i32>, TrafficError> {
        // No canary Ingress: all traffic goes through the stable one.
        if snapshot.body.is_null() {
            return Ok(Some(0));
        }
        let existing: Ingress = serde_json::from_value(snapshot.body.clone()).map_err(|e| {
            TrafficError::Invalid(format!("{} is not a valid Ingress: {e}", snapshot.object))
        })?;
        check_controller(&existing, target)?;
        let weight = canary_weight_of(&existing, &self.config.annotation_prefix);
        // A weight out of another total (maxTrafficWeight changed since it was written) is not
        // the share it reads as: unknown, so the planner writes it again.
        if weight != Some(0)
            && canary_weight_total_of(&existing, &self.config.annotation_prefix)
                != self.config.total()
        {
            return Ok(None);
        }
        Ok(weight)
    }

    fn set_weight<'a>(
        &'a self,
        client: &'a kube::Client,
        target: &'a RouteTarget,
        _from: Option<RoutingSnapshot>,
        canary_weight: i32,
    ) -> BoxFuture<'a, Result<WeightWrite, TrafficError>> {
        Box::pin(self.apply_weight(client, target, canary_weight))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    use serde_json::json;

    fn target() -> RouteTarget {
        RouteTarget {
            namespace: "app".into(),
            rollout: "shop".into(),
            rollout_uid: "uid-1".into(),
            stable_service: "web-stable".into(),
            canary_service: "web-canary".into(),
            stable_hash: None,
            canary_hash: None,
        }
    }

    fn config() -> NginxConfig {
        NginxConfig {
            stable_ingress: "web".into(),
            annotation_prefix: "nginx.ingress.kubernetes.io".into(),
            ..Default::default()
        }
    }

    fn stable_ingress() -> Ingress {
        serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "web", "namespace": "app",
                         "labels": {"team": "shop"},
                         "annotations": {"kubernetes.io/ingress.class": "nginx",
                                         "nginx.ingress.kubernetes.io/rewrite-target": "/"}},
            "spec": {
                "ingressClassName": "nginx",
                "defaultBackend": {"service": {"name": "fallback", "port": {"number": 80}}},
                "tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
                "rules": [
                    {"host": "shop.example.com", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix",
                         "backend": {"service": {"name": "web-stable", "port": {"name": "http"}}}},
                        {"path": "/admin", "pathType": "Prefix",
                         "backend": {"service": {"name": "admin", "port": {"number": 80}}}}
                    ]}},
                    {"host": "static.example.com", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix",
                         "backend": {"service": {"name": "cdn", "port": {"number": 80}}}}
                    ]}},
                    {"host": "api.example.com", "http": {"paths": [
                        {"path": "/v1", "pathType": "Exact",
                         "backend": {"service": {"name": "web-stable", "port": {"number": 8080}}}}
                    ]}},
                    {"host": "empty.example.com"}
                ]
            }
        }))
        .expect("valid Ingress")
    }

    #[test]
    fn canary_name_fits_in_253_characters() {
        assert_eq!(canary_ingress_name("shop", "web"), "shop-web-canary");
        let long = "a".repeat(250);
        let name = canary_ingress_name("shop", &long);
        assert_eq!(name.len(), 253);
        assert!(name.starts_with("shop-aaa") && name.ends_with("aaa-canary"));
        // A cut that would end the prefix with '.' or '-' drops it.
        let dotted = format!("{}.{}", "b".repeat(240), "c".repeat(20));
        let name = canary_ingress_name("shop", &dotted);
        assert!(name.len() <= 253);
        assert!(!name.contains(".-") && !name.contains("--"), "{name}");
    }

    #[test]
    fn canary_ingress_keeps_only_stable_paths_rewritten_to_canary() {
        let ingress =
            desired_canary_ingress(&stable_ingress(), &target(), &config(), 10).expect("valid");
        let got = serde_json::to_value(&ingress).expect("serializes");
        assert_eq!(
            got,
            json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {
                    "name": "shop-web-canary", "namespace": "app",
                    "annotations": {
                        "kubernetes.io/ingress.class": "nginx",
                        "nginx.ingress.kubernetes.io/canary": "true",
                        "nginx.ingress.kubernetes.io/canary-weight": "10"
                    },
                    "ownerReferences": [{
                        "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout", "name": "shop",
                        "uid": "uid-1", "controller": true, "blockOwnerDeletion": true
                    }]
                },
                "spec": {
                    "ingressClassName": "nginx",
                    "tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
                    "rules": [
                        {"host": "shop.example.com", "http": {"paths": [
                            {"path": "/", "pathType": "Prefix",
                             "backend": {"service": {"name": "web-canary", "port": {"name": "http"}}}}
                        ]}},
                        {"host": "api.example.com", "http": {"paths": [
                            {"path": "/v1", "pathType": "Exact",
                             "backend": {"service": {"name": "web-canary", "port": {"number": 8080}}}}
                        ]}}
                    ]
                }
            })
        );
    }

    #[test]
    fn no_path_to_the_stable_service_is_invalid() {
        let mut t = target();
        t.stable_service = "elsewhere".into();
        let err = desired_canary_ingress(&stable_ingress(), &t, &config(), 10)
            .expect_err("no stable path");
        assert_eq!(
            err.to_string(),
            "Ingress 'app/web' has no path whose backend is the stable Service 'elsewhere': \
             point a path at it or correct strategy.canary.trafficRouting.nginx"
        );
        let bare: Ingress =
            serde_json::from_value(json!({"metadata": {"name": "web"}})).expect("valid Ingress");
        assert!(desired_canary_ingress(&bare, &target(), &config(), 10).is_err());
    }

    #[test]
    fn annotations_prefix_and_precedence() {
        struct Case {
            name: &'static str,
            prefix: &'static str,
            additional: &'static [(&'static str, &'static str)],
            canary: &'static [(&'static str, &'static str)],
            want: &'static [(&'static str, &'static str)],
        }
        let cases = [
            Case {
                name: "prefix added when missing, kept when present",
                prefix: "nginx.ingress.kubernetes.io",
                additional: &[
                    ("canary-by-header", "X-Canary"),
                    ("nginx.ingress.kubernetes.io/canary-by-cookie", "c"),
                ],
                canary: &[],
                want: &[
                    ("kubernetes.io/ingress.class", "nginx"),
                    ("nginx.ingress.kubernetes.io/canary", "true"),
                    ("nginx.ingress.kubernetes.io/canary-by-cookie", "c"),
                    ("nginx.ingress.kubernetes.io/canary-by-header", "X-Canary"),
                    ("nginx.ingress.kubernetes.io/canary-weight", "5"),
                ],
            },
            Case {
                name: "custom prefix; canaryIngressAnnotations verbatim and last but canary/weight",
                prefix: "custom.io",
                additional: &[("canary-by-header", "X-A"), ("canary-weight", "99")],
                canary: &[
                    ("custom.io/canary-by-header", "X-B"),
                    ("example.com/team", "shop"),
                    ("custom.io/canary", "false"),
                ],
                want: &[
                    ("custom.io/canary", "true"),
                    ("custom.io/canary-by-header", "X-B"),
                    ("custom.io/canary-weight", "5"),
                    ("example.com/team", "shop"),
                    ("kubernetes.io/ingress.class", "nginx"),
                ],
            },
        ];
        let own = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        for case in cases {
            let config = NginxConfig {
                stable_ingress: "web".into(),
                annotation_prefix: case.prefix.into(),
                additional_annotations: own(case.additional),
                canary_annotations: own(case.canary),
                max_traffic_weight: None,
            };
            assert_eq!(
                canary_annotations(&config, &stable_ingress(), 5),
                own(case.want),
                "{}",
                case.name
            );
        }
        // No class annotation on the stable Ingress: none on the canary.
        let mut stable = stable_ingress();
        stable.metadata.annotations = None;
        assert!(!canary_annotations(&config(), &stable, 5).contains_key(INGRESS_CLASS_ANNOTATION));
    }

    fn applied_by_us(mut ingress: Ingress, keys: &[&str]) -> Ingress {
        let annotations: serde_json::Map<String, serde_json::Value> =
            keys.iter().map(|k| (format!("f:{k}"), json!({}))).collect();
        ingress.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some(FIELD_MANAGER.into()),
            operation: Some("Apply".into()),
            fields_v1: Some(FieldsV1(
                json!({"f:metadata": {"f:annotations": annotations}}),
            )),
            ..Default::default()
        }]);
        ingress
    }

    #[test]
    fn needs_apply_only_when_something_of_ours_differs() {
        let desired =
            desired_canary_ingress(&stable_ingress(), &target(), &config(), 10).expect("valid");
        let keys: Vec<String> = desired
            .metadata
            .annotations
            .iter()
            .flatten()
            .map(|(k, _)| k.clone())
            .collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut existing = applied_by_us(desired.clone(), &keys);
        existing.metadata.resource_version = Some("42".into());
        existing.metadata.uid = Some("x".into());
        // Someone else's annotation is none of our business.
        existing
            .metadata
            .annotations
            .get_or_insert_default()
            .insert("example.com/note".into(), "hi".into());
        assert!(!needs_apply(&existing, &desired));

        let other_weight =
            desired_canary_ingress(&stable_ingress(), &target(), &config(), 20).expect("valid");
        assert!(needs_apply(&existing, &other_weight), "weight differs");

        let mut stale = existing.clone();
        stale = applied_by_us(
            stale,
            &[keys.as_slice(), &["nginx.ingress.kubernetes.io/x"]].concat(),
        );
        assert!(
            needs_apply(&stale, &desired),
            "an annotation we set is to go"
        );

        let mut spec_changed = existing.clone();
        if let Some(spec) = spec_changed.spec.as_mut() {
            spec.tls = None;
        }
        assert!(needs_apply(&spec_changed, &desired), "spec differs");

        let mut no_owner = existing.clone();
        no_owner.metadata.owner_references = None;
        assert!(needs_apply(&no_owner, &desired), "owner reference missing");

        let mut no_managed_fields = existing.clone();
        no_managed_fields.metadata.managed_fields = None;
        assert!(
            needs_apply(&no_managed_fields, &desired),
            "can't tell: apply"
        );
    }

    #[test]
    fn ingresses_not_controlled_by_the_rollout_are_refused() {
        let desired =
            desired_canary_ingress(&stable_ingress(), &target(), &config(), 10).expect("valid");
        assert!(check_controller(&desired, &target()).is_ok());

        let mut foreign = desired.clone();
        foreign.metadata.owner_references = None;
        let err = check_controller(&foreign, &target()).expect_err("not ours");
        assert_eq!(
            err.to_string(),
            "Ingress 'app/shop-web-canary' exists and is not controlled by this Rollout: Aviary \
             will not take it over; delete or rename it so the Rollout can create its canary \
             Ingress"
        );

        let mut other_rollout = desired.clone();
        if let Some(refs) = other_rollout.metadata.owner_references.as_mut() {
            refs[0].uid = "uid-old".into();
        }
        let err = check_controller(&other_rollout, &target()).expect_err("another uid");
        assert!(
            err.to_string()
                .contains("controlled by Rollout 'shop' (uid uid-old)"),
            "{err}"
        );
    }

    #[test]
    fn canary_weight_is_read_from_annotations() {
        let prefix = "nginx.ingress.kubernetes.io";
        let with = |pairs: &[(&str, &str)]| -> Ingress {
            let annotations: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (format!("{prefix}/{k}"), v.to_string()))
                .collect();
            Ingress {
                metadata: ObjectMeta {
                    annotations: Some(annotations),
                    ..Default::default()
                },
                ..Default::default()
            }
        };
        type Annotations<'a> = &'a [(&'a str, &'a str)];
        let cases: [(Annotations, Option<i32>); 5] = [
            (&[("canary", "true"), ("canary-weight", "30")], Some(30)),
            (&[("canary", "true")], Some(0)),
            (&[("canary", "false"), ("canary-weight", "30")], Some(0)),
            (&[("canary-weight", "30")], Some(0)),
            (&[("canary", "true"), ("canary-weight", "lots")], None),
        ];
        for (pairs, want) in cases {
            assert_eq!(canary_weight_of(&with(pairs), prefix), want, "{pairs:?}");
        }
    }

    /// A weight written out of another total than the router's (maxTrafficWeight changed since)
    /// is unknown, so the planner writes it again: read as a share of the new total it would
    /// shrink the canary under the traffic ingress-nginx still sends it (helper-44).
    #[test]
    fn a_weight_out_of_another_total_is_unknown() {
        let ingress = |annotations: serde_json::Value| -> RoutingSnapshot {
            let body = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": "shop-web-canary", "namespace": "app",
                    "annotations": annotations,
                    "ownerReferences": [{"apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout",
                        "name": "shop", "uid": "uid-1", "controller": true}]}});
            RoutingSnapshot {
                object: RoutingObject::new(
                    ApiResource::erase::<Ingress>(&()),
                    "app",
                    "shop-web-canary",
                ),
                body,
            }
        };
        let p = "nginx.ingress.kubernetes.io";
        let percent =
            ingress(json!({format!("{p}/canary"): "true", format!("{p}/canary-weight"): "50"}));
        let of_1000 = ingress(
            json!({format!("{p}/canary"): "true", format!("{p}/canary-weight"): "50",
            format!("{p}/canary-weight-total"): "1000"}),
        );
        let none =
            ingress(json!({format!("{p}/canary"): "true", format!("{p}/canary-weight"): "0"}));
        let plain = NginxRouter::new("web", p, BTreeMap::new(), BTreeMap::new());
        let fine = plain.clone().with_max_traffic_weight(Some(1000));
        let read = |r: &NginxRouter, s: &RoutingSnapshot| r.weight_in(s, &target()).expect("reads");
        assert_eq!(read(&plain, &percent), Some(50));
        assert_eq!(read(&fine, &of_1000), Some(50));
        assert_eq!(read(&fine, &percent), None, "50 of 100 is not 50 of 1000");
        assert_eq!(read(&plain, &of_1000), None, "50 of 1000 is not 50 %");
        assert_eq!(read(&fine, &none), Some(0), "0 is 0 of any total");

        // A total among the user's own annotations is not written: ours alone says it
        // (helper-45: the weight read as unknown for ever).
        let mut config = config();
        config.additional_annotations =
            BTreeMap::from([("canary-weight-total".to_string(), "1000".to_string())]);
        let written = canary_annotations(&config, &stable_ingress(), 20);
        assert!(
            !written.contains_key(&format!("{p}/canary-weight-total")),
            "{written:?}"
        );
        config.max_traffic_weight = Some(250);
        let written = canary_annotations(&config, &stable_ingress(), 20);
        assert_eq!(written[&format!("{p}/canary-weight-total")], "250");
    }
}
