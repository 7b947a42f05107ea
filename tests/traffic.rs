//! The traffic routers against the real API server, with the upstream Istio and Gateway API
//! CRDs: given a routing object in a namespace of the test's own, when the canary weight moves
//! 10 → 50 → 100 → 0, then the object shows exactly those weights and nothing else changed; a
//! repeated call writes nothing; a concurrent reorder makes the guarded patch fail instead of
//! writing the wrong entry; and missing objects or destinations give errors that say so.
//!
//! Run with `cargo test --test traffic -- --test-threads=2` after `hack/cluster.sh up` and
//! `eval "$(hack/cluster.sh env)"`.

mod support;

use std::collections::BTreeMap;

use aviary::api::IstioDestinationRule;
use aviary::api::wire::FIELD_MANAGER;
use aviary::traffic::istio::DestinationRuleSubsets;
use aviary::traffic::{
    GatewayRouter, IstioRouter, NginxRouter, ObjectName, PreparedAborts, RouteTarget, TrafficError,
    TrafficRouter, WeightChange, apply_guarded_patch, current_weight, gateway, istio, nginx,
    prepared,
};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::{TestNamespace, apply_value, client, install_crds, upstream_crd};

const WEIGHTS: [i32; 4] = [10, 50, 100, 0];

/// Sets the weight as the controller's first write of a reconcile without a snapshot does:
/// the router reads, then writes what differs.
async fn set_weight(
    router: &dyn TrafficRouter,
    client: &Client,
    target: &RouteTarget,
    weight: i32,
) -> Result<WeightChange, TrafficError> {
    router
        .set_weight(client, target, None, weight)
        .await
        .map(|w| w.change)
}

fn target(namespace: &str, rollout_uid: &str) -> RouteTarget {
    RouteTarget {
        namespace: namespace.to_string(),
        rollout: "shop".into(),
        rollout_uid: rollout_uid.to_string(),
        stable_service: "web-stable".into(),
        canary_service: "web-canary".into(),
        stable_hash: Some("stable1".into()),
        canary_hash: Some("canary1".into()),
    }
}

async fn services(client: &Client, namespace: &str) {
    for name in ["web-stable", "web-canary"] {
        apply_value(
            client,
            Some(namespace),
            &json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name},
                "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}
            }),
        )
        .await
        .unwrap_or_else(|e| panic!("create Service {name}: {e}"));
    }
}

fn dynamic(
    client: &Client,
    namespace: &str,
    gvk: GroupVersionKind,
    plural: &str,
) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

fn virtual_services(client: &Client, namespace: &str) -> Api<DynamicObject> {
    dynamic(
        client,
        namespace,
        GroupVersionKind::gvk(istio::ISTIO_GROUP, istio::ISTIO_VERSION, "VirtualService"),
        "virtualservices",
    )
}

fn destination_rules(client: &Client, namespace: &str) -> Api<DynamicObject> {
    dynamic(
        client,
        namespace,
        GroupVersionKind::gvk(istio::ISTIO_GROUP, istio::ISTIO_VERSION, "DestinationRule"),
        "destinationrules",
    )
}

fn http_routes(client: &Client, namespace: &str) -> Api<DynamicObject> {
    dynamic(
        client,
        namespace,
        GroupVersionKind::gvk(
            gateway::GATEWAY_GROUP,
            gateway::GATEWAY_VERSION,
            "HTTPRoute",
        ),
        "httproutes",
    )
}

async fn get_json(api: &Api<DynamicObject>, name: &str) -> Value {
    let obj = api
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get {name}: {e}"));
    serde_json::to_value(obj).expect("object as JSON")
}

/// Someone else's JSON patch of a routing object (`ops`: the RFC 6902 operations).
async fn edit(api: &Api<DynamicObject>, name: &str, ops: Value, what: &str) {
    let patch: json_patch::Patch = serde_json::from_value(ops).expect("patch");
    api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}

fn resource_version(obj: &Value) -> String {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .to_string()
}

/// `obj` with the values at `pointer`s replaced: what the object should look like when only
/// those fields changed.
fn with_values(obj: &Value, values: &[(String, Value)]) -> Value {
    let mut out = obj.clone();
    for (pointer, value) in values {
        let (parent, key) = pointer.rsplit_once('/').expect("a pointer with a parent");
        let parent = out
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("{parent} exists"));
        parent[key] = value.clone();
    }
    out
}

/// Sets each weight in turn and checks that the object shows exactly the expected fields
/// (from `expected(w)`) on top of `before`, that a repeated call is a no-op that does not
/// write, and that `current_weight` reads the weight back.
async fn walk_weights(
    client: &Client,
    router: &dyn TrafficRouter,
    target: &RouteTarget,
    api: &Api<DynamicObject>,
    name: &str,
    first_from: Option<i32>,
    expected: impl Fn(i32) -> Vec<(String, Value)>,
) {
    let before = get_json(api, name).await;
    let mut from = first_from;
    for w in WEIGHTS {
        let written = router
            .set_weight(client, target, None, w)
            .await
            .unwrap_or_else(|e| panic!("set weight {w}: {e}"));
        assert_eq!(
            written.change,
            WeightChange::Updated { from, to: w },
            "weight {w}"
        );
        let after = get_json(api, name).await;
        assert_eq!(
            after["spec"],
            with_values(&before, &expected(w))["spec"],
            "weight {w}: only the weights changed"
        );
        let version = resource_version(&after);
        assert_eq!(
            written.after.resource_version(),
            Some(version.as_str()),
            "weight {w}: the write returns the object as it left it"
        );

        // Again, from what the write left (the next write of a reconcile), and from nothing.
        let again = router
            .set_weight(client, target, Some(written.after), w)
            .await
            .unwrap_or_else(|e| panic!("set weight {w} again: {e}"));
        assert_eq!(again.change, WeightChange::Unchanged, "weight {w} again");
        let again = set_weight(router, client, target, w)
            .await
            .unwrap_or_else(|e| panic!("set weight {w} again: {e}"));
        assert_eq!(again, WeightChange::Unchanged, "weight {w} again, read");
        assert_eq!(
            resource_version(&get_json(api, name).await),
            version,
            "weight {w}: a repeated call writes nothing"
        );
        assert_eq!(
            current_weight(router, client, target)
                .await
                .expect("read weight"),
            Some(w)
        );
        from = Some(w);
    }
    // The weights are Aviary's in managedFields; nothing else is.
    let managers: Vec<(String, String)> = get_json(api, name).await["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .map(|e| {
            (
                e["manager"].as_str().unwrap_or_default().to_string(),
                e["operation"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(
        managers.contains(&(FIELD_MANAGER.to_string(), "Update".to_string())),
        "{managers:?}"
    );
}

fn weight_paths(base: &str, entries: &[(usize, i32)]) -> Vec<(String, Value)> {
    entries
        .iter()
        .map(|(k, w)| (format!("{base}/{k}/weight"), json!(w)))
        .collect()
}

async fn install_istio(client: &Client) {
    install_crds(
        client,
        &[
            &upstream_crd("istio-virtualservice.yaml"),
            &upstream_crd("istio-destinationrule.yaml"),
        ],
    )
    .await;
}

fn web_virtual_service() -> Value {
    json!({
        "apiVersion": istio::ISTIO_API_VERSION, "kind": "VirtualService",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "hosts": ["web.example.com"],
            "gateways": ["mesh"],
            "http": [
                {"name": "static",
                 "match": [{"uri": {"prefix": "/static"}}],
                 "route": [{"destination": {"host": "web-stable", "port": {"number": 80}}}]},
                {"name": "primary",
                 "retries": {"attempts": 3, "perTryTimeout": "2s"},
                 "timeout": "10s",
                 "route": [
                    {"destination": {"host": "web-stable", "port": {"number": 80}}, "weight": 100,
                     "headers": {"response": {"set": {"x-version": "stable"}}}},
                    {"destination": {"host": "web-canary.NS.svc.cluster.local", "port": {"number": 80}}, "weight": 0}
                 ]}
            ]
        }
    })
}

/// Creates VirtualService `web` (host `web`) with these `http` routes.
async fn create_web_virtual_service(client: &Client, ns: &str, http: Value) {
    apply_value(
        client,
        Some(ns),
        &json!({
            "apiVersion": istio::ISTIO_API_VERSION, "kind": "VirtualService",
            "metadata": {"name": "web"},
            "spec": {"hosts": ["web"], "http": http}
        }),
    )
    .await
    .expect("create VirtualService");
}

#[tokio::test]
async fn istio_host_split_moves_only_the_weights() {
    let client = client().await;
    install_istio(&client).await;
    let ns = TestNamespace::new(&client, "traffic-istio").await;
    services(&client, &ns.name).await;
    let vs = web_virtual_service().to_string().replace("NS", &ns.name);
    apply_value(
        &client,
        Some(&ns.name),
        &serde_json::from_str(&vs).expect("JSON"),
    )
    .await
    .expect("create VirtualService");

    let router = IstioRouter::new(ObjectName::parse("web"), vec!["primary".into()], None);
    let target = target(&ns.name, "unused");
    let api = virtual_services(&client, &ns.name);
    walk_weights(&client, &router, &target, &api, "web", Some(0), |w| {
        weight_paths("/spec/http/1/route", &[(0, 100 - w), (1, w)])
    })
    .await;
}

#[tokio::test]
async fn istio_virtual_service_in_another_namespace_and_single_unnamed_route() {
    let client = client().await;
    install_istio(&client).await;
    let app = TestNamespace::new(&client, "traffic-app").await;
    let mesh = TestNamespace::new(&client, "traffic-mesh").await;
    apply_value(
        &client,
        Some(&mesh.name),
        &json!({
            "apiVersion": istio::ISTIO_API_VERSION, "kind": "VirtualService",
            "metadata": {"name": "edge"},
            "spec": {"hosts": ["edge"], "http": [{"route": [
                {"destination": {"host": format!("web-canary.{}.svc.cluster.local", app.name)}},
                {"destination": {"host": format!("web-stable.{}.svc.cluster.local", app.name)}},
                {"destination": {"host": "maintenance"}, "weight": 0}
            ]}]}
        }),
    )
    .await
    .expect("create VirtualService");

    let router = IstioRouter::new(
        ObjectName::parse(&format!("{}/edge", mesh.name)),
        vec![],
        None,
    );
    let target = target(&app.name, "unused");
    assert_eq!(
        router.object(&target).to_string(),
        format!("VirtualService '{}/edge'", mesh.name)
    );
    let api = virtual_services(&client, &mesh.name);
    // Unweighted destinations count as 0; the third keeps its weight and is never touched.
    walk_weights(&client, &router, &target, &api, "edge", Some(0), |w| {
        weight_paths("/spec/http/0/route", &[(0, w), (1, 100 - w)])
    })
    .await;
}

#[tokio::test]
async fn istio_subset_split_and_destination_rule_hashes() {
    let client = client().await;
    install_istio(&client).await;
    let ns = TestNamespace::new(&client, "traffic-subset").await;
    services(&client, &ns.name).await;
    apply_value(
        &client,
        Some(&ns.name),
        &json!({
            "apiVersion": istio::ISTIO_API_VERSION, "kind": "DestinationRule",
            "metadata": {"name": "web"},
            "spec": {
                "host": "web",
                "trafficPolicy": {"loadBalancer": {"simple": "LEAST_REQUEST"}},
                "subsets": [
                    {"name": "canary", "labels": {"app": "web"}},
                    {"name": "stable"},
                    {"name": "legacy", "labels": {"version": "v0"}}
                ]
            }
        }),
    )
    .await
    .expect("create DestinationRule");
    create_web_virtual_service(
        &client,
        &ns.name,
        json!([{"name": "main", "route": [
            {"destination": {"host": "web", "subset": "stable"}, "weight": 100},
            {"destination": {"host": "web", "subset": "canary"}, "weight": 0}
        ]}]),
    )
    .await;

    let destination_rule = IstioDestinationRule {
        name: "web".into(),
        canary_subset_name: "canary".into(),
        stable_subset_name: "stable".into(),
        ..Default::default()
    };
    let router = IstioRouter::new(
        ObjectName::parse("web"),
        vec!["main".into()],
        Some(destination_rule.clone()),
    );
    let subsets = DestinationRuleSubsets::new(destination_rule);
    let mut target = target(&ns.name, "unused");
    let drs = destination_rules(&client, &ns.name);
    let before = get_json(&drs, "web").await;
    assert!(
        subsets
            .converge(&client, &target)
            .await
            .expect("hashes set")
    );
    let after = get_json(&drs, "web").await;
    let expected = with_values(
        &before,
        &[
            (
                "/spec/subsets/0/labels".into(),
                json!({"app": "web", "rollouts-pod-template-hash": "canary1"}),
            ),
            (
                "/spec/subsets/1/labels".into(),
                json!({"rollouts-pod-template-hash": "stable1"}),
            ),
        ],
    );
    assert_eq!(after["spec"], expected["spec"]);
    let version = resource_version(&after);
    assert!(!subsets.converge(&client, &target).await.expect("no-op"));
    assert_eq!(resource_version(&get_json(&drs, "web").await), version);
    let read = subsets.read(&client, &target).await.expect("read");
    assert_eq!(
        (read.canary.as_deref(), read.stable.as_deref()),
        (Some("canary1"), Some("stable1"))
    );

    target.canary_hash = Some("canary2".into());
    assert!(subsets.converge(&client, &target).await.expect("moved"));
    assert_eq!(
        get_json(&drs, "web").await["spec"]["subsets"][0]["labels"]["rollouts-pod-template-hash"],
        "canary2"
    );

    let api = virtual_services(&client, &ns.name);
    walk_weights(&client, &router, &target, &api, "web", Some(0), |w| {
        weight_paths("/spec/http/0/route", &[(0, 100 - w), (1, w)])
    })
    .await;
}

/// The abort's prepared write (one request, no read): it takes the weight back to 0 from what
/// the router last wrote, and when someone changed the object since, the API server refuses it
/// and the router reads the object and still gets to 0.
#[tokio::test]
async fn istio_prepared_abort_write_and_its_fallback() {
    let client = client().await;
    install_istio(&client).await;
    let ns = TestNamespace::new(&client, "traffic-prepared").await;
    create_web_virtual_service(
        &client,
        &ns.name,
        json!([{"route": [
            {"destination": {"host": "web-stable"}, "weight": 100},
            {"destination": {"host": "web-canary"}, "weight": 0}
        ]}]),
    )
    .await;
    let api = virtual_services(&client, &ns.name);
    let target = target(&ns.name, "unused");
    let router = IstioRouter::new(ObjectName::parse("web"), vec![], None);
    let prepared = PreparedAborts::default();
    let weights = |vs: &Value| {
        (
            vs["spec"]["http"][0]["route"][0]["weight"].clone(),
            vs["spec"]["http"][0]["route"][1]["weight"].clone(),
        )
    };

    let set_from = |from: Option<aviary::traffic::RoutingSnapshot>, w: i32| {
        prepared::set_weight(&router, &client, &target, from, w, &prepared)
    };
    let set = |w: i32| async move { set_from(None, w).await.map(|w| w.change) };
    assert_eq!(
        set(30).await.expect("30"),
        WeightChange::Updated {
            from: Some(0),
            to: 30
        }
    );
    assert_eq!(prepared.len(), 1, "the way back to 0 is prepared");
    assert_eq!(
        set(0).await.expect("abort"),
        WeightChange::Updated {
            from: Some(30),
            to: 0
        }
    );
    assert!(prepared.is_empty(), "a prepared write is used once");
    assert_eq!(
        weights(&get_json(&api, "web").await),
        (json!(100), json!(0))
    );

    // Prepared at 30 again; then someone else gives the canary 40.
    set(30).await.expect("30 again");
    let moved = json!([
        {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 60},
        {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 40}
    ]);
    edit(&api, "web", moved, "concurrent edit").await;
    // The prepared write expects 30 and is refused; the router reads, and reports what it found.
    assert_eq!(
        set(0).await.expect("abort after the edit"),
        WeightChange::Updated {
            from: Some(40),
            to: 0
        }
    );
    assert_eq!(
        weights(&get_json(&api, "web").await),
        (json!(100), json!(0))
    );
    assert_eq!(
        set(0).await.expect("again"),
        WeightChange::Unchanged,
        "nothing prepared at 0, nothing to write"
    );

    // One reconcile whose plan sets the weight twice (a new template mid-canary: back to 0 for
    // the old canary, then 0 on the new hashes): the first goes out as the prepared write, and
    // the second starts from what that write left, not from the read before it (which it
    // would `test`, and fail as a conflict).
    set(30).await.expect("30, prepared");
    let read = router.read(&client, &target).await.expect("read");
    assert_eq!(router.weight_in(&read, &target).expect("weight"), Some(30));
    let first = set_from(Some(read.clone()), 0)
        .await
        .expect("the prepared write");
    assert_eq!(
        first.change,
        WeightChange::Updated {
            from: Some(30),
            to: 0
        }
    );
    assert_eq!(
        set_from(Some(first.after), 0)
            .await
            .expect("a second write in the same reconcile")
            .change,
        WeightChange::Unchanged
    );
    let stale = set_from(Some(read), 0).await;
    assert!(
        matches!(stale, Err(TrafficError::Conflict { .. })),
        "the read before the first write is stale: {stale:?}"
    );
}

/// The abort's write goes out from the watch, without waiting for a reconcile of the rollout
/// in flight: a weight that reconcile planned from its earlier read must then be refused by the
/// API server, not give the canary its traffic back.
#[tokio::test]
async fn istio_a_weight_planned_before_the_abort_write_is_refused() {
    let client = client().await;
    install_istio(&client).await;
    let ns = TestNamespace::new(&client, "traffic-overtaken").await;
    create_web_virtual_service(
        &client,
        &ns.name,
        json!([{"name": "primary", "route": [
            {"destination": {"host": "web-stable", "port": {"number": 80}}, "weight": 100},
            {"destination": {"host": "web-canary", "port": {"number": 80}}, "weight": 0}
        ]}]),
    )
    .await;
    let api = virtual_services(&client, &ns.name);
    let target = target(&ns.name, "unused");
    let routes = vec!["primary".to_string()];
    let router = IstioRouter::new(ObjectName::parse("web"), routes.clone(), None);
    let prepared = PreparedAborts::default();
    let object = router.object(&target);
    assert_eq!(
        prepared::send(&client, &target, &object, &prepared)
            .await
            .expect("nothing prepared"),
        None,
        "no prepared write, no request"
    );
    prepared::set_weight(&router, &client, &target, None, 20, &prepared)
        .await
        .expect("20");

    // A reconcile read the object at 20 and planned 50 …
    let read = get_json(&api, "web").await;
    let split = istio::Split::new(&target, None);
    let planned = istio::weight_patch(&read, "web", &routes, &split, 50)
        .expect("valid")
        .expect("a patch");
    // … when the abort's prepared write went out from the watch.
    assert_eq!(
        prepared::send(&client, &target, &object, &prepared)
            .await
            .expect("abort")
            .map(|w| w.change),
        Some(WeightChange::Updated {
            from: Some(20),
            to: 0
        })
    );
    let err = apply_guarded_patch(&api, "web", planned, "VirtualService 'web'")
        .await
        .expect_err("the stale weight must not apply");
    assert!(matches!(err, TrafficError::Conflict { .. }), "{err:?}");
    let now = get_json(&api, "web").await;
    assert_eq!(
        now["spec"]["http"][0]["route"][1]["weight"],
        json!(0),
        "the canary stays at 0"
    );
    assert_eq!(
        prepared::send(&client, &target, &object, &prepared)
            .await
            .expect("again"),
        None,
        "a prepared write is sent once"
    );
}

#[tokio::test]
async fn istio_concurrent_reorder_fails_the_guarded_patch() {
    let client = client().await;
    install_istio(&client).await;
    let ns = TestNamespace::new(&client, "traffic-race").await;
    create_web_virtual_service(
        &client,
        &ns.name,
        json!([{"name": "primary", "route": [
            {"destination": {"host": "web-stable"}, "weight": 90},
            {"destination": {"host": "web-canary"}, "weight": 10}
        ]}]),
    )
    .await;
    let api = virtual_services(&client, &ns.name);
    let target = target(&ns.name, "unused");
    let split = istio::Split::new(&target, None);
    let routes = vec!["primary".to_string()];

    // The router read the object and planned 50 % …
    let stale = get_json(&api, "web").await;
    let patch = istio::weight_patch(&stale, "web", &routes, &split, 50)
        .expect("valid")
        .expect("a patch");
    // … while someone else swapped the destinations.
    let reordered = json!([
        {"op": "replace", "path": "/spec/http/0/route", "value": [
            {"destination": {"host": "web-canary"}, "weight": 10},
            {"destination": {"host": "web-stable"}, "weight": 90}
        ]}
    ]);
    edit(&api, "web", reordered, "concurrent edit").await;
    let edited = get_json(&api, "web").await;

    let err = apply_guarded_patch(&api, "web", patch, "VirtualService 'web'")
        .await
        .expect_err("the stale patch must not apply");
    assert!(matches!(err, TrafficError::Conflict { .. }), "{err:?}");
    assert!(err.is_transient());
    let now = get_json(&api, "web").await;
    assert_eq!(now["spec"], edited["spec"], "nothing was written");
    assert_eq!(resource_version(&now), resource_version(&edited));

    // The retry re-reads and writes the right entries.
    let router = IstioRouter::new(ObjectName::parse("web"), routes, None);
    let change = set_weight(&router, &client, &target, 50)
        .await
        .expect("retry");
    assert_eq!(
        change,
        WeightChange::Updated {
            from: Some(10),
            to: 50
        }
    );
    let now = get_json(&api, "web").await;
    assert_eq!(
        now["spec"]["http"][0]["route"][0]["destination"]["host"],
        "web-canary"
    );
    assert_eq!(now["spec"]["http"][0]["route"][0]["weight"], 50);
    assert_eq!(now["spec"]["http"][0]["route"][1]["weight"], 50);

    // Within a reconcile the write uses the object observe read (no second GET): an edit in
    // between is caught by the guarded patch, and the retry reads afresh.
    let router = IstioRouter::new(ObjectName::parse("web"), vec!["primary".to_string()], None);
    let observed = router.read(&client, &target).await.expect("observe");
    assert_eq!(
        router.weight_in(&observed, &target).expect("weight"),
        Some(50)
    );
    let swap_back = json!([
        {"op": "replace", "path": "/spec/http/0/route", "value": [
            {"destination": {"host": "web-stable"}, "weight": 50},
            {"destination": {"host": "web-canary"}, "weight": 50}
        ]}
    ]);
    edit(&api, "web", swap_back, "edit between observe and act").await;
    let err = router
        .set_weight(&client, &target, Some(observed), 20)
        .await
        .expect_err("the observed copy is stale: the guarded patch refuses");
    assert!(matches!(err, TrafficError::Conflict { .. }), "{err:?}");
    assert_eq!(
        set_weight(&router, &client, &target, 20)
            .await
            .expect("retry reads afresh"),
        WeightChange::Updated {
            from: Some(50),
            to: 20
        }
    );
    let now = get_json(&api, "web").await;
    assert_eq!(
        now["spec"]["http"][0]["route"][1]["destination"]["host"],
        "web-canary"
    );
    assert_eq!(now["spec"]["http"][0]["route"][1]["weight"], 20);
    assert_eq!(now["spec"]["http"][0]["route"][0]["weight"], 80);
}

#[tokio::test]
async fn istio_missing_objects_and_destinations_are_reported() {
    let client = client().await;
    install_istio(&client).await;
    let ns = TestNamespace::new(&client, "traffic-istio-err").await;
    apply_value(
        &client,
        Some(&ns.name),
        &json!({
            "apiVersion": istio::ISTIO_API_VERSION, "kind": "VirtualService",
            "metadata": {"name": "only-stable"},
            "spec": {"hosts": ["web"], "http": [
                {"name": "primary", "route": [{"destination": {"host": "web-stable"}, "weight": 100}]},
                {"name": "other", "route": [{"destination": {"host": "web-stable"}}]}
            ]}
        }),
    )
    .await
    .expect("create VirtualService");
    let target = target(&ns.name, "unused");
    let api = virtual_services(&client, &ns.name);
    let version = resource_version(&get_json(&api, "only-stable").await);

    let missing_vs = IstioRouter::new(ObjectName::parse("nope"), vec![], None);
    let err = set_weight(&missing_vs, &client, &target, 10)
        .await
        .expect_err("missing");
    assert!(matches!(err, TrafficError::NotFound { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!(
            "VirtualService '{}/nope' not found: create it",
            ns.name
        )),
        "{err}"
    );
    assert!(matches!(
        current_weight(&missing_vs, &client, &target).await,
        Err(TrafficError::NotFound { .. })
    ));

    let missing_route = IstioRouter::new(
        ObjectName::parse("only-stable"),
        vec!["canary".into()],
        None,
    );
    let err = set_weight(&missing_route, &client, &target, 10)
        .await
        .expect_err("no route");
    assert!(matches!(err, TrafficError::NotFound { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("HTTP route 'canary' not found"),
        "{err}"
    );

    let unnamed = IstioRouter::new(ObjectName::parse("only-stable"), vec![], None);
    let err = set_weight(&unnamed, &client, &target, 10)
        .await
        .expect_err("two routes");
    assert!(err.to_string().contains("has 2 HTTP routes"), "{err}");

    let no_canary = IstioRouter::new(
        ObjectName::parse("only-stable"),
        vec!["primary".into()],
        None,
    );
    let err = set_weight(&no_canary, &client, &target, 10)
        .await
        .expect_err("no canary");
    assert!(matches!(err, TrafficError::Invalid(_)), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!(
            "Canary Service 'web-canary' not found in HTTP route 'primary' of VirtualService '{}/only-stable'",
            ns.name
        )),
        "{err}"
    );
    assert_eq!(
        resource_version(&get_json(&api, "only-stable").await),
        version,
        "nothing written"
    );

    let missing_dr = DestinationRuleSubsets::new(IstioDestinationRule {
        name: "nope".into(),
        canary_subset_name: "canary".into(),
        stable_subset_name: "stable".into(),
        ..Default::default()
    });
    let err = missing_dr
        .converge(&client, &target)
        .await
        .expect_err("no DR");
    assert!(
        err.to_string()
            .starts_with(&format!("DestinationRule '{}/nope' not found", ns.name)),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// NGINX

/// A real Rollout to own the canary Ingress: with a made-up UID the garbage collector would
/// delete the Ingress as soon as it saw it.
async fn owner_rollout(client: &Client, namespace: &str) -> String {
    install_crds(client, &[&support::repo_root().join("crds/rollouts.yaml")]).await;
    let rollout = apply_value(
        client,
        Some(namespace),
        &json!({
            "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "shop"},
            "spec": {
                "selector": {"matchLabels": {"app": "shop"}},
                "template": {"metadata": {"labels": {"app": "shop"}},
                             "spec": {"containers": [{"name": "web", "image": "example.invalid/web:1"}]}},
                "strategy": {"canary": {
                    "stableService": "web-stable", "canaryService": "web-canary",
                    "trafficRouting": {"nginx": {"stableIngress": "web"}}
                }}
            }
        }),
    )
    .await
    .expect("create the owning Rollout");
    rollout.uid().expect("a UID")
}

fn stable_ingress(name: &str, stable_service: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "annotations": {
            "kubernetes.io/ingress.class": "nginx",
            "nginx.ingress.kubernetes.io/proxy-body-size": "8m"
        }},
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
            "rules": [
                {"host": "shop.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": stable_service, "port": {"name": "http"}}}},
                    {"path": "/admin", "pathType": "Prefix",
                     "backend": {"service": {"name": "admin", "port": {"number": 80}}}}
                ]}},
                {"host": "static.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "cdn", "port": {"number": 80}}}}
                ]}}
            ]
        }
    })
}

/// A namespace with the Services, the owning Rollout and the stable Ingress `web` an NGINX
/// router test starts from; its Rollout's UID and the Ingress API.
async fn nginx_stage(client: &Client, prefix: &str) -> (TestNamespace, String, Api<Ingress>) {
    let ns = TestNamespace::new(client, prefix).await;
    services(client, &ns.name).await;
    let uid = owner_rollout(client, &ns.name).await;
    apply_value(client, Some(&ns.name), &stable_ingress("web", "web-stable"))
        .await
        .expect("create stable Ingress");
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns.name);
    (ns, uid, ingresses)
}

#[tokio::test]
async fn nginx_canary_ingress_follows_the_weights() {
    let client = client().await;
    let (ns, uid, ingresses) = nginx_stage(&client, "traffic-nginx").await;
    let stable_version = ingresses
        .get("web")
        .await
        .expect("stable")
        .resource_version();

    let prefix = "nginx.ingress.kubernetes.io";
    let additional = BTreeMap::from([("canary-by-header".to_string(), "X-Canary".to_string())]);
    let router = NginxRouter::new("web", prefix, additional.clone(), BTreeMap::new());
    let target = target(&ns.name, &uid);
    assert_eq!(
        current_weight(&router, &client, &target)
            .await
            .expect("read"),
        Some(0)
    );

    let config = nginx::NginxConfig {
        stable_ingress: "web".into(),
        annotation_prefix: prefix.into(),
        additional_annotations: additional,
        canary_annotations: BTreeMap::new(),
        max_traffic_weight: None,
    };
    let mut from = Some(0);
    for w in WEIGHTS {
        let change = set_weight(&router, &client, &target, w)
            .await
            .expect("set weight");
        assert_eq!(change, WeightChange::Updated { from, to: w }, "weight {w}");
        let canary = ingresses
            .get("shop-web-canary")
            .await
            .expect("canary Ingress");
        let stable = ingresses.get("web").await.expect("stable Ingress");
        let desired = nginx::desired_canary_ingress(&stable, &target, &config, w).expect("valid");
        assert_eq!(
            canary.spec, desired.spec,
            "weight {w}: spec built from the stable one"
        );
        let annotations = canary.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations,
            BTreeMap::from([
                (
                    "kubernetes.io/ingress.class".to_string(),
                    "nginx".to_string()
                ),
                (format!("{prefix}/canary"), "true".to_string()),
                (format!("{prefix}/canary-by-header"), "X-Canary".to_string()),
                (format!("{prefix}/canary-weight"), w.to_string()),
            ]),
            "weight {w}"
        );
        let owner = canary.owner_references().first().cloned().expect("owner");
        assert_eq!(
            (owner.uid.as_str(), owner.controller),
            (uid.as_str(), Some(true))
        );
        assert_eq!(
            stable.resource_version(),
            stable_version,
            "the stable Ingress is never modified"
        );

        let version = canary.resource_version();
        let again = set_weight(&router, &client, &target, w)
            .await
            .expect("again");
        assert_eq!(again, WeightChange::Unchanged, "weight {w} again");
        assert_eq!(
            ingresses
                .get("shop-web-canary")
                .await
                .expect("canary")
                .resource_version(),
            version,
            "weight {w}: a repeated call writes nothing"
        );
        assert_eq!(
            current_weight(&router, &client, &target)
                .await
                .expect("read"),
            Some(w)
        );
        from = Some(w);
    }

    // A hand edit of the canary Ingress is taken back: it is ours.
    ingresses
        .patch(
            "shop-web-canary",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                format!("{prefix}/canary-weight"): "77",
                "example.com/note": "kept"
            }}})),
        )
        .await
        .expect("hand edit");
    let change = set_weight(&router, &client, &target, 0)
        .await
        .expect("restore");
    assert_eq!(
        change,
        WeightChange::Updated {
            from: Some(77),
            to: 0
        }
    );
    let annotations = ingresses
        .get("shop-web-canary")
        .await
        .expect("canary")
        .metadata
        .annotations
        .unwrap_or_default();
    assert_eq!(annotations[&format!("{prefix}/canary-weight")], "0");
    assert_eq!(
        annotations["example.com/note"], "kept",
        "others' annotations stay"
    );

    // Dropping an additional annotation from the Rollout removes it from the canary Ingress.
    let plain = NginxRouter::new("web", prefix, BTreeMap::new(), BTreeMap::new());
    let change = set_weight(&plain, &client, &target, 0)
        .await
        .expect("re-apply");
    assert_eq!(
        change,
        WeightChange::Updated {
            from: Some(0),
            to: 0
        }
    );
    let annotations = ingresses
        .get("shop-web-canary")
        .await
        .expect("canary")
        .metadata
        .annotations
        .unwrap_or_default();
    assert!(
        !annotations.contains_key(&format!("{prefix}/canary-by-header")),
        "{annotations:?}"
    );
    assert_eq!(
        set_weight(&plain, &client, &target, 0)
            .await
            .expect("no-op"),
        WeightChange::Unchanged
    );
}

/// With `maxTrafficWeight`, the canary Ingress carries the weight out of that total
/// (`canary-weight-total`, as Argo Rollouts writes it); a weight above the total is refused before
/// anything is written; without it the annotation goes again.
#[tokio::test]
async fn nginx_weights_are_shares_of_max_traffic_weight() {
    let client = client().await;
    let (ns, uid, ingresses) = nginx_stage(&client, "traffic-nginx-total").await;
    let prefix = "nginx.ingress.kubernetes.io";
    let target = target(&ns.name, &uid);
    let router = NginxRouter::new("web", prefix, BTreeMap::new(), BTreeMap::new())
        .with_max_traffic_weight(Some(1000));
    set_weight(&router, &client, &target, 5)
        .await
        .expect("0.5 %");
    let annotations = || async {
        ingresses
            .get("shop-web-canary")
            .await
            .expect("canary")
            .metadata
            .annotations
            .unwrap_or_default()
    };
    let a = annotations().await;
    assert_eq!(a[&format!("{prefix}/canary-weight")], "5");
    assert_eq!(a[&format!("{prefix}/canary-weight-total")], "1000");
    assert_eq!(
        current_weight(&router, &client, &target)
            .await
            .expect("read"),
        Some(5)
    );
    set_weight(&router, &client, &target, 1000)
        .await
        .expect("all of it");
    let err = set_weight(&router, &client, &target, 1001)
        .await
        .expect_err("above the total");
    assert!(err.to_string().contains("outside 0..=1000"), "{err}");
    assert_eq!(
        annotations().await[&format!("{prefix}/canary-weight")],
        "1000"
    );

    let plain = NginxRouter::new("web", prefix, BTreeMap::new(), BTreeMap::new());
    set_weight(&plain, &client, &target, 50)
        .await
        .expect("percent again");
    let a = annotations().await;
    // Back to a share of 100: the total the Ingress carries is 100 again (taken over, or gone).
    assert!(
        a.get(&format!("{prefix}/canary-weight-total"))
            .is_none_or(|t| t == "100"),
        "{a:?}"
    );
    assert_eq!(
        current_weight(&plain, &client, &target)
            .await
            .expect("read"),
        Some(50)
    );
}

#[tokio::test]
async fn nginx_refuses_foreign_ingress_and_reports_missing_ones() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "traffic-nginx-err").await;
    let uid = owner_rollout(&client, &ns.name).await;
    let target = target(&ns.name, &uid);
    let prefix = "nginx.ingress.kubernetes.io";
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns.name);

    // No stable Ingress.
    let router = NginxRouter::new("web", prefix, BTreeMap::new(), BTreeMap::new());
    let err = set_weight(&router, &client, &target, 10)
        .await
        .expect_err("missing");
    assert!(matches!(err, TrafficError::NotFound { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!(
            "Ingress '{}/web' not found: create the stable Ingress",
            ns.name
        )),
        "{err}"
    );

    // A stable Ingress with no path to the stable Service.
    apply_value(
        &client,
        Some(&ns.name),
        &stable_ingress("web", "someone-else"),
    )
    .await
    .expect("create Ingress");
    let err = set_weight(&router, &client, &target, 10)
        .await
        .expect_err("no path");
    assert!(matches!(err, TrafficError::Invalid(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("has no path whose backend is the stable Service 'web-stable'")
    );
    assert!(
        ingresses
            .get_opt("shop-web-canary")
            .await
            .expect("get")
            .is_none()
    );

    // An Ingress of the canary name that is not the Rollout's.
    apply_value(
        &client,
        Some(&ns.name),
        &stable_ingress("api", "web-stable"),
    )
    .await
    .expect("create stable Ingress");
    apply_value(
        &client,
        Some(&ns.name),
        &stable_ingress("shop-api-canary", "web-canary"),
    )
    .await
    .expect("create foreign Ingress");
    let foreign_version = ingresses
        .get("shop-api-canary")
        .await
        .expect("foreign")
        .resource_version();
    let router = NginxRouter::new("api", prefix, BTreeMap::new(), BTreeMap::new());
    let err = set_weight(&router, &client, &target, 10)
        .await
        .expect_err("foreign");
    assert!(matches!(err, TrafficError::Invalid(_)), "{err:?}");
    assert!(
        err.to_string().contains(&format!(
            "Ingress '{}/shop-api-canary' exists and is not controlled by this Rollout",
            ns.name
        )),
        "{err}"
    );
    assert!(current_weight(&router, &client, &target).await.is_err());
    assert_eq!(
        ingresses
            .get("shop-api-canary")
            .await
            .expect("foreign")
            .resource_version(),
        foreign_version,
        "the foreign Ingress is untouched"
    );
}

// ---------------------------------------------------------------------------------------------
// Gateway API

async fn install_gateway_api(client: &Client) {
    install_crds(client, &[&upstream_crd("gateway-api-httproutes.yaml")]).await;
}

#[tokio::test]
async fn gateway_http_route_moves_only_the_weights() {
    let client = client().await;
    install_gateway_api(&client).await;
    let ns = TestNamespace::new(&client, "traffic-gw").await;
    services(&client, &ns.name).await;
    apply_value(
        &client,
        Some(&ns.name),
        &json!({
            "apiVersion": gateway::GATEWAY_API_VERSION, "kind": "HTTPRoute",
            "metadata": {"name": "web"},
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "hostnames": ["shop.example.com"],
                "rules": [
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
                     "backendRefs": [{"name": "web-stable", "port": 80}]},
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                     "filters": [{"type": "RequestHeaderModifier",
                                  "requestHeaderModifier": {"set": [{"name": "x-route", "value": "main"}]}}],
                     "backendRefs": [
                        {"name": "web-canary", "port": 80},
                        {"name": "web-stable", "port": 80}
                     ]}
                ]
            }
        }),
    )
    .await
    .expect("create HTTPRoute");

    let router = GatewayRouter::new("web");
    let target = target(&ns.name, "unused");
    let api = http_routes(&client, &ns.name);
    // Without weights the CRD defaults both to 1: half the traffic.
    assert_eq!(
        current_weight(&router, &client, &target)
            .await
            .expect("read"),
        Some(50)
    );
    walk_weights(&client, &router, &target, &api, "web", Some(50), |w| {
        weight_paths("/spec/rules/1/backendRefs", &[(0, w), (1, 100 - w)])
    })
    .await;
}

#[tokio::test]
async fn gateway_concurrent_reorder_and_missing_routes() {
    let client = client().await;
    install_gateway_api(&client).await;
    let ns = TestNamespace::new(&client, "traffic-gw-err").await;
    apply_value(
        &client,
        Some(&ns.name),
        &json!({
            "apiVersion": gateway::GATEWAY_API_VERSION, "kind": "HTTPRoute",
            "metadata": {"name": "web"},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [
                {"name": "web-stable", "port": 80, "weight": 90},
                {"name": "web-canary", "port": 80, "weight": 10}
            ]}]}
        }),
    )
    .await
    .expect("create HTTPRoute");
    let api = http_routes(&client, &ns.name);
    let target = target(&ns.name, "unused");

    let stale = get_json(&api, "web").await;
    let patch = gateway::weight_patch(&stale, "web", &target, 50)
        .expect("valid")
        .expect("a patch");
    let swapped = json!([{"op": "replace", "path": "/spec/rules/0/backendRefs", "value": [
        {"name": "web-canary", "port": 80, "weight": 10},
        {"name": "web-stable", "port": 80, "weight": 90}
    ]}]);
    edit(&api, "web", swapped, "concurrent edit").await;
    let edited = get_json(&api, "web").await;
    let err = apply_guarded_patch(&api, "web", patch, "HTTPRoute 'web'")
        .await
        .expect_err("the stale patch must not apply");
    assert!(matches!(err, TrafficError::Conflict { .. }), "{err:?}");
    assert_eq!(
        resource_version(&get_json(&api, "web").await),
        resource_version(&edited)
    );

    let router = GatewayRouter::new("web");
    let change = set_weight(&router, &client, &target, 50)
        .await
        .expect("retry");
    assert_eq!(
        change,
        WeightChange::Updated {
            from: Some(10),
            to: 50
        }
    );

    let missing = GatewayRouter::new("nope");
    let err = set_weight(&missing, &client, &target, 10)
        .await
        .expect_err("missing");
    assert!(matches!(err, TrafficError::NotFound { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("HTTPRoute '{}/nope' not found", ns.name)),
        "{err}"
    );

    apply_value(
        &client,
        Some(&ns.name),
        &json!({
            "apiVersion": gateway::GATEWAY_API_VERSION, "kind": "HTTPRoute",
            "metadata": {"name": "stable-only"},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [
                {"name": "web-stable", "port": 80}
            ]}]}
        }),
    )
    .await
    .expect("create HTTPRoute");
    let err = set_weight(&GatewayRouter::new("stable-only"), &client, &target, 10)
        .await
        .expect_err("no canary backend");
    assert!(matches!(err, TrafficError::Invalid(_)), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!(
            "HTTPRoute '{}/stable-only' has no rule with backendRefs to both",
            ns.name
        )),
        "{err}"
    );
}
