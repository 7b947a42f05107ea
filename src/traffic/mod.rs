//! Traffic routers: the code that gives a canary its share of traffic on the routing objects a
//! Rollout names — Istio VirtualServices (and a DestinationRule), an ingress-nginx canary
//! Ingress, Gateway API HTTPRoutes.
//!
//! In the observe → plan → act → report pipeline, routers are part of *observe* and *act*:
//! `plan` decides the weight (and when the DestinationRule hashes may move), a router reads and
//! writes it. Routers hold no state between calls; what was read is data:
//!
//! 1. **read**: [`TrafficRouter::read`] returns a [`RoutingSnapshot`] (the object's JSON, its
//!    resourceVersion inside). The controller may instead take a VirtualService from its watch
//!    cache, when the cache shows what we last saw of it (`controller/routing_cache.rs`).
//!    [`TrafficRouter::weight_in`] judges the weight a snapshot shows, purely;
//! 2. **compute** the change with a pure function of the object's JSON (or k8s-openapi type) and
//!    the desired weight — `istio::weight_patch`, `gateway::weight_patch`,
//!    `nginx::desired_canary_ingress` — unit-tested in each module;
//! 3. **write** only when something differs, and only what is ours:
//!    [`TrafficRouter::set_weight`] takes the snapshot the weight was planned on and returns the
//!    object as the write left it ([`WeightWrite`]), which the next write of the same plan
//!    starts from and the controller records in its view.
//!
//! [`Routing`] is everything one Rollout's `trafficRouting` converges: its routers and, with an
//! Istio DestinationRule, the subsets ([`istio::DestinationRuleSubsets`]) whose hashes move
//! before any weight.
//!
//! One exception, for speed: an abort's write to an Istio VirtualService goes out without a
//! read when the way back to 0 was prepared at the last write ([`prepared`]); the patch `test`s
//! all it relies on, so a changed object refuses it and the usual read-then-write follows.
//!
//! What "ours" means decides how we write. VirtualServices, DestinationRules and HTTPRoutes
//! belong to the user (and often to a GitOps tool), and their `http`/`route`/`rules`/
//! `backendRefs` lists are atomic for server-side apply, so SSA cannot own a single weight. We
//! send an RFC 6902 JSON Patch that first `test`s that the entry at the index we computed is
//! still the destination we mean, then sets only its `weight`. A concurrent edit that moved
//! the entry makes the API server reject the whole patch, which we report as
//! [`TrafficError::Conflict`] so the caller re-reads and retries — instead of writing a weight
//! onto the wrong destination. The canary Ingress for NGINX is wholly ours: it is built from the
//! stable Ingress and server-side applied with one field manager ([`wire::FIELD_MANAGER`]).

use std::fmt;

use futures::future::BoxFuture;
use kube::api::{Api, DynamicObject, Patch};
use kube::core::ApiResource;
use serde_json::Value;

use crate::api::{RolloutTrafficRouting, wire};

pub mod fake;
pub mod gateway;
pub mod istio;
pub mod nginx;
pub mod prepared;

pub use gateway::GatewayRouter;
pub use istio::IstioRouter;
pub use nginx::NginxRouter;
pub use prepared::{PreparedAbort, PreparedAborts};

/// The highest canary weight: weights are percentages.
pub const MAX_WEIGHT: i32 = 100;

/// What a router needs to know about the rollout it routes for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTarget {
    /// The Rollout's namespace; routing objects named without a namespace live here.
    pub namespace: String,
    /// The Rollout's name.
    pub rollout: String,
    /// The Rollout's UID: the owner of the canary Ingress.
    pub rollout_uid: String,
    /// `strategy.canary.stableService`.
    pub stable_service: String,
    /// `strategy.canary.canaryService`.
    pub canary_service: String,
    /// Pod-template hash of the stable ReplicaSet (DestinationRule stable subset).
    pub stable_hash: Option<String>,
    /// Pod-template hash of the canary ReplicaSet (DestinationRule canary subset).
    pub canary_hash: Option<String>,
}

/// The hash labels a DestinationRule's canary and stable subsets carry (`None`: no label).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubsetHashes {
    pub canary: Option<String>,
    pub stable: Option<String>,
}

/// The outcome of [`TrafficRouter::set_weight`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightChange {
    /// The routing object already showed the weight; nothing was written.
    Unchanged,
    /// The weight was written. `from` is the canary weight seen before (None: unknown).
    Updated { from: Option<i32>, to: i32 },
}

/// Why a router could not apply a weight.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    /// The routing object, or a route inside it, does not exist.
    #[error("{kind} '{name}' not found: {fix}")]
    NotFound {
        kind: String,
        name: String,
        /// What the user can do about it.
        fix: String,
    },
    /// The routing object exists but cannot carry the split as configured (a Service missing
    /// from a route, an ambiguous route, an Ingress owned by someone else, a weight out of
    /// range). Retrying will not help until the object or the Rollout changes.
    #[error("{0}")]
    Invalid(String),
    /// The object changed between our read and our guarded write; re-read and retry.
    #[error("{what} changed while its weights were being set; retry")]
    Conflict { what: String },
    /// Any other API error (unreachable server, forbidden, schema rejection).
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
}

impl TrafficError {
    /// Whether retrying soon may succeed without anything else changing: conflicts and API
    /// errors are transient; a missing object or an invalid split waits for a change.
    pub fn is_transient(&self) -> bool {
        matches!(self, TrafficError::Conflict { .. } | TrafficError::Kube(_))
    }
}

/// A routing object a router reads and writes: its API, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RoutingObject {
    pub resource: ApiResource,
    pub namespace: String,
    pub name: String,
}

impl RoutingObject {
    pub fn new(resource: ApiResource, namespace: &str, name: &str) -> Self {
        RoutingObject {
            resource,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Its API, for reads and guarded patches of the object as plain JSON.
    pub fn api(&self, client: &kube::Client) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), &self.namespace, &self.resource)
    }

    /// A snapshot of this object from the API server's answer (a read or a write).
    pub fn snapshot(&self, object: &DynamicObject) -> RoutingSnapshot {
        RoutingSnapshot {
            object: self.clone(),
            body: serde_json::to_value(object).unwrap_or(Value::Null),
        }
    }
}

/// "VirtualService 'ns/name'": how Events and errors name the object.
impl fmt::Display for RoutingObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} '{}/{}'",
            self.resource.kind, self.namespace, self.name
        )
    }
}

/// A routing object as a reconcile read it, or as its write left it. This is data that goes
/// from observe to act (a guarded write starts from the snapshot it was planned on) and back
/// into the view's read-your-writes record; no router holds one.
#[derive(Clone, Debug, PartialEq)]
pub struct RoutingSnapshot {
    pub object: RoutingObject,
    /// The object's JSON; `Value::Null` when it does not exist (an NGINX canary Ingress not
    /// created yet).
    pub body: Value,
}

impl RoutingSnapshot {
    /// The object's resourceVersion (None when it does not exist).
    pub fn resource_version(&self) -> Option<&str> {
        self.body["metadata"]["resourceVersion"].as_str()
    }
}

/// What a weight write did, and the object as it left it (the API server's answer, or what was
/// read when nothing needed writing).
#[derive(Clone, Debug, PartialEq)]
pub struct WeightWrite {
    pub change: WeightChange,
    pub after: RoutingSnapshot,
}

/// Gives the canary its weight on one routing object. Stateless: what was read travels as a
/// [`RoutingSnapshot`] from [`TrafficRouter::read`] to [`TrafficRouter::set_weight`].
pub trait TrafficRouter: Send + Sync {
    /// "Istio", "NGINX" or "GatewayAPI".
    fn kind(&self) -> &'static str;

    /// The object this router reads and writes (its `Display` names it in Events and logs).
    fn object(&self, target: &RouteTarget) -> RoutingObject;

    /// Reads the object.
    fn read<'a>(
        &'a self,
        client: &'a kube::Client,
        target: &'a RouteTarget,
    ) -> BoxFuture<'a, Result<RoutingSnapshot, TrafficError>>;

    /// The canary weight `snapshot` shows (None when it can't tell). Pure.
    fn weight_in(
        &self,
        snapshot: &RoutingSnapshot,
        target: &RouteTarget,
    ) -> Result<Option<i32>, TrafficError>;

    /// Sets the canary's weight (0..=100; stable gets the rest), writing only when it differs.
    /// A router whose writes are guarded ([`TrafficRouter::weight_writes_are_guarded`]) starts
    /// from `from` (the snapshot the weight was planned on: a write from a stale one fails as
    /// [`TrafficError::Conflict`]) and reads only without one; the others always read first.
    fn set_weight<'a>(
        &'a self,
        client: &'a kube::Client,
        target: &'a RouteTarget,
        from: Option<RoutingSnapshot>,
        canary_weight: i32,
    ) -> BoxFuture<'a, Result<WeightWrite, TrafficError>>;

    /// Whether every weight write of this router `test`s the canary weight it started from, so
    /// that the API server refuses a write planned from an older state. Such a router's abort
    /// write may go out without the rollout's lock: a reconcile in flight cannot overwrite it
    /// unseen.
    fn weight_writes_are_guarded(&self) -> bool {
        false
    }

    /// The total its weights are shares of: 100, or NGINX's `maxTrafficWeight`.
    fn total_weight(&self) -> i32 {
        MAX_WEIGHT
    }

    /// The guarded write that takes the canary back to 0 from `snapshot` and applies only while
    /// the object is still as seen there ([`prepared`]); None when this router prepares none.
    fn abort_patch(
        &self,
        _snapshot: &RoutingSnapshot,
        _target: &RouteTarget,
    ) -> Option<PreparedAbort> {
        None
    }
}

/// Reads the router's object and returns the canary weight it shows.
pub async fn current_weight(
    router: &dyn TrafficRouter,
    client: &kube::Client,
    target: &RouteTarget,
) -> Result<Option<i32>, TrafficError> {
    let snapshot = router.read(client, target).await?;
    router.weight_in(&snapshot, target)
}

/// Everything a Rollout's `trafficRouting` converges: one router per routing object and, with an
/// Istio DestinationRule, the subsets whose pod-template hashes go before any weight.
pub struct Routing {
    pub routers: Vec<Box<dyn TrafficRouter>>,
    pub subsets: Option<istio::DestinationRuleSubsets>,
    /// What the routers route for (the hashes are set per weight write).
    pub target: RouteTarget,
}

impl Routing {
    /// The Rollout's routing (no router and no subsets without `trafficRouting`).
    pub fn for_rollout(ro: &crate::api::Rollout) -> Self {
        use kube::ResourceExt;
        let canary = ro.spec.canary();
        let routing = canary.and_then(|c| c.traffic_routing.as_ref());
        let target = RouteTarget {
            namespace: ro.namespace().unwrap_or_default(),
            rollout: ro.name_any(),
            rollout_uid: ro.metadata.uid.clone().unwrap_or_default(),
            stable_service: canary
                .and_then(|c| c.stable_service.clone())
                .unwrap_or_default(),
            canary_service: canary
                .and_then(|c| c.canary_service.clone())
                .unwrap_or_default(),
            stable_hash: None,
            canary_hash: None,
        };
        Routing {
            routers: routing.map(routers_for).unwrap_or_default(),
            subsets: routing
                .and_then(|r| r.istio.as_ref())
                .and_then(|i| i.destination_rule.clone())
                .map(istio::DestinationRuleSubsets::new),
            target,
        }
    }
}

/// Builds the routers a rollout's `strategy.canary.trafficRouting` asks for: one per
/// VirtualService, per stable Ingress and per HTTPRoute.
pub fn routers_for(routing: &RolloutTrafficRouting) -> Vec<Box<dyn TrafficRouter>> {
    let mut routers: Vec<Box<dyn TrafficRouter>> = Vec::new();
    if let Some(istio) = &routing.istio {
        for vs in istio.virtual_services() {
            // Every VirtualService router needs the subset names to find its destinations; the
            // DestinationRule itself is written once, by [`Routing::subsets`].
            routers.push(Box::new(IstioRouter::new(
                ObjectName::parse(&vs.name),
                vs.routes.clone().unwrap_or_default(),
                istio.destination_rule.clone(),
            )));
        }
    }
    if let Some(nginx) = &routing.nginx {
        for stable_ingress in nginx.stable_ingresses() {
            routers.push(Box::new(
                NginxRouter::new(
                    stable_ingress,
                    nginx.annotation_prefix(),
                    nginx
                        .additional_ingress_annotations
                        .clone()
                        .unwrap_or_default(),
                    nginx.canary_ingress_annotations.clone().unwrap_or_default(),
                )
                .with_max_traffic_weight(routing.max_traffic_weight),
            ));
        }
    }
    if let Some(gateway) = &routing.gateway_api {
        for route in gateway.http_routes() {
            routers.push(Box::new(GatewayRouter::new(route)));
        }
    }
    routers
}

/// A routing object's name as written in the Rollout: `name` (the Rollout's namespace) or
/// `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectName {
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectName {
    /// Splits `ns/name`; anything without exactly one `/` is a plain name.
    pub fn parse(text: &str) -> Self {
        match text.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                ObjectName {
                    namespace: Some(ns.to_string()),
                    name: name.to_string(),
                }
            }
            _ => ObjectName {
                namespace: None,
                name: text.to_string(),
            },
        }
    }

    /// The namespace the object lives in, defaulting to the Rollout's.
    pub fn namespace_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(default)
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Rejects weights outside 0..=`total` (100, or NGINX's `maxTrafficWeight`) before anything is read: the plan should never produce
/// one, and a bad weight written to a route could blackhole traffic.
pub(crate) fn check_weight(canary_weight: i32, total: i32) -> Result<(), TrafficError> {
    if (0..=total).contains(&canary_weight) {
        Ok(())
    } else {
        Err(TrafficError::Invalid(format!(
            "canary weight {canary_weight} is outside 0..={total}"
        )))
    }
}

/// Reads an object as plain JSON, turning 404 into [`TrafficError::NotFound`] with `fix`.
pub(crate) async fn get_json(
    api: &Api<DynamicObject>,
    kind: &str,
    name: &str,
    namespace: &str,
    fix: &str,
) -> Result<Value, TrafficError> {
    match api.get_opt(name).await? {
        Some(obj) => serde_json::to_value(&obj).map_err(|e| {
            TrafficError::Invalid(format!(
                "{kind} '{namespace}/{name}' is not valid JSON: {e}"
            ))
        }),
        None => Err(TrafficError::NotFound {
            kind: kind.to_string(),
            name: format!("{namespace}/{name}"),
            fix: fix.to_string(),
        }),
    }
}

/// The weight write of a router that patches its object: `patch` computed from `read` (None:
/// the object already shows `to`, nothing is sent), the canary weight `was` found there.
pub(crate) async fn send_weight_patch(
    client: &kube::Client,
    read: RoutingSnapshot,
    patch: Option<json_patch::Patch>,
    was: Option<i32>,
    to: i32,
) -> Result<WeightWrite, TrafficError> {
    let Some(patch) = patch else {
        tracing::debug!(object = %read.object, weight = to, "weights already set");
        return Ok(WeightWrite {
            change: WeightChange::Unchanged,
            after: read,
        });
    };
    let object = read.object;
    let written = apply_guarded_patch(
        &object.api(client),
        &object.name,
        patch,
        &object.to_string(),
    )
    .await?;
    tracing::info!(object = %object, from = ?was, to, "set canary weight");
    Ok(WeightWrite {
        change: WeightChange::Updated { from: was, to },
        after: object.snapshot(&written),
    })
}

/// Sends a guarded JSON patch (tests first, then weight writes) as [`wire::FIELD_MANAGER`].
pub async fn apply_guarded_patch(
    api: &Api<DynamicObject>,
    name: &str,
    patch: json_patch::Patch,
    what: &str,
) -> Result<DynamicObject, TrafficError> {
    api.patch(name, &wire::patch_params(), &Patch::Json::<()>(patch))
        .await
        .map_err(|e| classify_write_error(e, what))
}

/// The message the API server gives when a JSON patch cannot be applied to the object as it
/// now is (a failed `test`, a path that no longer exists). A schema rejection is also a 422
/// but names the field in its message and causes.
const PATCH_NOT_APPLICABLE: &str = "the server rejected our request due to an error in our request";

/// Sorts a failed write into "the object changed under us" (retry after a fresh read) and
/// everything else.
pub(crate) fn classify_write_error(error: kube::Error, what: &str) -> TrafficError {
    if let kube::Error::Api(status) = &error {
        let patch_not_applicable = status.code == 422
            && status.message == PATCH_NOT_APPLICABLE
            && status.details.as_ref().is_none_or(|d| d.causes.is_empty());
        // 409: a resourceVersion precondition failed; 404: deleted since we read it.
        if status.code == 409 || status.code == 404 || patch_not_applicable {
            return TrafficError::Conflict {
                what: what.to_string(),
            };
        }
    }
    TrafficError::Kube(error)
}

/// Builds a JSON patch from `[{op, path, value}]` values. Our paths come from array indices and
/// fixed keys, so a parse failure is a bug in this module, reported rather than panicking.
pub(crate) fn json_patch_from(ops: Vec<Value>) -> Result<json_patch::Patch, TrafficError> {
    serde_json::from_value(Value::Array(ops))
        .map_err(|e| TrafficError::Invalid(format!("internal error building a JSON patch: {e}")))
}

/// `{"op": "replace"}` when the member exists (it must still exist when applied), `add`
/// otherwise.
pub(crate) fn set_member_op(parent: &Value, parent_path: &str, key: &str, value: Value) -> Value {
    let op = if parent.get(key).is_some() {
        "replace"
    } else {
        "add"
    };
    serde_json::json!({"op": op, "path": format!("{parent_path}/{key}"), "value": value})
}

/// `{"op": "test"}` of `path` against `value`.
pub(crate) fn test_op(path: String, value: &Value) -> Value {
    serde_json::json!({"op": "test", "path": path, "value": value})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        GatewayApiRoute, GatewayApiTrafficRouting, IstioDestinationRule, IstioTrafficRouting,
        IstioVirtualService, NginxTrafficRouting,
    };
    use kube::core::Status;

    #[test]
    fn object_names_split_on_one_slash() {
        let cases = [
            ("reviews", None, "reviews"),
            ("mesh/reviews", Some("mesh"), "reviews"),
            ("/reviews", None, "/reviews"),
            ("mesh/", None, "mesh/"),
            ("a/b/c", None, "a/b/c"),
        ];
        for (text, ns, name) in cases {
            let parsed = ObjectName::parse(text);
            assert_eq!(parsed.namespace.as_deref(), ns, "{text}");
            assert_eq!(parsed.name, name, "{text}");
            assert_eq!(parsed.to_string(), text);
        }
        assert_eq!(ObjectName::parse("reviews").namespace_or("app"), "app");
        assert_eq!(
            ObjectName::parse("mesh/reviews").namespace_or("app"),
            "mesh"
        );
    }

    #[test]
    fn weights_outside_0_to_100_are_invalid() {
        for ok in [0, 1, 50, 100] {
            assert!(check_weight(ok, MAX_WEIGHT).is_ok(), "{ok}");
        }
        for bad in [-1, 101, i32::MAX] {
            let err = check_weight(bad, MAX_WEIGHT).expect_err("out of range");
            assert!(matches!(err, TrafficError::Invalid(_)), "{bad}");
            assert!(err.to_string().contains(&bad.to_string()));
        }
    }

    fn api_error(code: u16, message: &str, causes: bool) -> kube::Error {
        let mut status = Status::failure(message, "Invalid").with_code(code);
        if causes {
            status.details = Some(kube::core::response::StatusDetails {
                causes: vec![kube::core::response::StatusCause {
                    reason: "FieldValueInvalid".into(),
                    message: "must be <= 100".into(),
                    field: "spec.http[0].route[0].weight".into(),
                }],
                name: String::new(),
                group: String::new(),
                kind: String::new(),
                uid: String::new(),
                retry_after_seconds: 0,
            });
        }
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn write_errors_are_classified() {
        let conflict = |e| matches!(classify_write_error(e, "x"), TrafficError::Conflict { .. });
        assert!(conflict(api_error(422, PATCH_NOT_APPLICABLE, false)));
        assert!(conflict(api_error(
            409,
            "the object has been modified",
            false
        )));
        assert!(conflict(api_error(404, "not found", false)));
        // A schema rejection names fields: retrying the same write would fail the same way.
        assert!(!conflict(api_error(422, "VirtualService is invalid", true)));
        assert!(!conflict(api_error(422, PATCH_NOT_APPLICABLE, true)));
        assert!(!conflict(api_error(403, "forbidden", false)));
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = TrafficError::NotFound {
            kind: "VirtualService".into(),
            name: "app/reviews".into(),
            fix: "create it".into(),
        };
        assert_eq!(
            e.to_string(),
            "VirtualService 'app/reviews' not found: create it"
        );
        assert!(!e.is_transient());
        let c = TrafficError::Conflict {
            what: "VirtualService 'app/reviews'".into(),
        };
        assert!(c.is_transient());
        assert!(c.to_string().contains("retry"));
    }

    #[test]
    fn routers_for_builds_one_router_per_object() {
        let routing = RolloutTrafficRouting {
            istio: Some(IstioTrafficRouting {
                virtual_services: Some(vec![
                    IstioVirtualService {
                        name: "a".into(),
                        routes: Some(vec!["primary".into()]),
                        ..Default::default()
                    },
                    IstioVirtualService {
                        name: "mesh/b".into(),
                        ..Default::default()
                    },
                ]),
                destination_rule: Some(IstioDestinationRule {
                    name: "dr".into(),
                    canary_subset_name: "canary".into(),
                    stable_subset_name: "stable".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let target = RouteTarget {
            namespace: "app".into(),
            ..Default::default()
        };
        let routers = routers_for(&routing);
        let described: Vec<_> = routers
            .iter()
            .map(|r| (r.kind(), r.object(&target).to_string()))
            .collect();
        assert_eq!(
            described,
            [
                ("Istio", "VirtualService 'app/a'".to_string()),
                ("Istio", "VirtualService 'mesh/b'".to_string()),
            ]
        );

        let routing = RolloutTrafficRouting {
            nginx: Some(NginxTrafficRouting {
                stable_ingresses: Some(vec!["web".into(), "api".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let target = RouteTarget {
            namespace: "app".into(),
            rollout: "shop".into(),
            ..Default::default()
        };
        let described: Vec<_> = routers_for(&routing)
            .iter()
            .map(|r| (r.kind(), r.object(&target).to_string()))
            .collect();
        assert_eq!(
            described,
            [
                ("NGINX", "Ingress 'app/shop-web-canary'".to_string()),
                ("NGINX", "Ingress 'app/shop-api-canary'".to_string()),
            ]
        );

        let routing = RolloutTrafficRouting {
            gateway_api: Some(GatewayApiTrafficRouting {
                http_routes: Some(vec![GatewayApiRoute { name: "r1".into() }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let described: Vec<_> = routers_for(&routing)
            .iter()
            .map(|r| (r.kind(), r.object(&target).to_string()))
            .collect();
        assert_eq!(
            described,
            [("GatewayAPI", "HTTPRoute 'app/r1'".to_string())]
        );

        assert!(routers_for(&RolloutTrafficRouting::default()).is_empty());
    }
}
