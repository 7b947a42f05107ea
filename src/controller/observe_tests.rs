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

/// A Service is read by the view's one rule: our last selector write stands in while the cache
/// shows the version it showed at the write (no request); a cache at another version that is
/// not our write's is read fresh once, then agrees.
#[tokio::test]
async fn a_service_stands_in_for_our_write_and_a_moved_cache_is_read_fresh() {
    use super::super::fixtures::{mock_client, within_deadline};
    use http::StatusCode;
    let watched = |rv: &str, hash: &str| -> WatchedService {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-active", "namespace": "app", "resourceVersion": rv},
            "spec": {"selector": {"app": "web", POD_TEMPLATE_HASH_LABEL: hash}},
        }))
        .expect("service")
    };
    let (client, mut server) = mock_client();
    let ctx = Context::for_tests(client);
    let apply = |svc: WatchedService| {
        ctx.view
            .services
            .apply(&kube::runtime::watcher::Event::Apply(svc));
    };
    apply(watched("1", "old"));
    let key = "app/web-active";
    ctx.view.service_writes.learnt(
        key,
        Some("1"),
        Some("2".into()),
        Some(CachedService::from(&watched("2", "new"))),
    );
    let api: Api<WatchedService> = Api::namespaced(ctx.client().clone(), "app");
    let hash = |svc: Option<CachedService>| {
        svc.and_then(|s| s.selects(POD_TEMPLATE_HASH_LABEL).map(str::to_string))
    };
    let reads = async {
        let stood_in = hash(
            super::service(&ctx, &api, "app", "web-active")
                .await
                .expect("read"),
        );
        // Someone else's write reached the cache before ours did.
        apply(watched("3", "theirs"));
        let fresh = hash(
            super::service(&ctx, &api, "app", "web-active")
                .await
                .expect("read"),
        );
        let agreed = hash(
            super::service(&ctx, &api, "app", "web-active")
                .await
                .expect("read"),
        );
        (stood_in, fresh, agreed)
    };
    let script = async {
        server
            .expect(
                "GET",
                "/api/v1/namespaces/app/services/web-active",
                StatusCode::OK,
                serde_json::to_value(watched("3", "theirs")).expect("json"),
            )
            .await;
    };
    let ((stood_in, fresh, agreed), ()) =
        within_deadline(async { tokio::join!(reads, script) }).await;
    assert_eq!(stood_in.as_deref(), Some("new"), "our write stands in");
    assert_eq!(fresh.as_deref(), Some("theirs"));
    assert_eq!(
        agreed.as_deref(),
        Some("theirs"),
        "the read agreed with the cache"
    );
}
