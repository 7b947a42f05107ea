//! Istio: the canary and stable weights in a VirtualService's HTTP routes, and the pod-template
//! hashes in a DestinationRule's subsets (semantics §4).
//!
//! Unlike Argo Rollouts, which rewrites the whole VirtualService with an Update and deletes
//! destinations it does not know, we send a guarded JSON patch that touches only the two
//! `weight` fields (see the module doc of `traffic`). Destinations other than the stable and
//! canary ones are left as they are, weight included; the stable destination gets what the
//! canary and they leave of 100, so the route still sums to 100.

use futures::future::BoxFuture;
use kube::api::DynamicObject;
use kube::core::GroupVersionKind;
use serde_json::{Value, json};
use tracing::{debug, info};

use super::{
    MAX_WEIGHT, ObjectName, PreparedAbort, RouteTarget, RoutingObject, RoutingSnapshot,
    TrafficError, TrafficRouter, WeightWrite, apply_guarded_patch, check_weight, get_json,
    json_patch_from, send_weight_patch, set_member_op, test_op,
};
use crate::api::{IstioDestinationRule, POD_TEMPLATE_HASH_LABEL};

/// API group of VirtualService and DestinationRule.
pub const ISTIO_GROUP: &str = "networking.istio.io";
/// The version we read and patch: the upstream CRD serves v1 (storage), v1beta1 and v1alpha3
/// with the same schema, and v1 is the one that will not be removed.
pub const ISTIO_VERSION: &str = "v1";
/// `apiVersion` of the Istio objects we patch.
pub const ISTIO_API_VERSION: &str = "networking.istio.io/v1";

fn virtual_service_gvk() -> GroupVersionKind {
    GroupVersionKind::gvk(ISTIO_GROUP, ISTIO_VERSION, "VirtualService")
}

/// The VirtualService API (for the controller's watch cache of them).
pub fn virtual_service_resource() -> kube::api::ApiResource {
    kube::api::ApiResource::from_gvk_with_plural(&virtual_service_gvk(), "virtualservices")
}

/// Keeps of a VirtualService what the router reads: its name, namespace and resourceVersion,
/// and of each HTTP route (all of them, so indices hold) its `name` and `route` — the
/// destinations and weights the weight patch reads and `test`s. For the controller's watch
/// cache, whose memory then grows with the routes, not with the rest of users' objects.
pub fn trim_virtual_service(vs: &mut DynamicObject) {
    let meta = &mut vs.metadata;
    meta.managed_fields = None;
    meta.labels = None;
    meta.annotations = None;
    meta.owner_references = None;
    meta.finalizers = None;
    let http: Vec<Value> = vs
        .data
        .pointer("/spec/http")
        .and_then(Value::as_array)
        .map(|routes| {
            routes
                .iter()
                .map(|r| {
                    let mut kept = serde_json::Map::new();
                    for field in ["name", "route"] {
                        if let Some(v) = r.get(field) {
                            kept.insert(field.to_string(), v.clone());
                        }
                    }
                    Value::Object(kept)
                })
                .collect()
        })
        .unwrap_or_default();
    vs.data = json!({"spec": {"http": http}});
}

fn destination_rule_gvk() -> GroupVersionKind {
    GroupVersionKind::gvk(ISTIO_GROUP, ISTIO_VERSION, "DestinationRule")
}

/// How the stable and canary destinations of a route are told apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Split {
    /// By Service: the first DNS label of `destination.host` (`reviews`,
    /// `reviews.app.svc.cluster.local`).
    Host { stable: String, canary: String },
    /// By `destination.subset`; the DestinationRule's subsets select the pods by hash.
    Subset { stable: String, canary: String },
}

impl Split {
    /// Subset split when the Rollout names a DestinationRule, host split otherwise.
    pub fn new(target: &RouteTarget, destination_rule: Option<&IstioDestinationRule>) -> Self {
        match destination_rule {
            Some(dr) => Split::Subset {
                stable: dr.stable_subset_name.clone(),
                canary: dr.canary_subset_name.clone(),
            },
            None => Split::Host {
                stable: target.stable_service.clone(),
                canary: target.canary_service.clone(),
            },
        }
    }

    /// The `destination` field that identifies an entry, and the one the patch `test`s.
    fn field(&self) -> &'static str {
        match self {
            Split::Host { .. } => "host",
            Split::Subset { .. } => "subset",
        }
    }

    fn wanted(&self, canary: bool) -> &str {
        match (self, canary) {
            (Split::Host { canary: c, .. } | Split::Subset { canary: c, .. }, true) => c,
            (Split::Host { stable: s, .. } | Split::Subset { stable: s, .. }, false) => s,
        }
    }

    fn matches(&self, destination: &Value, canary: bool) -> bool {
        let Some(value) = destination.get(self.field()).and_then(Value::as_str) else {
            return false;
        };
        let wanted = self.wanted(canary);
        match self {
            Split::Host { .. } => value.split('.').next() == Some(wanted),
            Split::Subset { .. } => value == wanted,
        }
    }

    /// "Canary Service 'reviews-canary'" / "Stable subset 'stable'", for messages.
    fn describe(&self, canary: bool) -> String {
        let role = if canary { "Canary" } else { "Stable" };
        let what = match self {
            Split::Host { .. } => "Service",
            Split::Subset { .. } => "subset",
        };
        format!("{role} {what} '{}'", self.wanted(canary))
    }
}

/// Where the stable and canary destinations of one HTTP route are: indices into
/// `spec.http[http_index].route`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteDestinations {
    pub http_index: usize,
    pub stable: usize,
    pub canary: usize,
    /// Every other destination of the route; never written, only guarded.
    pub others: Vec<usize>,
}

fn http_routes(vs: &Value) -> &[Value] {
    vs.pointer("/spec/http")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn destinations(vs: &Value, http_index: usize) -> &[Value] {
    vs.pointer(&format!("/spec/http/{http_index}/route"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// "HTTP route 'primary'" or, for an unnamed one, "HTTP route #0".
fn route_label(vs: &Value, http_index: usize) -> String {
    match http_routes(vs)
        .get(http_index)
        .and_then(|r| r.get("name"))
        .and_then(Value::as_str)
    {
        Some(name) => format!("HTTP route '{name}'"),
        None => format!("HTTP route #{http_index}"),
    }
}

fn weight_of(destination: &Value) -> Option<i64> {
    destination.get("weight").and_then(Value::as_i64)
}

/// The indices of the HTTP routes to update: the named ones, or — when none are named — the
/// only one.
pub fn select_http_routes(
    vs: &Value,
    vs_name: &str,
    route_names: &[String],
) -> Result<Vec<usize>, TrafficError> {
    let http = http_routes(vs);
    if route_names.is_empty() {
        return match http.len() {
            1 => Ok(vec![0]),
            n => Err(TrafficError::Invalid(format!(
                "VirtualService '{vs_name}' has {n} HTTP routes: with no routes named in \
                 strategy.canary.trafficRouting.istio it must have exactly one; name the routes \
                 to update in virtualService.routes"
            ))),
        };
    }
    let mut selected = Vec::new();
    for wanted in route_names {
        let index = http
            .iter()
            .position(|r| r.get("name").and_then(Value::as_str) == Some(wanted.as_str()))
            .ok_or_else(|| {
                let names: Vec<String> = http
                    .iter()
                    .filter_map(|r| r.get("name").and_then(Value::as_str))
                    .map(|n| format!("'{n}'"))
                    .collect();
                TrafficError::NotFound {
                    kind: "HTTP route".into(),
                    name: wanted.clone(),
                    fix: format!(
                        "VirtualService '{vs_name}' has named HTTP routes [{}]; add the route or \
                         correct virtualService.routes in the Rollout",
                        names.join(", ")
                    ),
                }
            })?;
        if !selected.contains(&index) {
            selected.push(index);
        }
    }
    Ok(selected)
}

/// Finds the stable and canary destinations of one HTTP route. Each must match exactly one
/// destination: a missing one cannot be weighted, and with two matches we could not tell which
/// one the user means.
pub fn find_destinations(
    vs: &Value,
    vs_name: &str,
    http_index: usize,
    split: &Split,
) -> Result<RouteDestinations, TrafficError> {
    let route = destinations(vs, http_index);
    let find = |canary: bool| -> Result<usize, TrafficError> {
        let matching: Vec<usize> = route
            .iter()
            .enumerate()
            .filter(|(_, d)| {
                d.get("destination")
                    .is_some_and(|dest| split.matches(dest, canary))
            })
            .map(|(k, _)| k)
            .collect();
        match matching.as_slice() {
            [k] => Ok(*k),
            [] => Err(TrafficError::Invalid(format!(
                "{} not found in {} of VirtualService '{vs_name}': add a destination for it \
                 (weight 0) next to the stable one",
                split.describe(canary),
                route_label(vs, http_index),
            ))),
            many => Err(TrafficError::Invalid(format!(
                "{} matches {} destinations in {} of VirtualService '{vs_name}': keep exactly one",
                split.describe(canary),
                many.len(),
                route_label(vs, http_index),
            ))),
        }
    };
    let stable = find(false)?;
    let canary = find(true)?;
    if stable == canary {
        return Err(TrafficError::Invalid(format!(
            "{} and {} are the same destination in {} of VirtualService '{vs_name}'",
            split.describe(false),
            split.describe(true),
            route_label(vs, http_index),
        )));
    }
    let others = (0..route.len())
        .filter(|k| *k != stable && *k != canary)
        .collect();
    Ok(RouteDestinations {
        http_index,
        stable,
        canary,
        others,
    })
}

/// The canary weight the VirtualService shows: the one every selected route gives it; `None`
/// when routes disagree (a route added mid-rollout, one half written): unknown, so the planner
/// neither trusts the highest nor the lowest, and its next write brings them together. A
/// destination without `weight` next to others gets none in Istio, so it counts as 0.
pub fn current_canary_weight(
    vs: &Value,
    vs_name: &str,
    route_names: &[String],
    split: &Split,
) -> Result<Option<i32>, TrafficError> {
    let mut seen: Option<i32> = None;
    for http_index in select_http_routes(vs, vs_name, route_names)? {
        let found = find_destinations(vs, vs_name, http_index, split)?;
        let weight = destinations(vs, http_index)
            .get(found.canary)
            .and_then(weight_of)
            .unwrap_or(0);
        let weight = i32::try_from(weight.clamp(0, i64::from(MAX_WEIGHT))).unwrap_or(MAX_WEIGHT);
        match seen {
            Some(w) if w != weight => return Ok(None),
            _ => seen = Some(weight),
        }
    }
    Ok(seen)
}

/// The guarded JSON patch that gives the canary `canary_weight` in every selected route and
/// the stable destination the rest, or None when the VirtualService already shows exactly
/// that.
///
/// For each route that needs a write the patch first `test`s the route's `name` (when it has
/// one), the `host`/`subset` of the stable and canary destinations at the indices we found, and
/// every other destination as a whole (their weights decide the stable weight); then it
/// `replace`s (or `add`s, when absent) only the weights that differ.
pub fn weight_patch(
    vs: &Value,
    vs_name: &str,
    route_names: &[String],
    split: &Split,
    canary_weight: i32,
) -> Result<Option<json_patch::Patch>, TrafficError> {
    check_weight(canary_weight, MAX_WEIGHT)?;
    let mut tests = Vec::new();
    let mut writes = Vec::new();
    for http_index in select_http_routes(vs, vs_name, route_names)? {
        let found = find_destinations(vs, vs_name, http_index, split)?;
        let route = destinations(vs, http_index);
        let others_weight: i64 = found
            .others
            .iter()
            .filter_map(|&k| route.get(k).and_then(weight_of))
            .sum();
        let stable_weight = i64::from(MAX_WEIGHT) - i64::from(canary_weight) - others_weight;
        if stable_weight < 0 {
            return Err(TrafficError::Invalid(format!(
                "{} of VirtualService '{vs_name}' gives {others_weight}% to destinations other \
                 than the stable and canary ones, so the canary cannot get {canary_weight}%",
                route_label(vs, http_index),
            )));
        }
        let (Some(canary), Some(stable)) = (route.get(found.canary), route.get(found.stable))
        else {
            continue; // find_destinations only returns indices inside the route
        };
        let canary_ok = weight_of(canary) == Some(i64::from(canary_weight));
        let stable_ok = weight_of(stable) == Some(stable_weight);
        if canary_ok && stable_ok {
            continue;
        }

        let base = format!("/spec/http/{http_index}");
        if let Some(name) = http_routes(vs).get(http_index).and_then(|r| r.get("name")) {
            tests.push(test_op(format!("{base}/name"), name));
        }
        // The canary's whole entry, weight included: a write planned from a read that an
        // abort's weight-0 write overtook must fail, not give the canary its traffic back
        // (the abort's write does not wait for a reconcile in flight; `controller`).
        tests.push(test_op(format!("{base}/route/{}", found.canary), canary));
        let field = split.field();
        tests.push(test_op(
            format!("{base}/route/{}/destination/{field}", found.stable),
            &stable["destination"][field],
        ));
        for &k in &found.others {
            if let Some(d) = route.get(k) {
                tests.push(test_op(format!("{base}/route/{k}"), d));
            }
        }
        if !canary_ok {
            writes.push(set_member_op(
                canary,
                &format!("{base}/route/{}", found.canary),
                "weight",
                json!(canary_weight),
            ));
        }
        if !stable_ok {
            writes.push(set_member_op(
                stable,
                &format!("{base}/route/{}", found.stable),
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

/// The guarded JSON patch that takes the canary back to weight 0 from `vs` as it is: the
/// [`weight_patch`] to 0, preceded by a `test` of the canary's current weight in every selected
/// route, so that it applies only while the object still is exactly as seen here (see
/// [`super::prepared`]). Returns the canary weight it expects with the patch, or None when the
/// canary has no weight to take away.
pub fn abort_patch(
    vs: &Value,
    vs_name: &str,
    route_names: &[String],
    split: &Split,
) -> Result<Option<PreparedAbort>, TrafficError> {
    let Some(writes) = weight_patch(vs, vs_name, route_names, split, 0)? else {
        return Ok(None);
    };
    let Some(from) = current_canary_weight(vs, vs_name, route_names, split)? else {
        return Ok(None);
    };
    let mut tests = Vec::new();
    for http_index in select_http_routes(vs, vs_name, route_names)? {
        let found = find_destinations(vs, vs_name, http_index, split)?;
        let path = format!("/spec/http/{http_index}/route/{}/weight", found.canary);
        match destinations(vs, http_index)
            .get(found.canary)
            .and_then(|d| d.get("weight"))
        {
            Some(weight) => tests.push(test_op(path, weight)),
            // No weight to test: leave this case to the read-then-write path.
            None => return Ok(None),
        }
    }
    let mut ops = json_patch_from(tests)?.0;
    ops.extend(writes.0);
    Ok(Some(PreparedAbort {
        from,
        patch: json_patch::Patch(ops),
    }))
}

/// The hash labels of a DestinationRule's canary and stable subsets (`None` for a subset that is
/// missing or has no hash label: the weight write that follows reports a missing subset).
pub fn subset_hashes(dr: &Value, destination_rule: &IstioDestinationRule) -> super::SubsetHashes {
    let subsets = dr
        .pointer("/spec/subsets")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let hash_of = |subset_name: &str| {
        subsets
            .iter()
            .find(|s| s.get("name").and_then(Value::as_str) == Some(subset_name))
            .and_then(|s| s.pointer(&format!("/labels/{POD_TEMPLATE_HASH_LABEL}")))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    super::SubsetHashes {
        canary: hash_of(&destination_rule.canary_subset_name),
        stable: hash_of(&destination_rule.stable_subset_name),
    }
}

/// The guarded JSON patch that sets `labels.rollouts-pod-template-hash` of the stable and
/// canary subsets to the given hashes (a None hash leaves its subset alone), or None when they
/// already carry them. Each write is preceded by a `test` of the subset's `name` at that index;
/// when the subset has no `labels` yet, the whole subset is tested, since adding `labels` would
/// otherwise replace labels someone added meanwhile.
pub fn subset_hash_patch(
    dr: &Value,
    dr_name: &str,
    destination_rule: &IstioDestinationRule,
    stable_hash: Option<&str>,
    canary_hash: Option<&str>,
) -> Result<Option<json_patch::Patch>, TrafficError> {
    let subsets = dr
        .pointer("/spec/subsets")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let mut tests = Vec::new();
    let mut writes = Vec::new();
    let wanted = [
        ("Stable", &destination_rule.stable_subset_name, stable_hash),
        ("Canary", &destination_rule.canary_subset_name, canary_hash),
    ];
    for (role, subset_name, hash) in wanted {
        let index = subsets
            .iter()
            .position(|s| s.get("name").and_then(Value::as_str) == Some(subset_name.as_str()))
            .ok_or_else(|| {
                TrafficError::Invalid(format!(
                    "{role} subset '{subset_name}' not found in DestinationRule '{dr_name}': add \
                     it to spec.subsets or correct destinationRule in the Rollout"
                ))
            })?;
        let Some(hash) = hash else { continue };
        let Some(subset) = subsets.get(index) else {
            continue;
        };
        let labels = subset.get("labels").filter(|l| l.is_object());
        if labels.and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL)) == Some(&json!(hash)) {
            continue;
        }
        let base = format!("/spec/subsets/{index}");
        tests.push(test_op(format!("{base}/name"), &json!(subset_name)));
        match labels {
            Some(labels) => writes.push(set_member_op(
                labels,
                &format!("{base}/labels"),
                POD_TEMPLATE_HASH_LABEL,
                json!(hash),
            )),
            None => {
                tests.push(test_op(base.clone(), subset));
                writes.push(json!({
                    "op": "add",
                    "path": format!("{base}/labels"),
                    "value": {POD_TEMPLATE_HASH_LABEL: hash},
                }));
            }
        }
    }
    if writes.is_empty() {
        return Ok(None);
    }
    tests.extend(writes);
    json_patch_from(tests).map(Some)
}

/// Shifts traffic in one VirtualService.
#[derive(Clone, Debug)]
pub struct IstioRouter {
    virtual_service: ObjectName,
    routes: Vec<String>,
    /// Names the stable and canary subsets, when the split is by subset.
    destination_rule: Option<IstioDestinationRule>,
}

impl IstioRouter {
    /// `routes`: the HTTP route names to update (empty: the only one).
    pub fn new(
        virtual_service: ObjectName,
        routes: Vec<String>,
        destination_rule: Option<IstioDestinationRule>,
    ) -> Self {
        IstioRouter {
            virtual_service,
            routes,
            destination_rule,
        }
    }

    fn split(&self, target: &RouteTarget) -> Split {
        Split::new(target, self.destination_rule.as_ref())
    }

    async fn read_virtual_service(
        &self,
        client: &kube::Client,
        target: &RouteTarget,
    ) -> Result<RoutingSnapshot, TrafficError> {
        let object = self.object(target);
        let body = get_json(
            &object.api(client),
            "VirtualService",
            &object.name,
            &object.namespace,
            "create it, or correct strategy.canary.trafficRouting.istio.virtualService(s) in \
             the Rollout",
        )
        .await?;
        Ok(RoutingSnapshot { object, body })
    }

    /// Writes the weights that differ in `from` (read now when None): a patch that `test`s
    /// what it starts from.
    async fn write_weight(
        &self,
        client: &kube::Client,
        target: &RouteTarget,
        from: Option<RoutingSnapshot>,
        canary_weight: i32,
    ) -> Result<WeightWrite, TrafficError> {
        check_weight(canary_weight, MAX_WEIGHT)?;
        let read = match from {
            Some(snapshot) => snapshot,
            None => self.read_virtual_service(client, target).await?,
        };
        let vs_name = read.object.key();
        let split = self.split(target);
        let was = current_canary_weight(&read.body, &vs_name, &self.routes, &split)?;
        let patch = weight_patch(&read.body, &vs_name, &self.routes, &split, canary_weight)?;
        send_weight_patch(client, read, patch, was, canary_weight).await
    }
}

impl TrafficRouter for IstioRouter {
    fn kind(&self) -> &'static str {
        "Istio"
    }

    // `weight_patch` tests the whole canary destination it read, weight included.
    fn weight_writes_are_guarded(&self) -> bool {
        true
    }

    fn object(&self, target: &RouteTarget) -> RoutingObject {
        RoutingObject::new(
            virtual_service_resource(),
            self.virtual_service.namespace_or(&target.namespace),
            &self.virtual_service.name,
        )
    }

    fn read<'a>(
        &'a self,
        client: &'a kube::Client,
        target: &'a RouteTarget,
    ) -> BoxFuture<'a, Result<RoutingSnapshot, TrafficError>> {
        Box::pin(self.read_virtual_service(client, target))
    }

    fn weight_in(
        &self,
        snapshot: &RoutingSnapshot,
        target: &RouteTarget,
    ) -> Result<Option<i32>, TrafficError> {
        current_canary_weight(
            &snapshot.body,
            &snapshot.object.key(),
            &self.routes,
            &self.split(target),
        )
    }

    fn set_weight<'a>(
        &'a self,
        client: &'a kube::Client,
        target: &'a RouteTarget,
        from: Option<RoutingSnapshot>,
        canary_weight: i32,
    ) -> BoxFuture<'a, Result<WeightWrite, TrafficError>> {
        Box::pin(self.write_weight(client, target, from, canary_weight))
    }

    fn abort_patch(
        &self,
        snapshot: &RoutingSnapshot,
        target: &RouteTarget,
    ) -> Option<PreparedAbort> {
        abort_patch(
            &snapshot.body,
            &snapshot.object.key(),
            &self.routes,
            &self.split(target),
        )
        .ok()
        .flatten()
    }
}

/// The DestinationRule whose canary and stable subsets select the revisions by pod-template
/// hash (subset split). Part of the routing's desired state: the hashes are converged before any
/// weight, so that a weight never reaches a subset that still selects the previous pods
/// (semantics §3.2, PR #4612), and read every reconcile, so that the planner converges them
/// whatever the weight (level-triggered, as Argo Rollouts re-applies them on every reconcile).
#[derive(Clone, Debug)]
pub struct DestinationRuleSubsets {
    destination_rule: IstioDestinationRule,
}

impl DestinationRuleSubsets {
    pub fn new(destination_rule: IstioDestinationRule) -> Self {
        DestinationRuleSubsets { destination_rule }
    }

    /// The DestinationRule (named without a namespace: it lives with the Rollout).
    pub fn object(&self, target: &RouteTarget) -> RoutingObject {
        RoutingObject::new(
            kube::api::ApiResource::from_gvk_with_plural(
                &destination_rule_gvk(),
                "destinationrules",
            ),
            &target.namespace,
            &self.destination_rule.name,
        )
    }

    async fn read_json(
        &self,
        client: &kube::Client,
        target: &RouteTarget,
    ) -> Result<(RoutingObject, Value), TrafficError> {
        let object = self.object(target);
        let dr = get_json(
            &object.api(client),
            "DestinationRule",
            &object.name,
            &object.namespace,
            "create it, or correct strategy.canary.trafficRouting.istio.destinationRule in the \
             Rollout",
        )
        .await?;
        Ok((object, dr))
    }

    /// The hashes the canary and stable subsets select now.
    pub async fn read(
        &self,
        client: &kube::Client,
        target: &RouteTarget,
    ) -> Result<super::SubsetHashes, TrafficError> {
        let (_, dr) = self.read_json(client, target).await?;
        Ok(subset_hashes(&dr, &self.destination_rule))
    }

    /// Points the subsets at `target.canary_hash` / `target.stable_hash` (a hash that is None is
    /// left as it is). Returns whether anything was written.
    pub async fn converge(
        &self,
        client: &kube::Client,
        target: &RouteTarget,
    ) -> Result<bool, TrafficError> {
        let (object, dr) = self.read_json(client, target).await?;
        let dr_name = object.key();
        let Some(patch) = subset_hash_patch(
            &dr,
            &dr_name,
            &self.destination_rule,
            target.stable_hash.as_deref(),
            target.canary_hash.as_deref(),
        )?
        else {
            debug!(destination_rule = %dr_name, "subset hashes already set");
            return Ok(false);
        };
        apply_guarded_patch(
            &object.api(client),
            &object.name,
            patch,
            &object.to_string(),
        )
        .await?;
        info!(
            destination_rule = %dr_name,
            stable_hash = ?target.stable_hash,
            canary_hash = ?target.canary_hash,
            "set subset pod-template hashes"
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::WeightChange;

    fn host_split() -> Split {
        Split::Host {
            stable: "web-stable".into(),
            canary: "web-canary".into(),
        }
    }

    fn subset_split() -> Split {
        Split::Subset {
            stable: "stable".into(),
            canary: "canary".into(),
        }
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    fn patch_json(patch: Option<json_patch::Patch>) -> Value {
        serde_json::to_value(patch.expect("a patch")).expect("patch serializes")
    }

    /// Applies a patch locally, as the API server would.
    fn applied(vs: &Value, patch: &json_patch::Patch) -> Value {
        let mut out = vs.clone();
        json_patch::patch(&mut out, patch).expect("patch applies to the object it was made from");
        out
    }

    fn two_routes() -> Value {
        json!({
            "apiVersion": ISTIO_API_VERSION, "kind": "VirtualService",
            "metadata": {"name": "web", "namespace": "app"},
            "spec": {
                "hosts": ["web.example.com"],
                "http": [
                    {"name": "primary", "retries": {"attempts": 3},
                     "route": [
                        {"destination": {"host": "web-stable", "port": {"number": 80}}, "weight": 100},
                        {"destination": {"host": "web-canary.app.svc.cluster.local", "port": {"number": 80}}, "weight": 0}
                     ]},
                    {"name": "secondary",
                     "route": [
                        {"destination": {"host": "web-canary"}, "weight": 0},
                        {"destination": {"host": "web-stable"}, "weight": 100}
                     ]}
                ]
            }
        })
    }

    /// The trimmed copy the controller caches gives the same weight, patch and prepared abort
    /// as the whole object.
    #[test]
    fn a_trimmed_virtual_service_patches_like_the_whole_one() {
        let mut whole = two_routes();
        whole["metadata"]["resourceVersion"] = json!("7");
        whole["metadata"]["labels"] = json!({"team": "web"});
        whole["spec"]["http"][0]["match"] = json!([{"uri": {"prefix": "/"}}]);
        whole["spec"]["gateways"] = json!(["mesh"]);
        let mut object: DynamicObject =
            serde_json::from_value(whole.clone()).expect("dynamic object");
        trim_virtual_service(&mut object);
        let trimmed = serde_json::to_value(&object).expect("serializes");
        assert!(trimmed["spec"].get("hosts").is_none());
        assert!(trimmed["spec"]["http"][0].get("retries").is_none());
        assert_eq!(trimmed["metadata"]["resourceVersion"], "7");
        let routes = names(&["primary", "secondary"]);
        for weight in [0, 30, 100] {
            assert_eq!(
                serde_json::to_value(
                    weight_patch(&trimmed, "app/web", &routes, &host_split(), weight).ok()
                )
                .ok(),
                serde_json::to_value(
                    weight_patch(&whole, "app/web", &routes, &host_split(), weight).ok()
                )
                .ok(),
                "weight {weight}"
            );
        }
        assert_eq!(
            current_canary_weight(&trimmed, "app/web", &routes, &host_split()).ok(),
            current_canary_weight(&whole, "app/web", &routes, &host_split()).ok()
        );
    }

    /// A router handed a snapshot reads the weight from it, with no request (the client here
    /// reaches no server), and writes from it: the write goes out without a read first.
    #[tokio::test]
    async fn a_router_handed_a_snapshot_reads_no_further() {
        let router = IstioRouter::new(ObjectName::parse("web"), vec!["primary".into()], None);
        let target = RouteTarget {
            namespace: "app".into(),
            stable_service: "web-stable".into(),
            canary_service: "web-canary".into(),
            ..Default::default()
        };
        let object = router.object(&target);
        assert_eq!(object.key(), "app/web");
        assert_eq!(object.to_string(), "VirtualService 'app/web'");
        let mut vs = two_routes();
        vs["metadata"]["resourceVersion"] = json!("41");
        vs["spec"]["http"][0]["route"][0]["weight"] = json!(70);
        vs["spec"]["http"][0]["route"][1]["weight"] = json!(30);
        let snapshot = RoutingSnapshot { object, body: vs };
        assert_eq!(snapshot.resource_version(), Some("41"));
        assert_eq!(router.weight_in(&snapshot, &target).ok(), Some(Some(30)));
        // The weight it shows: nothing to write, and no request.
        let client = crate::traffic::fake::offline_client();
        let same = router
            .set_weight(&client, &target, Some(snapshot.clone()), 30)
            .await
            .expect("no request needed");
        assert_eq!(same.change, WeightChange::Unchanged);
        assert_eq!(same.after, snapshot);
        // Another weight needs a request, which fails here (no server); the mock-server tests
        // of act (controller/act_tests.rs) show that it is the patch alone.
        let written = router
            .set_weight(&client, &target, Some(snapshot.clone()), 50)
            .await;
        assert!(matches!(written, Err(TrafficError::Kube(_))), "{written:?}");
        // The prepared way back to 0 from the snapshot tests its weight.
        let abort = router.abort_patch(&snapshot, &target).expect("prepared");
        assert_eq!(abort.from, 30);
    }

    #[test]
    fn abort_patch_applies_only_to_the_object_it_was_prepared_from() {
        let split = host_split();
        let routes = names(&["primary", "secondary"]);
        let at_0 = two_routes();
        assert_eq!(
            abort_patch(&at_0, "web", &routes, &split).expect("valid"),
            None,
            "no canary weight to take away"
        );
        let set = |vs: &Value, w: i32| {
            applied(
                vs,
                &weight_patch(vs, "web", &routes, &split, w)
                    .expect("valid")
                    .expect("a patch"),
            )
        };
        let at_30 = set(&at_0, 30);
        let abort = abort_patch(&at_30, "web", &routes, &split)
            .expect("valid")
            .expect("a patch");
        assert_eq!(abort.from, 30);

        let back = applied(&at_30, &abort.patch);
        assert_eq!(
            back, at_0,
            "all traffic back to stable, nothing else touched"
        );

        // Someone moved the weight since: the test of the canary weight refuses the patch.
        let mut at_40 = set(&at_30, 40);
        assert!(json_patch::patch(&mut at_40, &abort.patch).is_err());
        // Someone swapped the destinations: refused too, instead of zeroing the stable one.
        let mut swapped = at_30.clone();
        if let Some(route) = swapped["spec"]["http"][0]["route"].as_array_mut() {
            route.swap(0, 1);
        }
        assert!(json_patch::patch(&mut swapped, &abort.patch).is_err());
    }

    #[test]
    fn a_weight_planned_before_an_abort_wrote_0_is_refused() {
        // The abort's write goes out from the watch while a reconcile may be between its read
        // of the VirtualService and its write: that write must not undo the abort.
        let split = host_split();
        let routes = names(&["primary", "secondary"]);
        let set = |vs: &Value, w| {
            let patch = weight_patch(vs, "web", &routes, &split, w)
                .expect("valid")
                .expect("a patch");
            applied(vs, &patch)
        };
        let at_20 = set(&two_routes(), 20);
        let to_50 = weight_patch(&at_20, "web", &routes, &split, 50)
            .expect("valid")
            .expect("a patch");
        let abort = abort_patch(&at_20, "web", &routes, &split)
            .expect("valid")
            .expect("a patch");
        let mut aborted = applied(&at_20, &abort.patch);
        assert!(
            json_patch::patch(&mut aborted, &to_50).is_err(),
            "the stale write tests the canary weight it read"
        );
        assert_eq!(
            current_canary_weight(&aborted, "web", &routes, &split).expect("valid"),
            Some(0)
        );
        // The other way round, the abort's own test refuses it and the abort reads again.
        let mut at_50 = applied(&at_20, &to_50);
        assert!(json_patch::patch(&mut at_50, &abort.patch).is_err());
    }

    #[test]
    fn route_selection() {
        let single = json!({"spec": {"http": [{"route": []}]}});
        let empty = json!({"spec": {}});
        struct Case {
            name: &'static str,
            vs: Value,
            routes: Vec<String>,
            want: Result<Vec<usize>, &'static str>,
        }
        let cases = [
            Case {
                name: "named route",
                vs: two_routes(),
                routes: names(&["secondary"]),
                want: Ok(vec![1]),
            },
            Case {
                name: "two named routes, in the order named, duplicates once",
                vs: two_routes(),
                routes: names(&["secondary", "primary", "secondary"]),
                want: Ok(vec![1, 0]),
            },
            Case {
                name: "unnamed single route",
                vs: single.clone(),
                routes: vec![],
                want: Ok(vec![0]),
            },
            Case {
                name: "none named but two routes",
                vs: two_routes(),
                routes: vec![],
                want: Err("has 2 HTTP routes"),
            },
            Case {
                name: "none named and no routes",
                vs: empty,
                routes: vec![],
                want: Err("has 0 HTTP routes"),
            },
            Case {
                name: "named route missing",
                vs: two_routes(),
                routes: names(&["tertiary"]),
                want: Err(
                    "HTTP route 'tertiary' not found: VirtualService 'app/web' has named HTTP routes ['primary', 'secondary']",
                ),
            },
        ];
        for case in cases {
            let got = select_http_routes(&case.vs, "app/web", &case.routes);
            match (got, case.want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{}", case.name),
                (Err(e), Err(want)) => {
                    assert!(e.to_string().contains(want), "{}: {e}", case.name)
                }
                (got, want) => panic!("{}: got {got:?}, want {want:?}", case.name),
            }
        }
        let missing = select_http_routes(&two_routes(), "app/web", &names(&["x"]));
        assert!(matches!(missing, Err(TrafficError::NotFound { .. })));
    }

    #[test]
    fn host_split_matches_the_first_dns_label() {
        let vs = two_routes();
        let found = find_destinations(&vs, "app/web", 0, &host_split()).expect("found");
        assert_eq!(
            found,
            RouteDestinations {
                http_index: 0,
                stable: 0,
                canary: 1,
                others: vec![]
            }
        );
        let found = find_destinations(&vs, "app/web", 1, &host_split()).expect("found");
        assert_eq!((found.stable, found.canary), (1, 0));
        // "web-stable-2" must not match "web-stable": the label, not a prefix.
        let vs = json!({"spec": {"http": [{"route": [
            {"destination": {"host": "web-stable-2"}},
            {"destination": {"host": "web-canary"}}
        ]}]}});
        let err = find_destinations(&vs, "app/web", 0, &host_split()).expect_err("no stable");
        assert_eq!(
            err.to_string(),
            "Stable Service 'web-stable' not found in HTTP route #0 of VirtualService 'app/web': \
             add a destination for it (weight 0) next to the stable one"
        );
    }

    #[test]
    fn missing_or_ambiguous_destinations_are_invalid() {
        let missing_canary = json!({"spec": {"http": [{"name": "primary", "route": [
            {"destination": {"host": "web-stable"}, "weight": 100}
        ]}]}});
        let err = weight_patch(&missing_canary, "app/y", &[], &host_split(), 10)
            .expect_err("no canary destination");
        assert!(matches!(err, TrafficError::Invalid(_)));
        assert!(
            err.to_string()
                .starts_with("Canary Service 'web-canary' not found in HTTP route 'primary' of VirtualService 'app/y'"),
            "{err}"
        );

        let twice = json!({"spec": {"http": [{"route": [
            {"destination": {"host": "web-stable"}, "weight": 50},
            {"destination": {"host": "web-canary", "port": {"number": 80}}, "weight": 25},
            {"destination": {"host": "web-canary", "port": {"number": 81}}, "weight": 25}
        ]}]}});
        let err = weight_patch(&twice, "app/y", &[], &host_split(), 10).expect_err("ambiguous");
        assert!(err.to_string().contains("matches 2 destinations"), "{err}");

        let same = Split::Host {
            stable: "web".into(),
            canary: "web".into(),
        };
        let vs = json!({"spec": {"http": [{"route": [{"destination": {"host": "web"}}]}]}});
        let err = weight_patch(&vs, "app/y", &[], &same, 10).expect_err("same destination");
        assert!(
            err.to_string().contains("are the same destination"),
            "{err}"
        );

        let missing_subset = json!({"spec": {"http": [{"route": [
            {"destination": {"host": "web", "subset": "stable"}, "weight": 100}
        ]}]}});
        let err = weight_patch(&missing_subset, "app/y", &[], &subset_split(), 10)
            .expect_err("no canary subset");
        assert!(
            err.to_string()
                .starts_with("Canary subset 'canary' not found in HTTP route #0"),
            "{err}"
        );
    }

    #[test]
    fn weight_patch_tests_then_sets_only_weights_in_named_route() {
        let vs = two_routes();
        let patch =
            weight_patch(&vs, "app/web", &names(&["primary"]), &host_split(), 10).expect("valid");
        assert_eq!(
            patch_json(patch.clone()),
            json!([
                {"op": "test", "path": "/spec/http/0/name", "value": "primary"},
                {"op": "test", "path": "/spec/http/0/route/1", "value": {"destination": {"host": "web-canary.app.svc.cluster.local", "port": {"number": 80}}, "weight": 0}},
                {"op": "test", "path": "/spec/http/0/route/0/destination/host", "value": "web-stable"},
                {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 10},
                {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 90}
            ])
        );
        let after = applied(&vs, &patch.expect("patch"));
        assert_eq!(
            current_canary_weight(&after, "app/web", &names(&["primary"]), &host_split())
                .expect("valid"),
            Some(10)
        );
        // Only the two weights moved; the second route is untouched.
        let mut expected = vs.clone();
        expected["spec"]["http"][0]["route"][0]["weight"] = json!(90);
        expected["spec"]["http"][0]["route"][1]["weight"] = json!(10);
        assert_eq!(after, expected);
    }

    #[test]
    fn weight_patch_covers_every_selected_route() {
        let vs = two_routes();
        let routes = names(&["primary", "secondary"]);
        let patch = weight_patch(&vs, "app/web", &routes, &host_split(), 100)
            .expect("valid")
            .expect("patch");
        let after = applied(&vs, &patch);
        for (i, (stable, canary)) in [(0, 1), (1, 0)].into_iter().enumerate() {
            assert_eq!(after["spec"]["http"][i]["route"][stable]["weight"], 0);
            assert_eq!(after["spec"]["http"][i]["route"][canary]["weight"], 100);
        }
        // And back again: the weights of the result are what a second call sees.
        assert!(
            weight_patch(&after, "app/web", &routes, &host_split(), 100)
                .expect("valid")
                .is_none()
        );
    }

    #[test]
    fn weights_already_equal_give_no_patch() {
        let vs = two_routes();
        for routes in [names(&["primary"]), names(&["primary", "secondary"])] {
            assert!(
                weight_patch(&vs, "app/web", &routes, &host_split(), 0)
                    .expect("valid")
                    .is_none()
            );
        }
        // Absent weights are written explicitly, even when they would mean the same.
        let unweighted = json!({"spec": {"http": [{"route": [
            {"destination": {"host": "web-stable"}},
            {"destination": {"host": "web-canary"}}
        ]}]}});
        let patch = weight_patch(&unweighted, "app/web", &[], &host_split(), 0).expect("valid");
        assert_eq!(
            patch_json(patch),
            json!([
                {"op": "test", "path": "/spec/http/0/route/1", "value": {"destination": {"host": "web-canary"}}},
                {"op": "test", "path": "/spec/http/0/route/0/destination/host", "value": "web-stable"},
                {"op": "add", "path": "/spec/http/0/route/1/weight", "value": 0},
                {"op": "add", "path": "/spec/http/0/route/0/weight", "value": 100}
            ])
        );
    }

    #[test]
    fn only_the_differing_weight_is_written() {
        let vs = json!({"spec": {"http": [{"route": [
            {"destination": {"host": "web-stable"}, "weight": 50},
            {"destination": {"host": "web-canary"}, "weight": 20},
            {"destination": {"host": "mirror"}, "weight": 30}
        ]}]}});
        let patch = weight_patch(&vs, "app/web", &[], &host_split(), 20).expect("valid");
        assert!(patch.is_none(), "50 + 20 + 30 already");
        let patch = weight_patch(&vs, "app/web", &[], &host_split(), 30).expect("valid");
        assert_eq!(
            patch_json(patch),
            json!([
                {"op": "test", "path": "/spec/http/0/route/1", "value": {"destination": {"host": "web-canary"}, "weight": 20}},
                {"op": "test", "path": "/spec/http/0/route/0/destination/host", "value": "web-stable"},
                {"op": "test", "path": "/spec/http/0/route/2", "value": {"destination": {"host": "mirror"}, "weight": 30}},
                {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 30},
                {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 40}
            ])
        );
    }

    #[test]
    fn extra_destinations_keep_their_weight_and_bound_the_canary() {
        let vs = json!({"spec": {"http": [{"route": [
            {"destination": {"host": "web-stable"}, "weight": 80},
            {"destination": {"host": "web-canary"}, "weight": 0},
            {"destination": {"host": "legacy"}, "weight": 20},
            {"destination": {"host": "shadow"}}
        ]}]}});
        let patch = weight_patch(&vs, "app/web", &[], &host_split(), 80)
            .expect("valid")
            .expect("patch");
        let after = applied(&vs, &patch);
        let weights: Vec<Value> = (0..4)
            .map(|k| after["spec"]["http"][0]["route"][k]["weight"].clone())
            .collect();
        assert_eq!(weights, [json!(0), json!(80), json!(20), Value::Null]);
        let err = weight_patch(&vs, "app/web", &[], &host_split(), 81).expect_err("over 100");
        assert!(
            err.to_string().contains("gives 20% to destinations other"),
            "{err}"
        );
    }

    #[test]
    fn subset_split_tests_the_subset() {
        let vs = json!({"spec": {"http": [{"name": "main", "route": [
            {"destination": {"host": "web", "subset": "stable"}, "weight": 100},
            {"destination": {"host": "web", "subset": "canary"}, "weight": 0}
        ]}]}});
        let patch = weight_patch(&vs, "app/web", &[], &subset_split(), 50).expect("valid");
        assert_eq!(
            patch_json(patch),
            json!([
                {"op": "test", "path": "/spec/http/0/name", "value": "main"},
                {"op": "test", "path": "/spec/http/0/route/1", "value": {"destination": {"host": "web", "subset": "canary"}, "weight": 0}},
                {"op": "test", "path": "/spec/http/0/route/0/destination/subset", "value": "stable"},
                {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 50},
                {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 50}
            ])
        );
        // Without a DestinationRule the same route is split by host, where both
        // destinations are the one Service: ambiguous.
        let target = RouteTarget {
            stable_service: "web".into(),
            canary_service: "web-canary".into(),
            ..Default::default()
        };
        let split = Split::new(&target, None);
        assert!(matches!(split, Split::Host { .. }));
        let err = weight_patch(&vs, "app/web", &[], &split, 50).expect_err("host split");
        assert!(
            err.to_string()
                .starts_with("Stable Service 'web' matches 2 destinations"),
            "{err}"
        );
        let subset = Split::new(&target, Some(&destination_rule()));
        assert_eq!(subset, subset_split());
    }

    #[test]
    fn current_weight_is_unknown_when_routes_disagree() {
        let mut vs = two_routes();
        vs["spec"]["http"][1]["route"][0]["weight"] = json!(30);
        vs["spec"]["http"][1]["route"][1]["weight"] = json!(70);
        let both = names(&["primary", "secondary"]);
        assert_eq!(
            current_canary_weight(&vs, "app/web", &both, &host_split()).expect("valid"),
            None,
            "30 on one route, 0 on the other: neither is the weight"
        );
        // primary lists the stable first, secondary the canary.
        vs["spec"]["http"][0]["route"][0]["weight"] = json!(70);
        vs["spec"]["http"][0]["route"][1]["weight"] = json!(30);
        assert_eq!(
            current_canary_weight(&vs, "app/web", &both, &host_split()).expect("valid"),
            Some(30),
            "routes that agree give their weight"
        );
        assert_eq!(
            current_canary_weight(&vs, "app/web", &names(&["primary"]), &host_split())
                .expect("valid"),
            Some(30),
            "only the routes named count"
        );
        let unweighted = json!({"spec": {"http": [{"route": [
            {"destination": {"host": "web-stable"}},
            {"destination": {"host": "web-canary"}}
        ]}]}});
        assert_eq!(
            current_canary_weight(&unweighted, "app/web", &[], &host_split()).expect("valid"),
            Some(0)
        );
    }

    #[test]
    fn out_of_range_weight_is_rejected_before_reading() {
        let err = weight_patch(&two_routes(), "app/web", &[], &host_split(), 101)
            .expect_err("out of range");
        assert!(err.to_string().contains("outside 0..=100"));
    }

    fn destination_rule() -> IstioDestinationRule {
        IstioDestinationRule {
            name: "web".into(),
            canary_subset_name: "canary".into(),
            stable_subset_name: "stable".into(),
            ..Default::default()
        }
    }

    #[test]
    fn subset_hash_patch_sets_labels_with_guards() {
        let dr = json!({"spec": {"host": "web", "subsets": [
            {"name": "canary", "labels": {"app": "web", "rollouts-pod-template-hash": "old"}},
            {"name": "stable"}
        ]}});
        let patch = subset_hash_patch(&dr, "app/web", &destination_rule(), Some("s1"), Some("c2"))
            .expect("valid");
        assert_eq!(
            patch_json(patch.clone()),
            json!([
                {"op": "test", "path": "/spec/subsets/1/name", "value": "stable"},
                {"op": "test", "path": "/spec/subsets/1", "value": {"name": "stable"}},
                {"op": "test", "path": "/spec/subsets/0/name", "value": "canary"},
                {"op": "add", "path": "/spec/subsets/1/labels", "value": {"rollouts-pod-template-hash": "s1"}},
                {"op": "replace", "path": "/spec/subsets/0/labels/rollouts-pod-template-hash", "value": "c2"}
            ])
        );
        let after = applied(&dr, &patch.expect("patch"));
        assert_eq!(
            after["spec"]["subsets"][0]["labels"],
            json!({"app": "web", "rollouts-pod-template-hash": "c2"})
        );
        // Idempotent, and a None hash leaves its subset alone.
        for (stable, canary) in [(Some("s1"), Some("c2")), (None, Some("c2")), (None, None)] {
            assert!(
                subset_hash_patch(&after, "app/web", &destination_rule(), stable, canary)
                    .expect("valid")
                    .is_none()
            );
        }
        let only_canary = subset_hash_patch(&dr, "app/web", &destination_rule(), None, Some("c3"))
            .expect("valid");
        assert_eq!(
            patch_json(only_canary),
            json!([
                {"op": "test", "path": "/spec/subsets/0/name", "value": "canary"},
                {"op": "replace", "path": "/spec/subsets/0/labels/rollouts-pod-template-hash", "value": "c3"}
            ])
        );
    }

    #[test]
    fn missing_subset_is_invalid() {
        let dr = json!({"spec": {"subsets": [{"name": "stable"}]}});
        let err = subset_hash_patch(&dr, "app/web", &destination_rule(), Some("a"), Some("b"))
            .expect_err("no canary subset");
        assert_eq!(
            err.to_string(),
            "Canary subset 'canary' not found in DestinationRule 'app/web': add it to \
             spec.subsets or correct destinationRule in the Rollout"
        );
    }

    #[test]
    fn routers_describe_their_virtual_service() {
        let target = RouteTarget {
            namespace: "app".into(),
            ..Default::default()
        };
        let router = IstioRouter::new(ObjectName::parse("mesh/web"), vec![], None);
        assert_eq!(
            router.object(&target).to_string(),
            "VirtualService 'mesh/web'"
        );
        assert_eq!(router.kind(), "Istio");
    }
}
