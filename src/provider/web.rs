//! The web provider: an HTTP GET (or POST/PUT with `body` or `jsonBody`) of a JSON document, a value picked out with `jsonPath`
//! ([`crate::analysis::json_path`]). The value keeps its JSON type. A body that is not JSON is
//! the string `result` when no `jsonPath` picks into it, and an Error when one does: Argo
//! Rollouts v1.9.1 passes such a measurement without evaluating any condition (its main
//! branch has since moved to judging the string, as here).

use futures::future::BoxFuture;
use serde_json::Value;

use super::{
    HttpOptions, MAX_RESPONSE_BYTES, Provider, ProviderError, Resolved, authorized_client,
    describe, read_limited,
};
use crate::analysis::run::MetricPlan;
use crate::analysis::value::MetricValue;
use crate::api::WebMetric;

pub struct Web {
    url: String,
    method: String,
    timeout: std::time::Duration,
    options: HttpOptions,
    insecure: bool,
    resolved: Resolved,
    body: Option<String>,
    json_body: Option<serde_json::Map<String, Value>>,
}

impl Web {
    pub fn new(spec: &WebMetric, options: &HttpOptions, timeout: std::time::Duration) -> Self {
        Web {
            url: spec.url.clone(),
            method: spec.method.clone().unwrap_or_else(|| "GET".into()),
            timeout,
            options: options.clone(),
            insecure: spec.insecure.unwrap_or(false),
            resolved: Resolved::of(spec.headers.as_ref(), spec.authentication.as_ref()),
            body: spec.body.clone(),
            json_body: spec.json_body.clone(),
        }
    }
}

impl Provider for Web {
    fn measure<'a>(
        &'a self,
        plan: &'a MetricPlan,
    ) -> BoxFuture<'a, Result<MetricValue, ProviderError>> {
        Box::pin(async move {
            let method = reqwest::Method::from_bytes(self.method.to_ascii_uppercase().as_bytes())
                .ok()
                .filter(|m| {
                    [
                        reqwest::Method::GET,
                        reqwest::Method::POST,
                        reqwest::Method::PUT,
                    ]
                    .contains(m)
                })
                .ok_or_else(|| {
                    ProviderError::Query(format!(
                        "web provider: method {} is not supported; use GET, POST or PUT",
                        self.method
                    ))
                })?;
            let http =
                authorized_client(self.timeout, self.insecure, &self.resolved, &self.options)
                    .await?;
            let mut request = http.request(method.clone(), &self.url);
            if let Some(body) = &self.body {
                request = request.body(body.clone());
            }
            if let Some(json) = &self.json_body {
                // Set after the metric's headers, as Argo does: the body is JSON.
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(serde_json::to_vec(json).map_err(|e| {
                        ProviderError::Query(format!("web provider: jsonBody: {e}"))
                    })?);
            }
            let resp = request.send().await.map_err(|e| {
                // Without reqwest's copy of the URL: parsed and re-encoded, it would carry a
                // secret query value past redaction.
                ProviderError::Query(format!(
                    "{method} {} failed: {}",
                    self.url,
                    describe(&e.without_url())
                ))
            })?;
            let status = resp.status();
            if !status.is_success() {
                return Err(ProviderError::Query(format!(
                    "{method} {} returned {status}",
                    self.url
                )));
            }
            let body = read_limited(resp, MAX_RESPONSE_BYTES)
                .await
                .map_err(|e| ProviderError::Query(format!("{method} {}: {e}", self.url)))?;
            let doc: Value = match (serde_json::from_slice(&body), &plan.json_path) {
                (Ok(doc), _) => doc,
                (Err(_), None) => Value::String(String::from_utf8_lossy(&body).into_owned()),
                (Err(e), Some(_)) => {
                    return Err(ProviderError::Query(format!(
                        "{method} {}: response is not JSON, so jsonPath cannot select in it: {e}",
                        self.url
                    )));
                }
            };
            let picked = match &plan.json_path {
                Some(path) => path
                    .first(&doc)
                    .map_err(|e| ProviderError::Query(format!("{method} {}: {e}", self.url)))?
                    .clone(),
                None => doc,
            };
            // The value keeps its JSON type; conditions see it as Argo's `expr` does.
            Ok(MetricValue::Json(picked))
        })
    }
}
