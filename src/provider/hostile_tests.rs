//! Found by review: a Secret reaching status through escaping, an error or a rejected run;
//! arguments multiplied past the status budget; control characters; a web response quoted
//! back into status.

use serde_json::json;

use super::*;
use crate::analysis::measurement::error_measurement;
use crate::analysis::run::{Analysis, RESOLVED_PROMETHEUS_QUERY, STATUS_BUDGET_BYTES};
use crate::analysis::template::Args;
use crate::api::{AnalysisRunStatus, Argument, SecretKeyRef, ValueFrom};

fn secret_args(value: &str) -> Args {
    Args::from_arguments(
        &[Argument {
            name: "t".into(),
            value: None,
            value_from: Some(ValueFrom {
                secret_key_ref: Some(SecretKeyRef {
                    name: "s".into(),
                    key: "k".into(),
                }),
                field_ref: None,
            }),
        }],
        |_| Some(value.to_owned()),
    )
    .expect("args")
}

fn now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).expect("ts")
}

/// A secret with a trailing newline (`kubectl create secret --from-file`) in a PromQL label
/// string is escaped (`\n` -> `\\n`) before redaction, which looks for the raw value: the
/// escaped secret lands in status.metricResults[].metadata.ResolvedPrometheusQuery.
#[test]
fn escaped_secret_in_promql_is_not_redacted() {
    let spec = serde_json::from_value(json!({"metrics": [{"name": "m",
        "successCondition": "result[0] > 0",
        "provider": {"prometheus": {"query": "x{tenant=\"{{args.t}}\"}"}}}]}))
    .expect("spec");
    let a = Analysis::new(&spec, secret_args("hunter2\n")).expect("analysis");
    let mut status = AnalysisRunStatus::default();
    a.assess(&mut status, now());
    let q = status
        .metric_result("m")
        .and_then(|r| r.metadata.get(RESOLVED_PROMETHEUS_QUERY))
        .cloned()
        .unwrap_or_default();
    assert!(!q.contains("hunter2"), "secret in status: {q}");
}

/// The web provider's error text carries reqwest's parsed URL (newlines stripped,
/// percent-encoded); redaction replaces only the raw value.
#[tokio::test]
async fn secret_in_query_leaks_through_reqwest_error() {
    let spec = serde_json::from_value(json!({"metrics": [{"name": "m",
        "successCondition": "result == 1",
        "provider": {"web": {"url": "http://127.0.0.1:1/x?key={{args.t}}"}}}]}))
    .expect("spec");
    let a = Analysis::new(&spec, secret_args("hunter2\n")).expect("analysis");
    let plan = a.metric("m").expect("plan");
    let err = provider_for(plan, &HttpOptions::default())
        .expect("provider")
        .measure(plan)
        .await
        .map(|_| ())
        .expect_err("connection refused");
    let mut status = AnalysisRunStatus::default();
    a.assess(&mut status, now());
    a.record(
        &mut status,
        "m",
        error_measurement(err.to_string(), now(), now()),
    );
    let msg = status
        .metric_result("m")
        .and_then(|r| r.measurements.last())
        .and_then(|m| m.message.clone())
        .unwrap_or_default();
    assert!(!msg.contains("hunter2"), "secret in status: {msg}");
}

/// A3 and P1: a 10 KB arg used 200 times in a query (a 12 KB spec) resolved to 2 MB, kept in
/// status (past the API server's limit); used 70,000 times it would have made the controller
/// allocate gigabytes. Refused: the run ends in Error saying why.
#[test]
fn args_multiplied_past_a_bound_are_refused() {
    let query = "{{args.x}}".repeat(200);
    let spec = serde_json::from_value(json!({"metrics": [{"name": "m",
        "successCondition": "result[0] > 0",
        "provider": {"prometheus": {"query": query}}}]}))
    .expect("spec");
    let big = "a".repeat(10_000);
    let args = Args::resolve([("x", Some(big.as_str()))]).expect("args");
    let err = Analysis::new(&spec, args)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("longer than 65536 bytes"), "{err}");
    // In a plain field too (a header).
    let headers: Vec<_> = (0..10)
        .map(|i| json!({"key": format!("h{i}"), "value": "{{args.x}}".repeat(20)}))
        .collect();
    let spec = serde_json::from_value(json!({"metrics": [{"name": "m",
        "successCondition": "result == 1",
        "provider": {"web": {"url": "http://example.com/", "headers": headers}}}]}))
    .expect("spec");
    let args = Args::resolve([("x", Some(big.as_str()))]).expect("args");
    let err = Analysis::new(&spec, args)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("longer than 65536 bytes"), "{err}");
}

/// A3: truncation counts characters, JSON escapes control characters as \u00XX: a provider's
/// 1,024-character message serializes to 6 KiB, in the measurement and again in the metric's
/// message; 100 metrics' last measurements (never dropped) exceed the budget.
#[test]
fn control_chars_defeat_the_budget() {
    let metrics: Vec<_> = (0..100)
        .map(|i| {
            json!({"name": format!("m{i}"), "successCondition": "result == 1",
            "consecutiveErrorLimit": 0,
            "provider": {"web": {"url": "http://example.com/"}}})
        })
        .collect();
    let spec = serde_json::from_value(json!({ "metrics": metrics })).expect("spec");
    let a = Analysis::new(&spec, Args::default()).expect("analysis");
    let mut status = AnalysisRunStatus::default();
    a.assess(&mut status, now());
    let evil = "\u{1}".repeat(5000);
    for i in 0..100 {
        a.record(
            &mut status,
            &format!("m{i}"),
            error_measurement(evil.clone(), now(), now()),
        );
    }
    a.assess(&mut status, now());
    let size = serde_json::to_vec(&status).map_or(0, |v| v.len());
    assert!(size <= STATUS_BUDGET_BYTES, "status is {size} bytes");
}

/// A6: an Analysis::new error is written by `reject` as the run's message without redaction;
/// a secret arg in an int-or-string field (or a condition) is quoted back in full.
#[test]
fn rejected_run_message_is_not_redacted() {
    let spec = serde_json::from_value(json!({"metrics": [{"name": "m",
        "interval": "1m", "count": "{{args.t}}", "successCondition": "result == 1",
        "provider": {"web": {"url": "http://example.com/"}}}]}))
    .expect("spec");
    let err = Analysis::new(&spec, secret_args("hunter2"))
        .map(|_| ())
        .expect_err("not an integer");
    let mut status = AnalysisRunStatus::default();
    crate::analysis::run::reject(&mut status, &err, now());
    let msg = status.message.unwrap_or_default();
    assert!(!msg.contains("hunter2"), "secret in status: {msg}");
}

/// SSRF with read-back: any tenant's web metric reaches what the controller's pod can reach
/// (cloud metadata with `Metadata-Flavor: Google`, internal services) and a non-numeric
/// jsonPath pick was quoted into the measurement message (status), up to 1,024 characters.
/// Now that web values keep their JSON type, the pick reaches the condition: neither the
/// stored value nor the condition's error may quote it, whatever the condition does with it.
#[tokio::test]
async fn web_provider_echoes_internal_json_into_status() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf).await;
            let body = r#"{"access_token":"ya29.NODE-IDENTITY-TOKEN","expires_in":3599}"#;
            let _ = s
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
        }
    });
    for (json_path, condition) in [
        ("{$.access_token}", "result == 1"),
        ("{$.access_token}", "result > 1"),
        ("{$.access_token}", "result"),
        ("{$.access_token}", "result + 1 == 2"),
        ("{$.access_token}", "asInt(result) == 1"),
        ("{$}", "result.access_token > 1"),
        ("{$}", "result == 1"),
        ("{$}", "result[result.access_token] == 1"),
    ] {
        let spec = serde_json::from_value(json!({"metrics": [{"name": "m",
            "successCondition": condition,
            "provider": {"web": {"url": format!("http://{addr}/computeMetadata/v1/token"),
                "jsonPath": json_path,
                "headers": [{"key": "Metadata-Flavor", "value": "Google"}]}}}]}))
        .expect("spec");
        let a = Analysis::new(&spec, Args::default()).expect("analysis");
        let plan = a.metric("m").expect("plan");
        let value = provider_for(plan, &HttpOptions::default())
            .expect("p")
            .measure(plan)
            .await
            .expect("a JSON answer");
        let mut status = AnalysisRunStatus::default();
        a.record(
            &mut status,
            "m",
            plan.conditions.measure(&value, now(), now()),
        );
        a.assess(&mut status, now());
        let text = serde_json::to_string(&status).expect("status");
        assert!(
            !text.contains("NODE-IDENTITY-TOKEN") && !text.contains("access_token\\\""),
            "{json_path} / {condition}: {text}"
        );
    }
}
