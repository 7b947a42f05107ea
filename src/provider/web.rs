//! The web provider: HTTP GET of a JSON document, a value picked out with `jsonPath`.

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
    json_path: Option<String>,
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
            json_path: spec.json_path.clone(),
            resolved: Resolved::of(spec.headers.as_ref(), spec.authentication.as_ref()),
        }
    }
}

impl Provider for Web {
    fn measure<'a>(
        &'a self,
        _plan: &'a MetricPlan,
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
            let doc: Value = serde_json::from_slice(&body).map_err(|e| {
                ProviderError::Query(format!("GET {}: response is not JSON: {e}", self.url))
            })?;
            let picked = match &self.json_path {
                Some(p) => select(&doc, p)?,
                None => doc,
            };
            to_metric_value(&picked)
        })
    }
}

/// Picks a value with a JSONPath subset: `$.a.b`, `$.items[0].value`, `$.items[*].value`, and
/// the Kubernetes brace form `{$.a.b}`.
pub fn select(doc: &Value, path: &str) -> Result<Value, ProviderError> {
    let p = path.trim();
    let p = p
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(p)
        .trim();
    let p = p.strip_prefix('$').unwrap_or(p);
    let mut current = vec![doc.clone()];
    let mut rest = p;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            current = current.iter().filter_map(|v| v.get(key).cloned()).collect();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r
                .find(']')
                .ok_or_else(|| ProviderError::Query(format!("jsonPath '{path}': unclosed '['")))?;
            let idx = &r[..end];
            current = if idx == "*" {
                current
                    .iter()
                    .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                    .collect()
            } else {
                let i: usize = idx.parse().map_err(|_| {
                    ProviderError::Query(format!(
                        "jsonPath '{path}': index '{idx}' is not a number"
                    ))
                })?;
                current.iter().filter_map(|v| v.get(i).cloned()).collect()
            };
            rest = &r[end + 1..];
        } else {
            return Err(ProviderError::Query(format!(
                "jsonPath '{path}': cannot parse at '{rest}'"
            )));
        }
    }
    Ok(match current.len() {
        1 => current.remove(0),
        _ => Value::Array(current),
    })
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A JSON number (or numeric string, or boolean as 1/0) is a scalar; an array of them a vector.
/// What is not a number is described by its JSON type only, never quoted: a web metric can
/// point at anything the controller's pod can reach, and status is readable by more people
/// than that endpoint may be.
pub fn to_metric_value(v: &Value) -> Result<MetricValue, ProviderError> {
    let not_a_number = |v: &Value| {
        let kind = match v {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        };
        ProviderError::Query(format!(
            "web provider: the value at jsonPath is {kind}, not a number (its content is not shown)"
        ))
    };
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| number(i).ok_or_else(|| not_a_number(i)))
            .collect::<Result<Vec<_>, _>>()
            .map(MetricValue::Vector),
        other => number(other)
            .map(MetricValue::Scalar)
            .ok_or_else(|| not_a_number(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_path_subset() {
        let doc = json!({"data": {"ok": 0.97, "items": [{"v": 1}, {"v": "2"}]}});
        assert_eq!(select(&doc, "$.data.ok").ok(), Some(json!(0.97)));
        assert_eq!(select(&doc, "{$.data.ok}").ok(), Some(json!(0.97)));
        assert_eq!(select(&doc, "$.data.items[1].v").ok(), Some(json!("2")));
        assert_eq!(
            select(&doc, "$.data.items[*].v").ok(),
            Some(json!([1, "2"]))
        );
        assert_eq!(select(&doc, "$.data.missing").ok(), Some(json!([])));
        assert!(select(&doc, "$.data.items[x]").is_err());
    }

    #[test]
    fn values_convert_to_numbers() {
        assert_eq!(
            to_metric_value(&json!(0.5)).ok(),
            Some(MetricValue::Scalar(0.5))
        );
        assert_eq!(
            to_metric_value(&json!([1, "2"])).ok(),
            Some(MetricValue::Vector(vec![1.0, 2.0]))
        );
        assert_eq!(
            to_metric_value(&json!(true)).ok(),
            Some(MetricValue::Scalar(1.0))
        );
        assert!(to_metric_value(&json!({"a": 1})).is_err());
    }
}
