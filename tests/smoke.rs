//! Smoke tests of the local cluster itself: the ground every other integration test stands on.
//! Given the real control plane, KWOK nodes and Prometheus from `hack/cluster.sh`.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::json;
use support::exporter::{Exporter, Traffic};
use support::{TestNamespace, client, poll_until};

#[tokio::test]
async fn replicaset_pods_become_available_and_scale_to_zero() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "smoke-rs").await;
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns.name);
    let rs = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "example.invalid/web:1"}]}
            }
        }
    });
    support::apply_value(&client, Some(&ns.name), &rs)
        .await
        .expect("create ReplicaSet");

    poll_until(
        "3 available replicas",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let rs_api = rs_api.clone();
            async move {
                let rs = rs_api.get("web").await.ok()?;
                (rs.status?.available_replicas? == 3).then_some(())
            }
        },
    )
    .await;

    rs_api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await
        .expect("scale to 0");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    poll_until(
        "pods removed after scale to 0",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let pods = pods.clone();
            async move {
                let list = pods
                    .list(&ListParams::default().labels("app=web"))
                    .await
                    .ok()?;
                list.items.is_empty().then_some(())
            }
        },
    )
    .await;
}

#[tokio::test]
async fn istio_virtualservice_crd_installs_and_round_trips() {
    let client = client().await;
    support::install_crds(
        &client,
        &[&support::upstream_crd("istio-virtualservice.yaml")],
    )
    .await;
    let ns = TestNamespace::new(&client, "smoke-vs").await;
    let vs = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "web"},
        "spec": {
            "hosts": ["web"],
            "http": [{"name": "primary", "route": [
                {"destination": {"host": "web-stable"}, "weight": 90},
                {"destination": {"host": "web-canary"}, "weight": 10}
            ]}]
        }
    });
    support::apply_value(&client, Some(&ns.name), &vs)
        .await
        .expect("apply VirtualService");
    let gvk = kube::core::GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService");
    let (ar, _) = kube::discovery::pinned_kind(&client, &gvk)
        .await
        .expect("discover VirtualService");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &ar);
    let got = api.get("web").await.expect("get VirtualService");
    assert_eq!(
        got.data["spec"], vs["spec"],
        "the VirtualService spec must round-trip unchanged"
    );
}

#[tokio::test]
async fn prometheus_reports_the_success_rate_the_exporter_serves() {
    let exporter = Exporter::start("smoke-success-rate").await;
    let service = format!("smoke-{}", exporter.addr.port());
    exporter.set(
        &service,
        "v1",
        Traffic {
            rps: 100.0,
            error_rate: 0.05,
            latency: 0.3,
        },
    );
    let query = format!(
        "sum(rate(http_requests_total{{service=\"{service}\",status!~\"5..\"}}[5s])) / sum(rate(http_requests_total{{service=\"{service}\"}}[5s]))"
    );
    let value = poll_until(
        "Prometheus success rate",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            let query = query.clone();
            async move {
                let v = support::prom_query(&query).await.ok()?;
                v.first().copied().filter(|x| (x - 0.95).abs() < 0.005)
            }
        },
    )
    .await;
    assert!((value - 0.95).abs() < 0.005, "success rate {value}");

    // p95 of requests that all take 300 ms interpolates inside the 0.25–0.5 bucket.
    let p95q = format!(
        "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{{service=\"{service}\"}}[5s])))"
    );
    let p95 = poll_until(
        "Prometheus p95",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            let q = p95q.clone();
            async move {
                support::prom_query(&q)
                    .await
                    .ok()?
                    .first()
                    .copied()
                    .filter(|v| !v.is_nan())
            }
        },
    )
    .await;
    assert!(
        (0.25..=0.5).contains(&p95),
        "p95 {p95} must fall in the 0.25–0.5 bucket"
    );
}

#[test]
fn exporter_counters_follow_the_traffic_set() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let exporter = Exporter::start("unit-render").await;
        exporter.set(
            "svc",
            "v2",
            Traffic {
                rps: 1000.0,
                error_rate: 0.1,
                latency: 0.5,
            },
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let text = exporter.render();
        let value = |needle: &str| -> f64 {
            text.lines()
                .find(|l| l.starts_with(needle))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no line {needle} in\n{text}"))
        };
        let ok = value("http_requests_total{service=\"svc\",version=\"v2\",status=\"200\"}");
        let err = value("http_requests_total{service=\"svc\",version=\"v2\",status=\"500\"}");
        assert!(ok > 0.0 && err > 0.0);
        assert!(
            (err / (ok + err) - 0.1).abs() < 1e-9,
            "error share {}",
            err / (ok + err)
        );
        let below = value(
            "http_request_duration_seconds_bucket{service=\"svc\",version=\"v2\",le=\"0.25\"}",
        );
        let at = value(
            "http_request_duration_seconds_bucket{service=\"svc\",version=\"v2\",le=\"0.5\"}",
        );
        assert_eq!(below, 0.0, "a 500 ms request is not under 250 ms");
        assert!((at - (ok + err)).abs() < 1e-6);
    });
}
