use std::sync::Arc;

use futures::StreamExt;
use http::StatusCode;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use serde_json::{Value, json};

use super::*;
use crate::api::lenient::decode;
use crate::api::{AnalysisRun, Rollout};
use crate::controller::fixtures::{mock_client, within_deadline};

fn rollout_json(name: &str, rv: &str, replicas: Value) -> Value {
    json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"),
                     "resourceVersion": rv, "generation": 2,
                     "annotations": {"big": "x".repeat(1000)}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}},
            "strategy": {"canary": {"steps": [{"setWeight": 10}]}},
        },
    })
}

fn lenient(v: Value) -> Lenient<Rollout> {
    match decode::<Rollout>(v) {
        Ok(l) => l,
        Err(e) => panic!("metadata did not decode: {e}"),
    }
}

fn bad(name: &str, rv: &str) -> Lenient<Rollout> {
    lenient(rollout_json(name, rv, json!(3_000_000_000_u64)))
}

fn good(name: &str, rv: &str) -> Lenient<Rollout> {
    lenient(rollout_json(name, rv, json!(3)))
}

fn reports() -> (Arc<Undecodables>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    (
        Undecodables::new::<Rollout>(None, Some(metrics.clone())),
        metrics,
    )
}

fn gauge(metrics: &Metrics, kind: &str) -> Option<f64> {
    let text = metrics.encode();
    let prefix = format!("aviary_undecodable_objects{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
}

fn passed(seen: Seen<Rollout>) -> Option<Event<Rollout>> {
    match seen {
        Seen::Pass(e) => Some(e),
        Seen::Drop(e) => e,
    }
}

#[test]
fn an_undecodable_object_keeps_its_identity_and_names_the_field() {
    let Lenient::Undecodable(u) = bad("web", "7") else {
        panic!("3000000000 replicas decoded as an i32");
    };
    assert!(u.error.starts_with("spec.replicas: "), "{}", u.error);
    assert_eq!(u.metadata.name.as_deref(), Some("web"));
    assert_eq!(u.metadata.namespace.as_deref(), Some("shop"));
    assert_eq!(u.metadata.uid.as_deref(), Some("uid-web"));
    assert_eq!(u.metadata.resource_version.as_deref(), Some("7"));
    // Only the identity is kept: not the annotations (nor anything else of a big object).
    assert_eq!(u.metadata.annotations, None);
    assert!(matches!(good("web", "7"), Lenient::Decoded(r) if r.spec.replicas == Some(3)));
}

#[test]
fn one_bad_item_does_not_fail_the_list_page_or_a_watch_event() {
    let page = json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "RolloutList",
        "metadata": {"resourceVersion": "10"},
        "items": [rollout_json("a", "1", json!(1)), rollout_json("b", "2", json!(-1.5)),
                  rollout_json("c", "3", json!(2))],
    });
    let list: kube::core::ObjectList<Lenient<Rollout>> = serde_json::from_value(page)
        .unwrap_or_else(|e| panic!("one bad item failed the page: {e}"));
    let kinds: Vec<_> = list
        .items
        .iter()
        .map(|l| (l.name_any(), matches!(l, Lenient::Decoded(_))))
        .collect();
    assert_eq!(
        kinds,
        [("a".into(), true), ("b".into(), false), ("c".into(), true)]
    );
    // A watch event is decoded through serde's buffered content (adjacently tagged).
    let line = json!({"type": "MODIFIED", "object": rollout_json("b", "4", json!("x"))});
    let ev: kube::core::WatchEvent<Lenient<Rollout>> =
        serde_json::from_slice(line.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("the watch event failed: {e}"));
    assert!(matches!(
        ev,
        kube::core::WatchEvent::Modified(Lenient::Undecodable(_))
    ));
}

#[test]
fn a_version_is_reported_once_and_counted_while_it_stays_undecodable() {
    let (u, metrics) = reports();
    assert_eq!(gauge(&metrics, "Rollout"), Some(0.0));
    // A decoded copy may be cached: an undecodable change passes on as its deletion.
    let out = passed(u.observe(Event::Apply(bad("web", "7"))));
    assert!(matches!(&out, Some(Event::Delete(r)) if r.name_any() == "web"));
    assert_eq!((u.count(), u.reported()), (1, 1));
    assert_eq!(gauge(&metrics, "Rollout"), Some(1.0));
    // The same version again (a resync, a second look): not reported again.
    let _ = u.observe(Event::Apply(bad("web", "7")));
    assert_eq!((u.count(), u.reported()), (1, 1));
    // A new version that is still bad is news.
    let _ = u.observe(Event::Apply(bad("web", "8")));
    assert_eq!((u.count(), u.reported()), (1, 2));
    // Fixed: passed on, no longer counted.
    let out = passed(u.observe(Event::Apply(good("web", "9"))));
    assert!(matches!(out, Some(Event::Apply(_))));
    assert_eq!(u.count(), 0);
    assert_eq!(gauge(&metrics, "Rollout"), Some(0.0));
    // Broken again, then deleted: the deletion passes and the count drops.
    let _ = u.observe(Event::Apply(bad("web", "10")));
    let out = passed(u.observe(Event::Delete(bad("web", "11"))));
    assert!(matches!(out, Some(Event::Delete(r)) if r.name_any() == "web"));
    assert_eq!((u.count(), u.reported()), (0, 3));
}

#[test]
fn a_relist_leaves_undecodable_objects_out_and_forgets_those_gone() {
    let (u, _) = reports();
    let _ = u.observe(Event::Apply(bad("gone", "1")));
    let _ = u.observe(Event::Apply(bad("kept", "2")));
    assert!(matches!(passed(u.observe(Event::Init)), Some(Event::Init)));
    // The relist's new store never holds it: nothing to delete, nothing passed.
    assert!(passed(u.observe(Event::InitApply(bad("kept", "2")))).is_none());
    assert!(matches!(
        passed(u.observe(Event::InitApply(good("ok", "3")))),
        Some(Event::InitApply(_))
    ));
    assert!(matches!(
        passed(u.observe(Event::InitDone)),
        Some(Event::InitDone)
    ));
    // "gone" was deleted while the watch was down; "kept" is the same version: not re-reported.
    assert_eq!((u.count(), u.reported()), (1, 2));
}

#[test]
fn a_second_watch_skips_without_reporting() {
    let u = Undecodables::new::<Rollout>(None, None);
    let _ = u.observe(Event::Apply(bad("web", "7")));
    assert_eq!((u.count(), u.reported()), (1, 0));
}

/// The real watcher over a list page holding one object our types reject: the others arrive,
/// the bad one is counted, and the watch goes on (kube decodes each item on its own).
#[tokio::test]
async fn the_watcher_lists_past_a_poison_object() {
    let (client, mut server) = mock_client();
    let metrics = Arc::new(Metrics::new());
    let runs = Undecodables::new::<AnalysisRun>(None, Some(metrics.clone()));
    let api: Api<Lenient<AnalysisRun>> = Api::all(client);
    let run = |name: &str, interval: &str| {
        json!({
            "apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisRun",
            "metadata": {"name": name, "namespace": "team-a", "resourceVersion": "5"},
            "spec": {"metrics": [{"name": "m", "interval": interval,
                                  "provider": {"prometheus": {"query": "q"}}}]},
        })
    };
    let events = runs.clone().skip(watcher(api, watcher::Config::default()));
    let client_side = async move {
        let mut events = std::pin::pin!(events);
        let mut names = vec![];
        while let Some(e) = events.next().await {
            match e {
                Ok(Event::InitApply(r)) => names.push(r.name_any()),
                Ok(Event::InitDone) => return names,
                Ok(_) => {}
                Err(e) => panic!("the list failed: {e}"),
            }
        }
        names
    };
    let server_side = async {
        server
            .expect(
                "GET",
                "/apis/aviary.dev/v1alpha1/analysisruns",
                StatusCode::OK,
                json!({
                    "apiVersion": "aviary.dev/v1alpha1", "kind": "AnalysisRunList",
                    "metadata": {"resourceVersion": "9"},
                    "items": [run("before", "1m"),
                              run("poison", "99999999999999999999999999999999999999999s"),
                              run("after", "30s")],
                }),
            )
            .await;
    };
    let (names, ()) = within_deadline(async { tokio::join!(client_side, server_side) }).await;
    assert_eq!(names, ["before", "after"]);
    assert_eq!(runs.count(), 1);
    assert_eq!(gauge(&metrics, "AnalysisRun"), Some(1.0));
}

/// Found by review: the start-up probe listed one Rollout strictly, so a poison Rollout first
/// in key order kept the controller from ever starting ("are the CRDs installed?").
#[tokio::test]
async fn start_up_is_not_stopped_by_a_poison_first_rollout() {
    let (client, mut server) = mock_client();
    let client_side = async move {
        let shutdown = tokio_util::sync::CancellationToken::new();
        crate::controller::wait_for_crds(
            &client,
            &crate::controller::scope::Scope::Cluster,
            &shutdown,
        )
        .await
    };
    let server_side = async {
        server
            .expect(
                "GET",
                "/apis/aviary.dev/v1alpha1/rollouts",
                StatusCode::OK,
                json!({"apiVersion": "aviary.dev/v1alpha1", "kind": "RolloutList",
                       "metadata": {"resourceVersion": "10", "continue": "more"},
                       "items": [rollout_json("poison", "3", json!(3_000_000_000_u64))]}),
            )
            .await;
    };
    let (started, ()) = within_deadline(async { tokio::join!(client_side, server_side) }).await;
    assert!(started);
}

/// A standby watches nothing: losing the lease clears the gauge (found by review: a former
/// leader exported its last count for ever).
#[test]
fn losing_the_lease_clears_the_gauge() {
    let (u, metrics) = reports();
    metrics.set_leader(true);
    let _ = u.observe(Event::Apply(bad("web", "7")));
    assert_eq!(gauge(&metrics, "Rollout"), Some(1.0));
    metrics.set_leader(false);
    assert_eq!(gauge(&metrics, "Rollout"), None);
}
