//! act's Service switches against a mock API server: only our selector and mark written,
//! another Rollout's Service refused, and what a switch wrote read back by the view's rule.

use http::StatusCode;
use serde_json::{Value, json};

use super::tests::{converse, rollout, scale};
use super::*;
use crate::controller::fixtures::{ApiServer, mock_client, within_deadline};
use crate::controller::service_cache::{CachedService, WatchedService};

const SVC_PATH: &str = "/api/v1/namespaces/shop/services";

fn service(name: &str, hash: &str, managed_by: Option<&str>) -> Value {
    let mut svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "shop", "resourceVersion": "5"},
        "spec": {"selector": {"app": "web", POD_TEMPLATE_HASH_LABEL: hash}},
    });
    if let Some(owner) = managed_by {
        svc["metadata"]["annotations"] = json!({MANAGED_BY_ANNOTATION: owner});
    }
    svc
}

fn switch(service: &str, hash: &str) -> Action {
    Action::SwitchService {
        service: service.into(),
        hash: hash.into(),
    }
}

/// A switch patches the hash selector and our managed-by mark and nothing else of a Service the
/// user owns (its other selector labels, ports, … stay theirs).
#[tokio::test]
async fn a_switch_patches_only_the_hash_selector_and_our_mark() {
    let actions = [switch("web-stable", "new")];
    let script = |mut server: ApiServer| async move {
        server
            .expect(
                "GET",
                &format!("{SVC_PATH}/web-stable"),
                StatusCode::OK,
                service("web-stable", "old", Some("web")),
            )
            .await;
        let patch = server
            .expect(
                "PATCH",
                &format!("{SVC_PATH}/web-stable"),
                StatusCode::OK,
                service("web-stable", "new", Some("web")),
            )
            .await;
        assert_eq!(
            patch.body,
            json!({
                "metadata": {"annotations": {MANAGED_BY_ANNOTATION: "web"}},
                "spec": {"selector": {POD_TEMPLATE_HASH_LABEL: "new"}},
            })
        );
        assert!(patch.uri.contains("fieldManager=aviary"), "{}", patch.uri);
        server.expect_no_more().await;
    };
    let applied = converse(&rollout(), &actions, &PreparedRuns::default(), script).await;
    applied.expect("switched");
}

/// A Service another Rollout steers is refused with an error that names both, and neither it
/// nor anything planned after it is written.
#[tokio::test]
async fn a_service_another_rollout_manages_is_never_written() {
    let actions = [switch("web-stable", "new"), scale("web-old", 0, None)];
    let script = |mut server: ApiServer| async move {
        server
            .expect(
                "GET",
                &format!("{SVC_PATH}/web-stable"),
                StatusCode::OK,
                service("web-stable", "old", Some("api")),
            )
            .await;
        server.expect_no_more().await;
    };
    let applied = converse(&rollout(), &actions, &PreparedRuns::default(), script).await;
    match applied {
        Err(Error::InvalidSpec(msg)) => assert!(
            msg.contains("'web-stable'") && msg.contains("Rollout 'api'"),
            "{msg}"
        ),
        other => panic!("expected InvalidSpec, got {other:?}"),
    }
}

/// The stable Service at `rv`, selecting `hash`, as its watch delivers it.
fn stable_at(rv: &str, hash: &str) -> WatchedService {
    let mut svc = service("web-stable", hash, Some("web"));
    svc["metadata"]["resourceVersion"] = json!(rv);
    serde_json::from_value(svc).expect("service")
}

/// The Service watch delivers `svc` into the view.
fn deliver(ctx: &Context, svc: WatchedService) {
    ctx.view
        .services
        .apply(&kube::runtime::watcher::Event::Apply(svc));
}

/// Act switches the stable Service to `hash`.
async fn switch_stable(ctx: &Context, ro: &Rollout, routing: &crate::traffic::Routing, hash: &str) {
    let actions = [switch("web-stable", hash)];
    apply(
        ctx,
        ro,
        &actions,
        &[],
        &PreparedRuns::default(),
        routing,
        vec![],
    )
    .await
    .expect("switched");
}

/// The stable Service as observe reads it.
async fn read_stable(ctx: &Context) -> CachedService {
    let api: kube::Api<WatchedService> = kube::Api::namespaced(ctx.client().clone(), "shop");
    super::super::observe::service(ctx, &api, "shop", "web-stable")
        .await
        .expect("read")
        .expect("exists")
}

/// A switch notes the version the Service cache showed *before* its PATCH: should the watch
/// deliver our write (6) and someone else's after it (7) before the answer is processed, the
/// cache at 7 is read (after one fresh read), never stood in for by our older write.
#[tokio::test]
async fn a_cache_past_our_write_is_not_stood_in_for() {
    let (client, mut server) = mock_client();
    let ctx = std::sync::Arc::new(Context::for_tests(client));
    let watch_side = ctx.clone();
    deliver(&ctx, stable_at("5", "old"));
    let ro = rollout();
    let routing = crate::traffic::Routing::for_rollout(&ro);
    let controller = async move {
        switch_stable(&ctx, &ro, &routing, "new").await;
        // Later, a reconcile reads the Service: the cache shows 7 (theirs, after ours).
        let first = read_stable(&ctx).await;
        // The periodic sweep runs, and the next reconcile reads again.
        let live = std::collections::HashSet::from(["shop/web".to_string()]);
        let uids = std::collections::HashSet::from(["u1".to_string()]);
        ctx.view.forget_deleted(&live, &uids);
        let second = read_stable(&ctx).await;
        drop(ctx); // the API server then sees the client hang up
        (first, second)
    };
    let script = async {
        // Take the PATCH; the watch delivers ours (6) and then theirs (7) before the answer is
        // processed.
        server
            .expect_after(
                "PATCH",
                &format!("{SVC_PATH}/web-stable"),
                StatusCode::OK,
                serde_json::to_value(stable_at("6", "new")).expect("json"),
                move || {
                    deliver(&watch_side, stable_at("6", "new"));
                    deliver(&watch_side, stable_at("7", "pinned"));
                },
            )
            .await;
        // A correct controller may read the Service fresh: it finds 7.
        let reads = server
            .answer_all(
                StatusCode::OK,
                serde_json::to_value(stable_at("7", "pinned")).expect("json"),
            )
            .await;
        assert!(reads.len() <= 1, "at most one fresh read: {reads:?}");
    };
    let ((first, second), ()) = within_deadline(async { tokio::join!(controller, script) }).await;
    let hash = |s: &CachedService| s.selects(POD_TEMPLATE_HASH_LABEL).map(str::to_string);
    assert_eq!(
        (first.resource_version.as_deref(), hash(&first).as_deref()),
        (Some("7"), Some("pinned")),
        "the cache (7) is newer than our write (6): it must not be stood in for"
    );
    assert_eq!(hash(&second).as_deref(), Some("pinned"));
}

/// Two switches of one Service in successive reconciles, faster than the watch: every read
/// while the cache shows 5 stands in (no request); the cache at 6 (our first write, neither the
/// version noted nor the newest) costs exactly one GET, after which the read stands in again;
/// at 7 the cache is read. Not a loop.
#[tokio::test]
async fn two_quick_switches_cost_one_read_and_never_loop() {
    let (client, mut server) = mock_client();
    let ctx = Context::for_tests(client);
    deliver(&ctx, stable_at("5", "old"));
    let ro = rollout();
    let routing = crate::traffic::Routing::for_rollout(&ro);
    let controller = async move {
        let read = |ctx| async move {
            let s = read_stable(ctx).await;
            (
                s.resource_version.as_deref().map(str::to_string),
                s.selects(POD_TEMPLATE_HASH_LABEL).map(str::to_string),
            )
        };
        let mut seen = vec![];
        for hash in ["a", "b"] {
            switch_stable(&ctx, &ro, &routing, hash).await;
            seen.push(read(&ctx).await);
        }
        deliver(&ctx, stable_at("6", "a"));
        for _ in 0..3 {
            seen.push(read(&ctx).await);
        }
        deliver(&ctx, stable_at("7", "b"));
        seen.push(read(&ctx).await);
        drop(ctx);
        seen
    };
    let script = async {
        for (rv, hash) in [("6", "a"), ("7", "b")] {
            server
                .expect(
                    "PATCH",
                    &format!("{SVC_PATH}/web-stable"),
                    StatusCode::OK,
                    serde_json::to_value(stable_at(rv, hash)).expect("json"),
                )
                .await;
        }
        server
            .expect(
                "GET",
                &format!("{SVC_PATH}/web-stable"),
                StatusCode::OK,
                serde_json::to_value(stable_at("7", "b")).expect("json"),
            )
            .await;
        server.expect_no_more().await;
    };
    let (seen, ()) = within_deadline(async { tokio::join!(controller, script) }).await;
    let at = |rv: &str, h: &str| (Some(rv.to_string()), Some(h.to_string()));
    assert_eq!(
        seen,
        vec![
            at("6", "a"),
            at("7", "b"),
            at("7", "b"),
            at("7", "b"),
            at("7", "b"),
            at("7", "b")
        ]
    );
}
