//! observe: routers read and agreed on, our own Service writes read back, selectors checked.

use super::*;
use crate::api::wire::MANAGED_BY_ANNOTATION;

#[test]
fn routers_agree_on_a_weight_or_say_nothing() {
    assert_eq!(agreed_weight(&[]), None);
    assert_eq!(agreed_weight(&[Some(20)]), Some(20));
    assert_eq!(agreed_weight(&[Some(20), Some(20)]), Some(20));
    assert_eq!(agreed_weight(&[Some(20), Some(30)]), None);
    assert_eq!(agreed_weight(&[None, Some(20)]), None);
    assert_eq!(agreed_weight(&[Some(20), None]), None);
}

#[tokio::test]
async fn every_router_is_read_even_after_one_cannot_tell() {
    use crate::traffic::fake::{FakeFailure, FakeRouter};
    let unknown = FakeRouter::new("Istio");
    let second = FakeRouter::new("Istio").with_weight(20);
    // The fake returns a queued failure from its next call: the error coming back shows the
    // second router was read although the first could not tell its weight.
    second.fail_next(FakeFailure::Conflict);
    let routing = crate::traffic::Routing {
        routers: vec![Box::new(unknown), Box::new(second.clone())],
        subsets: None,
        target: Default::default(),
    };
    let ctx = Context::for_tests(crate::traffic::fake::offline_client());
    let read = observe_routing(&ctx, &routing).await;
    assert!(read.is_err());
    assert!(second.snapshot().failures.is_empty());
    // Read again, both answer: no weight agreed, and a snapshot of each for act.
    let read = observe_routing(&ctx, &routing).await.expect("read");
    assert_eq!(read.weight, None);
    assert_eq!(read.snapshots.len(), 2);
    assert_eq!(
        routing.routers[1]
            .weight_in(&read.snapshots[1], &routing.target)
            .ok(),
        Some(Some(20))
    );
}

fn service(selector: serde_json::Value, managed_by: Option<&str>) -> CachedService {
    let mut svc: WatchedService = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web-active"},
        "spec": {"selector": selector},
    }))
    .expect("service");
    if let Some(owner) = managed_by {
        svc.annotations_mut()
            .insert(MANAGED_BY_ANNOTATION.into(), owner.into());
    }
    CachedService::from(&svc)
}

#[test]
fn our_last_selector_write_stands_in_until_the_cache_moves_past_it() {
    let at = |rv: &str, hash: &str| {
        let mut svc = service(
            serde_json::json!({"app": "web", POD_TEMPLATE_HASH_LABEL: hash}),
            None,
        );
        svc.resource_version = Some(rv.into());
        svc
    };
    let hash = |svc: CachedService| svc.selects(POD_TEMPLATE_HASH_LABEL).map(str::to_string);
    let newest = |w: &ServiceWrites, svc| hash(w.newest("app", "web-active", svc));
    let writes = ServiceWrites::default();
    assert_eq!(newest(&writes, at("1", "old")).as_deref(), Some("old"));

    writes.record("app", "web-active", &at("1", "old"), at("2", "new"));
    // Another Service of that name, elsewhere, is not stood in for.
    assert_eq!(
        hash(writes.newest("other", "web-active", at("1", "old"))).as_deref(),
        Some("old")
    );
    // The watch event of our write is recognised as ours; another version is not.
    assert!(writes.is_own("app", "web-active", Some("2")));
    assert!(!writes.is_own("app", "web-active", Some("3")));
    assert!(!writes.is_own("app", "web-active", None));
    assert!(!writes.is_own("other", "web-active", Some("2")));
    // The cache still shows the version we wrote over: our write stands in.
    assert_eq!(newest(&writes, at("1", "old")).as_deref(), Some("new"));
    // The cache moved on (our write or a later one): it is the truth again, for good.
    assert_eq!(newest(&writes, at("3", "other")).as_deref(), Some("other"));
    assert_eq!(newest(&writes, at("1", "old")).as_deref(), Some("old"));
}

/// A write is kept only while the cache shows the version it wrote over: a deleted
/// Rollout's Services, never read again, do not keep theirs for ever.
#[test]
fn writes_the_cache_caught_up_with_are_forgotten() {
    use super::super::service_cache::{ServiceCache, WatchedService};
    let watched = |name: &str, rv: &str| -> WatchedService {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "app", "resourceVersion": rv},
            "spec": {"selector": {"app": "web"}},
        }))
        .expect("service")
    };
    let cache = ServiceCache::default();
    for svc in [watched("pending", "1"), watched("seen", "3")] {
        cache.apply(&kube::runtime::watcher::Event::Apply(svc));
    }
    let cached = |name: &str, rv: &str| CachedService::from(&watched(name, rv));
    let writes = ServiceWrites::default();
    writes.record(
        "app",
        "pending",
        &cached("pending", "1"),
        cached("pending", "2"),
    );
    writes.record("app", "seen", &cached("seen", "2"), cached("seen", "3"));
    writes.record("app", "gone", &cached("gone", "1"), cached("gone", "2"));
    writes.retain_pending(&cache);
    assert!(
        writes.is_own("app", "pending", Some("2")),
        "still ahead of the cache"
    );
    assert!(
        !writes.is_own("app", "seen", Some("3")),
        "the cache shows it"
    );
    assert!(
        !writes.is_own("app", "gone", Some("2")),
        "no such Service any more"
    );
}

#[test]
fn a_service_must_select_only_what_the_template_labels() {
    let labels = BTreeMap::from([
        ("app".to_string(), "web".to_string()),
        ("tier".to_string(), "api".to_string()),
    ]);
    let field = "strategy.blueGreen.activeService";
    let ok = |sel| service_problem("web-active", &service(sel, None), "web", &labels, field);
    assert_eq!(ok(serde_json::json!({"app": "web"})), None);
    assert_eq!(
        ok(serde_json::json!({"app": "web", POD_TEMPLATE_HASH_LABEL: "abc"})),
        None
    );
    let foreign = ok(serde_json::json!({"app": "other", "tier": "api"})).expect("foreign");
    assert!(
        foreign.contains("app=other") && foreign.contains(field),
        "{foreign}"
    );
    let none = ok(serde_json::json!({})).expect("no selector");
    assert!(none.contains("no selector"), "{none}");
    let theirs = service_problem(
        "web-active",
        &service(serde_json::json!({"app": "web"}), Some("other")),
        "web",
        &labels,
        field,
    )
    .expect("managed by another");
    assert!(theirs.contains("managed by Rollout 'other'"), "{theirs}");
    assert_eq!(
        service_problem(
            "web-active",
            &service(serde_json::json!({"app": "web"}), Some("web")),
            "web",
            &labels,
            field
        ),
        None
    );
}

/// Each router is judged as soon as it is read: a VirtualService whose weight cannot be judged
/// stops observe before the next one is read (one GET, not two).
#[tokio::test]
async fn an_unjudgeable_first_router_stops_observe_before_the_next_read() {
    use crate::controller::fixtures::{self, mock_client, within_deadline};
    use http::StatusCode;
    use serde_json::json;
    let ro = fixtures::rollout(
        json!({"canary": {
            "canaryService": "web-canary", "stableService": "web-stable",
            "trafficRouting": {"istio": {"virtualServices": [{"name": "web"}, {"name": "edge"}]}},
            "steps": [{"setWeight": 20}],
        }}),
        serde_json::Value::Null,
    );
    let routing = crate::traffic::Routing::for_rollout(&ro);
    let (client, mut server) = mock_client();
    let ctx = Context::for_tests(client);
    let controller = async move {
        let read = observe_routing(&ctx, &routing).await;
        drop(ctx);
        read.map(|_| ())
    };
    let script = async move {
        // Two unnamed HTTP routes and none named in the Rollout: the weight can't be judged.
        server
            .expect(
                "GET",
                "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/web",
                StatusCode::OK,
                json!({
                    "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                    "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "3"},
                    "spec": {"http": [
                        {"route": [{"destination": {"host": "web-stable"}, "weight": 100},
                                   {"destination": {"host": "web-canary"}, "weight": 0}]},
                        {"route": [{"destination": {"host": "web-stable"}, "weight": 100}]},
                    ]},
                }),
            )
            .await;
        server.expect_no_more().await;
    };
    let (read, ()) = within_deadline(async { tokio::join!(controller, script) }).await;
    assert!(read.is_err());
}
