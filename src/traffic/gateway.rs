//! Gateway API: the weights of the stable and canary Services' `backendRefs` in the rules of an
//! HTTPRoute (semantics §13). One router covers every Gateway API implementation (Envoy
//! Gateway, Istio incl. GAMMA mesh routing, Cilium, …).
//!
//! The HTTPRoute is the user's; like the Istio router we send a guarded JSON patch that sets
//! only `weight`s. Every rule whose backendRefs name both Services is updated; other rules (a
//! path only the stable version serves, say) are left alone. Other backendRefs in an updated
//! rule keep their weight and the stable backend gets what is left of 100, so the canary's
//! share of the rule is exactly the weight asked for.

use futures::future::BoxFuture;
use kube::core::GroupVersionKind;
use serde_json::{Value, json};

use super::{
    MAX_WEIGHT, RouteTarget, RoutingObject, RoutingSnapshot, TrafficError, TrafficRouter,
    WeightWrite, check_weight, get_json, json_patch_from, send_weight_patch, set_member_op,
    test_op,
};

/// API group of HTTPRoute.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
/// The version we read and patch (standard channel, GA since Gateway API v1.0).
pub const GATEWAY_VERSION: &str = "v1";
/// `apiVersion` of the HTTPRoutes we patch.
pub const GATEWAY_API_VERSION: &str = "gateway.networking.k8s.io/v1";

/// A backendRef without `weight` has weight 1 (the CRD's default).
const DEFAULT_BACKEND_WEIGHT: i64 = 1;

fn http_route_gvk() -> GroupVersionKind {
    GroupVersionKind::gvk(GATEWAY_GROUP, GATEWAY_VERSION, "HTTPRoute")
}

/// The HTTPRoute API (`gateway.networking.k8s.io/v1`).
pub fn http_route_resource() -> kube::api::ApiResource {
    kube::api::ApiResource::from_gvk_with_plural(&http_route_gvk(), "httproutes")
}

/// A rule to update: indices into `spec.rules[rule].backendRefs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleBackends {
    pub rule: usize,
    pub stable: usize,
    pub canary: usize,
    /// Every other backendRef of the rule; never written, only guarded.
    pub others: Vec<usize>,
}

fn rules(route: &Value) -> &[Value] {
    route
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn backend_refs(rule: &Value) -> &[Value] {
    rule.get("backendRefs")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn weight_of(backend: &Value) -> i64 {
    backend
        .get("weight")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_BACKEND_WEIGHT)
}

/// Whether a backendRef is the Service `service` in `namespace`: a core Service (group "" and
/// kind Service, both defaults) in the route's own namespace unless it names one.
fn is_service(backend: &Value, service: &str, route_namespace: &str, namespace: &str) -> bool {
    let text = |key: &str| backend.get(key).and_then(Value::as_str);
    text("name") == Some(service)
        && text("group").unwrap_or("").is_empty()
        && text("kind").unwrap_or("Service") == "Service"
        && text("namespace").unwrap_or(route_namespace) == namespace
}

/// The rules whose backendRefs name both the stable and the canary Service. None → Invalid
/// naming the route: with nothing to weight, a rollout would shift no traffic at all.
pub fn matching_rules(
    route: &Value,
    route_name: &str,
    target: &RouteTarget,
) -> Result<Vec<RuleBackends>, TrafficError> {
    let route_namespace = route
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or(&target.namespace);
    let mut found = Vec::new();
    for (rule_index, rule) in rules(route).iter().enumerate() {
        let refs = backend_refs(rule);
        let positions = |service: &str| -> Vec<usize> {
            refs.iter()
                .enumerate()
                .filter(|(_, b)| is_service(b, service, route_namespace, &target.namespace))
                .map(|(k, _)| k)
                .collect()
        };
        let (stable, canary) = (
            positions(&target.stable_service),
            positions(&target.canary_service),
        );
        match (stable.as_slice(), canary.as_slice()) {
            ([s], [c]) if s != c => found.push(RuleBackends {
                rule: rule_index,
                stable: *s,
                canary: *c,
                others: (0..refs.len()).filter(|k| k != s && k != c).collect(),
            }),
            ([], _) | (_, []) => {}
            _ => {
                return Err(TrafficError::Invalid(format!(
                    "rule #{rule_index} of HTTPRoute '{route_name}' names the stable Service \
                     '{}' or the canary Service '{}' more than once: keep one backendRef each",
                    target.stable_service, target.canary_service
                )));
            }
        }
    }
    if found.is_empty() {
        return Err(TrafficError::Invalid(format!(
            "HTTPRoute '{route_name}' has no rule with backendRefs to both the stable Service \
             '{}' and the canary Service '{}': add the canary Service (weight 0) next to the \
             stable one",
            target.stable_service, target.canary_service
        )));
    }
    Ok(found)
}

/// The canary's share of traffic, in percent, the HTTPRoute shows: the one every matching rule
/// gives it; None when no rule has any weight to share, or when rules disagree (unknown: the
/// planner's next write brings them together).
pub fn current_canary_weight(
    route: &Value,
    route_name: &str,
    target: &RouteTarget,
) -> Result<Option<i32>, TrafficError> {
    let mut seen: Option<i32> = None;
    for found in matching_rules(route, route_name, target)? {
        let refs = rules(route).get(found.rule).map_or(&[][..], backend_refs);
        let total: i64 = refs.iter().map(weight_of).sum();
        let Some(canary) = refs.get(found.canary).map(weight_of) else {
            continue;
        };
        if total <= 0 {
            continue;
        }
        let percent = (canary * i64::from(MAX_WEIGHT) + total / 2) / total;
        let percent = i32::try_from(percent.clamp(0, i64::from(MAX_WEIGHT))).unwrap_or(MAX_WEIGHT);
        match seen {
            Some(h) if h != percent => return Ok(None),
            _ => seen = Some(percent),
        }
    }
    Ok(seen)
}

/// The guarded JSON patch that gives the canary `canary_weight` and the stable backend the
/// rest in every matching rule, or None when the HTTPRoute already shows that. Each write is
/// preceded by `test`s of the stable and canary backendRefs' `name` at the indices found and of
/// every other backendRef of the rule as a whole.
pub fn weight_patch(
    route: &Value,
    route_name: &str,
    target: &RouteTarget,
    canary_weight: i32,
) -> Result<Option<json_patch::Patch>, TrafficError> {
    check_weight(canary_weight, MAX_WEIGHT)?;
    let mut tests = Vec::new();
    let mut writes = Vec::new();
    for found in matching_rules(route, route_name, target)? {
        let refs = rules(route).get(found.rule).map_or(&[][..], backend_refs);
        let others_weight: i64 = found
            .others
            .iter()
            .filter_map(|&k| refs.get(k))
            .map(weight_of)
            .sum();
        let stable_weight = i64::from(MAX_WEIGHT) - i64::from(canary_weight) - others_weight;
        if stable_weight < 0 {
            return Err(TrafficError::Invalid(format!(
                "rule #{} of HTTPRoute '{route_name}' gives weight {others_weight} (of 100) to \
                 backends other than the stable and canary Services, so the canary cannot get \
                 {canary_weight}",
                found.rule
            )));
        }
        let (Some(canary), Some(stable)) = (refs.get(found.canary), refs.get(found.stable)) else {
            continue; // matching_rules only returns indices inside the rule
        };
        // Compare what is stored, not the effective default: a stored weight is what a
        // reader (and the next call) sees.
        let stored = |b: &Value| b.get("weight").and_then(Value::as_i64);
        let canary_ok = stored(canary) == Some(i64::from(canary_weight));
        let stable_ok = stored(stable) == Some(stable_weight);
        if canary_ok && stable_ok {
            continue;
        }
        let base = format!("/spec/rules/{}/backendRefs", found.rule);
        for k in [found.canary, found.stable] {
            if let Some(b) = refs.get(k) {
                tests.push(test_op(format!("{base}/{k}/name"), &b["name"]));
            }
        }
        for &k in &found.others {
            if let Some(b) = refs.get(k) {
                tests.push(test_op(format!("{base}/{k}"), b));
            }
        }
        if !canary_ok {
            writes.push(set_member_op(
                canary,
                &format!("{base}/{}", found.canary),
                "weight",
                json!(canary_weight),
            ));
        }
        if !stable_ok {
            writes.push(set_member_op(
                stable,
                &format!("{base}/{}", found.stable),
                "weight",
                json!(stable_weight),
            ));
        }
    }
    if writes.is_empty() {
        return Ok(None);
    }
    tests.extend(writes);
    json_patch_from(tests).map(Some)
}

/// Shifts traffic in one HTTPRoute in the Rollout's namespace.
#[derive(Clone, Debug)]
pub struct GatewayRouter {
    http_route: String,
}

impl GatewayRouter {
    pub fn new(http_route: &str) -> Self {
        GatewayRouter {
            http_route: http_route.to_string(),
        }
    }

    async fn read_route(
        &self,
        client: &kube::Client,
        target: &RouteTarget,
    ) -> Result<RoutingSnapshot, TrafficError> {
        let object = self.object(target);
        let body = get_json(
            &object.api(client),
            "HTTPRoute",
            &object.name,
            &object.namespace,
            "create it, or correct strategy.canary.trafficRouting.gatewayAPI in the Rollout",
        )
        .await?;
        Ok(RoutingSnapshot { object, body })
    }

    /// Reads the route and writes the weights that differ. The patch `test`s the backendRefs it
    /// moves but not their weights, so the route is read at write time, not taken from observe.
    async fn write_weight(
        &self,
        client: &kube::Client,
        target: &RouteTarget,
        canary_weight: i32,
    ) -> Result<WeightWrite, TrafficError> {
        check_weight(canary_weight, MAX_WEIGHT)?;
        let read = self.read_route(client, target).await?;
        let route_name = read.object.key();
        let was = current_canary_weight(&read.body, &route_name, target)?;
        let patch = weight_patch(&read.body, &route_name, target, canary_weight)?;
        send_weight_patch(client, read, patch, was, canary_weight).await
    }
}

impl TrafficRouter for GatewayRouter {
    fn kind(&self) -> &'static str {
        "GatewayAPI"
    }

    fn object(&self, target: &RouteTarget) -> RoutingObject {
        RoutingObject::new(http_route_resource(), &target.namespace, &self.http_route)
    }

    fn read<'a>(
        &'a self,
        client: &'a kube::Client,
        target: &'a RouteTarget,
    ) -> BoxFuture<'a, Result<RoutingSnapshot, TrafficError>> {
        Box::pin(self.read_route(client, target))
    }

    fn weight_in(
        &self,
        snapshot: &RoutingSnapshot,
        target: &RouteTarget,
    ) -> Result<Option<i32>, TrafficError> {
        current_canary_weight(&snapshot.body, &snapshot.object.key(), target)
    }

    fn set_weight<'a>(
        &'a self,
        client: &'a kube::Client,
        target: &'a RouteTarget,
        _from: Option<RoutingSnapshot>,
        canary_weight: i32,
    ) -> BoxFuture<'a, Result<WeightWrite, TrafficError>> {
        Box::pin(self.write_weight(client, target, canary_weight))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn route() -> Value {
        json!({
            "apiVersion": GATEWAY_API_VERSION, "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": "app"},
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "rules": [
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
                     "backendRefs": [{"name": "web-stable", "port": 80}]},
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                     "backendRefs": [
                        {"name": "web-stable", "port": 80, "weight": 100},
                        {"name": "web-canary", "port": 80, "weight": 0}
                     ]}
                ]
            }
        })
    }

    fn applied(route: &Value, patch: &json_patch::Patch) -> Value {
        let mut out = route.clone();
        json_patch::patch(&mut out, patch).expect("patch applies to the object it was made from");
        out
    }

    #[test]
    fn rules_naming_both_services_are_updated() {
        let route = route();
        let patch = weight_patch(&route, "app/web", &target(), 10).expect("valid");
        let patch = patch.expect("a patch");
        assert_eq!(
            serde_json::to_value(&patch).expect("serializes"),
            json!([
                {"op": "test", "path": "/spec/rules/1/backendRefs/1/name", "value": "web-canary"},
                {"op": "test", "path": "/spec/rules/1/backendRefs/0/name", "value": "web-stable"},
                {"op": "replace", "path": "/spec/rules/1/backendRefs/1/weight", "value": 10},
                {"op": "replace", "path": "/spec/rules/1/backendRefs/0/weight", "value": 90}
            ])
        );
        let after = applied(&route, &patch);
        let mut expected = route.clone();
        expected["spec"]["rules"][1]["backendRefs"][0]["weight"] = json!(90);
        expected["spec"]["rules"][1]["backendRefs"][1]["weight"] = json!(10);
        assert_eq!(after, expected, "the stable-only rule is untouched");
        assert_eq!(
            current_canary_weight(&after, "app/web", &target()).expect("valid"),
            Some(10)
        );
        assert!(
            weight_patch(&after, "app/web", &target(), 10)
                .expect("valid")
                .is_none(),
            "already equal"
        );
    }

    #[test]
    fn backend_refs_without_weight_get_one_written() {
        let route = json!({"metadata": {"namespace": "app"}, "spec": {"rules": [{"backendRefs": [
            {"name": "web-canary", "port": 80},
            {"name": "web-stable", "port": 80}
        ]}]}});
        // Unweighted backends share equally: 50 %.
        assert_eq!(
            current_canary_weight(&route, "app/web", &target()).expect("valid"),
            Some(50)
        );
        let patch = weight_patch(&route, "app/web", &target(), 1).expect("valid");
        assert_eq!(
            serde_json::to_value(patch.expect("patch")).expect("serializes"),
            json!([
                {"op": "test", "path": "/spec/rules/0/backendRefs/0/name", "value": "web-canary"},
                {"op": "test", "path": "/spec/rules/0/backendRefs/1/name", "value": "web-stable"},
                {"op": "add", "path": "/spec/rules/0/backendRefs/0/weight", "value": 1},
                {"op": "add", "path": "/spec/rules/0/backendRefs/1/weight", "value": 99}
            ])
        );
    }

    #[test]
    fn extra_backends_keep_their_weight_and_bound_the_canary() {
        let route = json!({"spec": {"rules": [{"backendRefs": [
            {"name": "web-stable", "weight": 70},
            {"name": "legacy", "weight": 20},
            {"name": "web-canary", "weight": 10},
            {"name": "sidecar"}
        ]}]}});
        let patch = weight_patch(&route, "app/web", &target(), 30)
            .expect("valid")
            .expect("patch");
        let ops = serde_json::to_value(&patch).expect("serializes");
        assert_eq!(
            ops[2],
            json!({"op": "test", "path": "/spec/rules/0/backendRefs/1", "value": {"name": "legacy", "weight": 20}})
        );
        let after = applied(&route, &patch);
        let weights: Vec<Value> = (0..4)
            .map(|k| after["spec"]["rules"][0]["backendRefs"][k]["weight"].clone())
            .collect();
        // legacy 20 and the defaulted sidecar 1 stay; stable gets 100 − 30 − 21.
        assert_eq!(weights, [json!(49), json!(20), json!(30), Value::Null]);
        assert_eq!(
            current_canary_weight(&after, "app/web", &target()).expect("valid"),
            Some(30)
        );
        let err = weight_patch(&route, "app/web", &target(), 80).expect_err("over 100");
        assert!(
            err.to_string().contains("gives weight 21 (of 100)"),
            "{err}"
        );
    }

    #[test]
    fn backend_refs_must_be_the_services_in_the_rollout_namespace() {
        let refs = [
            (json!({"name": "web-canary"}), true),
            (
                json!({"name": "web-canary", "kind": "Service", "group": ""}),
                true,
            ),
            (json!({"name": "web-canary", "namespace": "app"}), true),
            (json!({"name": "web-canary", "namespace": "other"}), false),
            (
                json!({"name": "web-canary", "kind": "ServiceImport", "group": "multicluster.x-k8s.io"}),
                false,
            ),
            (json!({"name": "web-canary-2"}), false),
        ];
        for (backend, want) in refs {
            assert_eq!(
                is_service(&backend, "web-canary", "app", "app"),
                want,
                "{backend}"
            );
        }
    }

    #[test]
    fn a_route_without_both_services_is_invalid() {
        let route = json!({"spec": {"rules": [
            {"backendRefs": [{"name": "web-stable"}]},
            {"backendRefs": [{"name": "web-canary"}]}
        ]}});
        let err = weight_patch(&route, "app/web", &target(), 10).expect_err("no rule");
        assert!(matches!(err, TrafficError::Invalid(_)));
        assert_eq!(
            err.to_string(),
            "HTTPRoute 'app/web' has no rule with backendRefs to both the stable Service \
             'web-stable' and the canary Service 'web-canary': add the canary Service (weight 0) \
             next to the stable one"
        );
        let twice = json!({"spec": {"rules": [{"backendRefs": [
            {"name": "web-stable"}, {"name": "web-canary"}, {"name": "web-canary", "port": 81}
        ]}]}});
        let err = weight_patch(&twice, "app/web", &target(), 10).expect_err("ambiguous");
        assert!(err.to_string().contains("more than once"), "{err}");
    }

    #[test]
    fn current_weight_is_unknown_when_rules_disagree() {
        let rules = |a: i64, b: i64| {
            json!({"spec": {"rules": [
                {"backendRefs": [{"name": "web-stable", "weight": 100 - a}, {"name": "web-canary", "weight": a}]},
                {"backendRefs": [{"name": "web-stable", "weight": 100 - b}, {"name": "web-canary", "weight": b}]}
            ]}})
        };
        assert_eq!(
            current_canary_weight(&rules(30, 0), "app/web", &target()).expect("valid"),
            None,
            "a rule added at 0 beside one at 30: neither is the weight"
        );
        assert_eq!(
            current_canary_weight(&rules(30, 30), "app/web", &target()).expect("valid"),
            Some(30)
        );
    }

    #[test]
    fn current_weight_is_none_when_nothing_is_weighted() {
        let route = json!({"spec": {"rules": [{"backendRefs": [
            {"name": "web-stable", "weight": 0}, {"name": "web-canary", "weight": 0}
        ]}]}});
        assert_eq!(
            current_canary_weight(&route, "app/web", &target()).expect("valid"),
            None
        );
    }
}
