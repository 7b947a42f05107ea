//! The providers' HTTP rules against real local servers: redirects stay on their origin, large
//! answers are refused, timeouts fit the interval.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::json;

use super::*;
use crate::analysis::run::Analysis;
use crate::analysis::template::Args;
use crate::api::AnalysisPhase;

type Seen = Arc<Mutex<Vec<String>>>;

/// A local server answering every request with `answer(path)`: status, `Location`, body. It
/// records each request's path and its `x-api-key` and `authorization` headers.
#[allow(clippy::type_complexity)]
async fn serve(
    answer: fn(&str, SocketAddr) -> (u16, Option<String>, Vec<u8>),
) -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let header = |name: &str| {
                            req.headers()
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_string()
                        };
                        let (key, auth) = (header("x-api-key"), header("authorization"));
                        if let Ok(mut l) = log.lock() {
                            l.push(format!("{addr}{} key={key} auth={auth}", req.uri().path()));
                        }
                        let (status, location, body) = answer(req.uri().path(), addr);
                        let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
                        *resp.status_mut() =
                            hyper::StatusCode::from_u16(status).unwrap_or_default();
                        if let Some(l) = location.and_then(|l| l.parse().ok()) {
                            resp.headers_mut().insert(hyper::header::LOCATION, l);
                        }
                        async move { Ok::<_, std::convert::Infallible>(resp) }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

fn web_plan(url: &str, interval: Option<&str>) -> Analysis {
    let mut metric = json!({"name": "m", "successCondition": "result == 1",
        "provider": {"web": {"url": url, "jsonPath": "{$.ok}",
                             "headers": [{"key": "X-Api-Key", "value": "k3y"}]}}});
    if let Some(i) = interval {
        metric["interval"] = json!(i);
    }
    let spec = serde_json::from_value(json!({"metrics": [metric]})).expect("spec");
    Analysis::new(&spec, Args::default()).expect("analysis")
}

async fn measure(analysis: &Analysis) -> Result<MetricValue, ProviderError> {
    let plan = analysis.metric("m").expect("the metric");
    let provider = provider_for(plan, &HttpOptions::default())?;
    provider.measure(plan).await
}

/// `web.authentication.basicAuth` (an Argo field once pruned unseen) reaches the endpoint.
#[tokio::test]
async fn a_web_metric_sends_its_basic_auth() {
    let (addr, seen) = serve(|_, _| (200, None, br#"{"ok": 1}"#.to_vec())).await;
    let metric = json!({"name": "m", "successCondition": "result == 1",
        "provider": {"web": {"url": format!("http://{addr}/q"), "jsonPath": "{$.ok}",
            "authentication": {"basicAuth": {"username": "aviary", "password": "s3cret"}}}}});
    let spec = serde_json::from_value(json!({"metrics": [metric]})).expect("spec");
    let analysis = Analysis::new(&spec, Args::default()).expect("analysis");
    assert_eq!(
        measure(&analysis).await.ok(),
        Some(MetricValue::Json(json!(1)))
    );
    let requests = || seen.lock().map(|s| s.clone()).unwrap_or_default();
    // base64("aviary:s3cret")
    assert_eq!(
        requests(),
        [format!("{addr}/q key=- auth=Basic YXZpYXJ5OnMzY3JldA==")]
    );

    // Beside an Authorization header: an error saying to choose, and no request.
    let both = json!({"name": "m", "successCondition": "result == 1",
        "provider": {"web": {"url": format!("http://{addr}/q"),
            "headers": [{"key": "authorization", "value": "Bearer t"}],
            "authentication": {"basicAuth": {"username": "u", "password": "p"}}}}});
    let spec = serde_json::from_value(json!({"metrics": [both]})).expect("spec");
    let analysis = Analysis::new(&spec, Args::default()).expect("analysis");
    let err = measure(&analysis)
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("either authentication.basicAuth or an Authorization header"),
        "{err}"
    );
    assert_eq!(requests().len(), 1, "the second metric sent no request");
}

#[tokio::test]
async fn a_redirect_is_followed_on_its_origin_only() {
    let (other, other_seen) = serve(|_, _| (200, None, br#"{"ok": 1}"#.to_vec())).await;
    let (addr, seen) = serve(|path, me| match path {
        "/same" => (302, Some(format!("http://{me}/final")), vec![]),
        "/final" => (200, None, br#"{"ok": 1}"#.to_vec()),
        _ => (302, None, vec![]),
    })
    .await;
    let got = measure(&web_plan(&format!("http://{addr}/same"), None)).await;
    assert_eq!(got.ok(), Some(MetricValue::Json(json!(1))));
    assert_eq!(seen.lock().map(|s| s.len()).unwrap_or(0), 2);

    // To another origin (here another port): refused, and the key never reaches it.
    let redirecting = serve_redirect_to(other).await;
    let plan_redirect = web_plan(&format!("http://{redirecting}/x"), None);
    let err = measure(&plan_redirect)
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("redirect to another origin"), "{err}");
    assert!(
        other_seen.lock().map(|s| s.is_empty()).unwrap_or(false),
        "the other origin was reached"
    );
}

/// A server that redirects every request to `to`.
async fn serve_redirect_to(to: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |_req: hyper::Request<hyper::body::Incoming>| {
                        let mut resp = hyper::Response::new(Full::new(Bytes::new()));
                        *resp.status_mut() = hyper::StatusCode::FOUND;
                        if let Ok(l) = format!("http://{to}/stolen").parse() {
                            resp.headers_mut().insert(hyper::header::LOCATION, l);
                        }
                        async move { Ok::<_, std::convert::Infallible>(resp) }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_response_past_the_limit_is_refused() {
    let (addr, _) = serve(|_, _| {
        let mut body = br#"{"ok": 1, "pad": ""#.to_vec();
        body.extend(std::iter::repeat_n(b'x', MAX_RESPONSE_BYTES));
        body.extend_from_slice(br#""}"#);
        (200, None, body)
    })
    .await;
    let err = measure(&web_plan(&format!("http://{addr}/big"), None))
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("larger than 4 MiB"), "{err}");
}

#[test]
fn a_timeout_never_outlasts_the_interval() {
    let a = web_plan("http://127.0.0.1:9/", Some("5s"));
    let plan = a.metric("m").expect("metric");
    assert_eq!(fitted_timeout(30, plan), std::time::Duration::from_secs(5));
    let a = web_plan("http://127.0.0.1:9/", None);
    let plan = a.metric("m").expect("metric");
    assert_eq!(fitted_timeout(30, plan), std::time::Duration::from_secs(30));
    assert_eq!(
        fitted_timeout(100_000, plan),
        std::time::Duration::from_secs(600)
    );
    assert_eq!(fitted_timeout(0, plan), std::time::Duration::from_secs(1));
}

#[test]
fn a_ca_bundle_must_hold_a_certificate() {
    let err = HttpOptions::default()
        .with_ca_bundle(b"not a certificate")
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("CA bundle"), "{err}");
}

/// Issue 26: a web value keeps its JSON type through the provider and the conditions, so
/// Argo's documented `result == true` and `result.major == '1'` pass; a body that is not JSON
/// is the string `result`; a jsonPath that selects nothing is an Error naming the path.
#[tokio::test]
async fn a_web_value_is_judged_with_its_json_type() {
    let (addr, _) = serve(|path, _| match path {
        "/text" => (200, None, b"OK".to_vec()),
        _ => (
            200,
            None,
            br#"{"ok": true, "version": {"major": "1", "minor": "30"},
                 "items": [{"name": "web", "rate": 0.5}, {"name": "api", "rate": 0.99}]}"#
                .to_vec(),
        ),
    })
    .await;
    let cases = [
        (
            "/v",
            Some("{$.ok}"),
            "result == true",
            AnalysisPhase::Successful,
        ),
        (
            "/v",
            Some("{$.ok}"),
            "result == false",
            AnalysisPhase::Failed,
        ),
        (
            "/v",
            Some("{$.version}"),
            "result.major == '1'",
            AnalysisPhase::Successful,
        ),
        (
            "/v",
            None,
            "result.version.minor == '30' && result.ok",
            AnalysisPhase::Successful,
        ),
        (
            "/v",
            Some("{$.items[?(@.name == 'api')].rate}"),
            "result >= 0.95",
            AnalysisPhase::Successful,
        ),
        (
            "/v",
            Some("{$.items[*].rate}"),
            "result >= 0.95",
            AnalysisPhase::Failed,
        ),
        ("/text", None, "result == 'OK'", AnalysisPhase::Successful),
        // Blank, as a Helm value left empty renders it: the whole document, as in Argo.
        ("/v", Some(" "), "result.ok", AnalysisPhase::Successful),
        (
            "/v",
            Some("{$.version.major}"),
            "result > 0",
            AnalysisPhase::Error,
        ),
    ];
    for (path, json_path, condition, phase) in cases {
        let mut web = json!({"url": format!("http://{addr}{path}")});
        if let Some(p) = json_path {
            web["jsonPath"] = json!(p);
        }
        let spec = serde_json::from_value(json!({"metrics": [{"name": "m",
            "successCondition": condition, "provider": {"web": web}}]}))
        .expect("spec");
        let analysis = Analysis::new(&spec, Args::default()).expect("analysis");
        let plan = analysis.metric("m").expect("plan");
        let value = measure(&analysis).await.expect("a value");
        let now = k8s_openapi::jiff::Timestamp::now();
        let m = plan.conditions.measure(&value, now, now);
        assert_eq!(m.phase, phase, "{path} {json_path:?} {condition}: {m:?}");
    }

    let spec = serde_json::from_value(json!({"metrics": [{"name": "m",
        "successCondition": "result == 1",
        "provider": {"web": {"url": format!("http://{addr}/v"), "jsonPath": "{$.missing}"}}}]}))
    .expect("spec");
    let err = measure(&Analysis::new(&spec, Args::default()).expect("analysis"))
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("jsonPath '{$.missing}' selected nothing"),
        "{err}"
    );
    let spec = serde_json::from_value(json!({"metrics": [{"name": "m",
        "successCondition": "result == 1",
        "provider": {"web": {"url": format!("http://{addr}/text"), "jsonPath": "{$.ok}"}}}]}))
    .expect("spec");
    let err = measure(&Analysis::new(&spec, Args::default()).expect("analysis"))
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("response is not JSON"), "{err}");
}
