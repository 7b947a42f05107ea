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
        err.contains("either authentication (basicAuth or oauth2) or an Authorization header"),
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

/// What a request carried, as a server saw it.
#[derive(Clone, Debug, Default)]
struct Request {
    method: String,
    path: String,
    query: String,
    content_type: String,
    authorization: String,
    body: String,
}

type Requests = Arc<Mutex<Vec<Request>>>;

/// A server answering with `answer(request)`, recording every request whole.
async fn serve_full(answer: fn(&Request) -> (u16, String)) -> (SocketAddr, Requests) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Requests = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let header = |name: &str| {
                                req.headers()
                                    .get(name)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("-")
                                    .to_string()
                            };
                            let mut seen = Request {
                                method: req.method().to_string(),
                                path: req.uri().path().to_string(),
                                query: req.uri().query().unwrap_or_default().to_string(),
                                content_type: header("content-type"),
                                authorization: header("authorization"),
                                body: String::new(),
                            };
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            seen.body = String::from_utf8_lossy(&body.unwrap_or_default()).into();
                            let (status, text) = answer(&seen);
                            if let Ok(mut l) = log.lock() {
                                l.push(seen);
                            }
                            let mut resp = hyper::Response::new(Full::new(Bytes::from(text)));
                            *resp.status_mut() =
                                hyper::StatusCode::from_u16(status).unwrap_or_default();
                            Ok::<_, std::convert::Infallible>(resp)
                        }
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

fn analysis_of(metric: serde_json::Value, args: Args) -> Analysis {
    let spec = serde_json::from_value(json!({"metrics": [metric]})).expect("spec");
    Analysis::new(&spec, args).expect("analysis")
}

/// Issue 26: `method`, `body` and `jsonBody` as Argo sends them: the body with args
/// substituted, JSON with its content type (over the metric's own header).
#[tokio::test]
async fn a_web_metric_posts_its_body() {
    let (addr, seen) = serve_full(|_| (200, r#"{"ok": true}"#.into())).await;
    let args = Args::resolve([("service", Some("checkout \"eu\""))]).expect("args");
    let json_body = analysis_of(
        json!({"name": "m", "successCondition": "result.ok",
            "provider": {"web": {"url": format!("http://{addr}/q"), "method": "POST",
                "headers": [{"key": "Content-Type", "value": "text/plain"}],
                "jsonBody": {"service": "{{args.service}}", "window": 5, "tags": ["{{args.service}}"]}}}}),
        args.clone(),
    );
    assert_eq!(
        measure(&json_body).await.ok(),
        Some(MetricValue::Json(json!({"ok": true})))
    );
    let plain = analysis_of(
        json!({"name": "m", "successCondition": "result.ok",
            "provider": {"web": {"url": format!("http://{addr}/p"), "method": "PUT",
                "body": "service={{args.service}}"}}}),
        args,
    );
    assert!(measure(&plain).await.is_ok());
    let requests = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(
        (
            requests[0].method.as_str(),
            requests[0].content_type.as_str()
        ),
        ("POST", "application/json")
    );
    let sent: serde_json::Value = serde_json::from_str(&requests[0].body).expect("JSON body");
    assert_eq!(
        sent,
        json!({"service": "checkout \"eu\"", "window": 5, "tags": ["checkout \"eu\""]})
    );
    assert_eq!(
        (requests[1].method.as_str(), requests[1].body.as_str()),
        ("PUT", "service=checkout \"eu\"")
    );
}

/// Issue 26: `authentication.oauth2` (client credentials): a token from `tokenUrl`, then the
/// query with `Authorization: Bearer`; a refused token request is an Error naming the status
/// and the server's error code, never quoting its answer.
#[tokio::test]
async fn an_oauth2_token_is_fetched_and_sent() {
    let (addr, seen) = serve_full(|r| match (r.path.as_str(), r.authorization.as_str()) {
        // base64("aviary:s3cret")
        ("/token", "Basic YXZpYXJ5OnMzY3JldA==") => (
            200,
            r#"{"access_token": "t0ken", "token_type": "Bearer", "expires_in": 60}"#.into(),
        ),
        ("/token", _) => (
            401,
            r#"{"error": "invalid_client", "error_description": "hunter2 is wrong"}"#.into(),
        ),
        ("/q", "Bearer t0ken") => (200, r#"{"ok": true}"#.into()),
        _ => (403, "{}".into()),
    })
    .await;
    let metric = |secret: &str| {
        json!({"name": "m", "successCondition": "result.ok",
            "provider": {"web": {"url": format!("http://{addr}/q"),
                "authentication": {"oauth2": {"tokenUrl": format!("http://{addr}/token"),
                    "clientId": "aviary", "clientSecret": secret, "scopes": ["read", "metrics"]}}}}})
    };
    let got = measure(&analysis_of(metric("s3cret"), Args::default())).await;
    assert_eq!(got.ok(), Some(MetricValue::Json(json!({"ok": true}))));
    let requests = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(requests[0].path, "/token");
    assert_eq!(requests[0].method, "POST");
    assert_eq!(
        requests[0].body,
        "grant_type=client_credentials&scope=read+metrics"
    );

    // Refused both ways (header, then form): an Error with the code, not the description.
    let err = measure(&analysis_of(metric("wrong"), Args::default()))
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("401 Unauthorized (invalid_client)"), "{err}");
    assert!(!err.contains("hunter2") && !err.contains("wrong"), "{err}");
    let requests = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let retried = &requests[requests.len() - 1];
    assert!(
        retried.body.contains("client_id=aviary") && retried.body.contains("client_secret=wrong"),
        "{retried:?}"
    );
    assert_eq!(
        requests.iter().filter(|r| r.path == "/q").count(),
        1,
        "no query without a token"
    );

    // Beside an Authorization header: an error saying to choose.
    let mut both = metric("s3cret");
    both["provider"]["web"]["headers"] = json!([{"key": "Authorization", "value": "Bearer x"}]);
    let err = measure(&analysis_of(both, Args::default()))
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("either authentication"), "{err}");
}

/// Issue 26: `rangeQuery` asks Prometheus' query_range with the bounds evaluated now and the
/// step in seconds; every sample of every series is one number of `result`.
#[tokio::test]
async fn a_range_query_sends_its_bounds_and_flattens_the_matrix() {
    let (addr, seen) = serve_full(|_| {
        (
            200,
            r#"{"status": "success", "data": {"resultType": "matrix", "result": [
                {"metric": {"pod": "a"}, "values": [[1700000000, "0.5"], [1700000060, "0.75"]]},
                {"metric": {"pod": "b"}, "values": [[1700000000, "1"]]}]}}"#
                .into(),
        )
    })
    .await;
    let args = Args::resolve([("lookback", Some("10m"))]).expect("args");
    let analysis = analysis_of(
        json!({"name": "m", "successCondition": "result.all(x, x >= 0.5)",
            "provider": {"prometheus": {"address": format!("http://{addr}"), "query": "up",
                "rangeQuery": {"start": "now() - duration(\"{{args.lookback}}\")", "end": "now()", "step": "1m"}}}}),
        args,
    );
    let before = k8s_openapi::jiff::Timestamp::now().as_second();
    let got = measure(&analysis).await;
    let after = k8s_openapi::jiff::Timestamp::now().as_second();
    assert_eq!(got.ok(), Some(MetricValue::Vector(vec![0.5, 0.75, 1.0])));
    let requests = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let request = requests.first().expect("a request");
    assert_eq!(request.path, "/api/v1/query_range");
    let params: std::collections::BTreeMap<String, String> =
        form_urlencoded::parse(format!("{}&{}", request.query, request.body).as_bytes())
            .into_owned()
            .collect();
    let number = |k: &str| {
        params
            .get(k)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(-1.0)
    };
    assert_eq!(params.get("query").map(String::as_str), Some("up"));
    assert_eq!(number("step"), 60.0);
    let (start, end) = (number("start") as i64, number("end") as i64);
    assert!((before..=after).contains(&end), "{params:?}");
    assert_eq!(end - start, 600, "{params:?}");
}
