//! The web provider: HTTP GET of a JSON document, a value picked out with `jsonPath`
//! ([`crate::analysis::json_path`]). The value keeps its JSON type. A body that is not JSON is
//! the string `result` when no `jsonPath` picks into it, and an Error when one does: Argo
//! Rollouts v1.9.1 passes such a measurement without evaluating any condition (its main
//! branch has since moved to judging the string, as here).

use futures::future::BoxFuture;
use serde_json::Value;

use super::{
    HttpOptions, MAX_RESPONSE_BYTES, Provider, ProviderError, Resolved, describe, http_client,
    read_limited,
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
        }
    }
}

impl Provider for Web {
    fn measure<'a>(
        &'a self,
        plan: &'a MetricPlan,
    ) -> BoxFuture<'a, Result<MetricValue, ProviderError>> {
        Box::pin(async move {
            // Both would set the one header (a CEL check of this costs more than admission's
            // budget for a template's metrics).
            if self.resolved.basic_auth.is_some()
                && self
                    .resolved
                    .headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            {
                return Err(ProviderError::Query(
                    "web provider: set either authentication.basicAuth or an Authorization header, not both".into(),
                ));
            }
            if !self.method.eq_ignore_ascii_case("GET") {
                return Err(ProviderError::Query(format!(
                    "web provider: method {} is not supported; use GET",
                    self.method
                )));
            }
            let http = http_client(self.timeout, self.insecure, &self.resolved, &self.options)?;
            let resp = http.get(&self.url).send().await.map_err(|e| {
                // Without reqwest's copy of the URL: parsed and re-encoded, it would carry a
                // secret query value past redaction.
                ProviderError::Query(format!(
                    "GET {} failed: {}",
                    self.url,
                    describe(&e.without_url())
                ))
            })?;
            let status = resp.status();
            if !status.is_success() {
                return Err(ProviderError::Query(format!(
                    "GET {} returned {status}",
                    self.url
                )));
            }
            let body = read_limited(resp, MAX_RESPONSE_BYTES)
                .await
                .map_err(|e| ProviderError::Query(format!("GET {}: {e}", self.url)))?;
            let doc: Value = match (serde_json::from_slice(&body), &plan.json_path) {
                (Ok(doc), _) => doc,
                (Err(_), None) => Value::String(String::from_utf8_lossy(&body).into_owned()),
                (Err(e), Some(_)) => {
                    return Err(ProviderError::Query(format!(
                        "GET {}: response is not JSON, so jsonPath cannot select in it: {e}",
                        self.url
                    )));
                }
            };
            let picked = match &plan.json_path {
                Some(path) => path
                    .first(&doc)
                    .map_err(|e| ProviderError::Query(format!("GET {}: {e}", self.url)))?
                    .clone(),
                None => doc,
            };
            // The value keeps its JSON type; conditions see it as Argo's `expr` does.
            Ok(MetricValue::Json(picked))
        })
    }
}
