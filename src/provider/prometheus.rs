//! The Prometheus provider: an instant query at now through `prometheus-http-query`.

use futures::future::BoxFuture;

use super::{
    HttpOptions, MAX_RESPONSE_BYTES, Provider, ProviderError, Resolved, authorized_client,
    describe, read_limited,
};
use crate::analysis::prometheus::metric_value;
use crate::analysis::run::MetricPlan;
use crate::analysis::value::MetricValue;
use crate::api::PrometheusMetric;

/// Environment variable naming the Prometheus used by metrics without `address`.
pub const ADDRESS_ENV: &str = "AVIARY_PROMETHEUS_ADDRESS";

/// The Prometheus HTTP API's answer (`status`, then `data` or the error).
#[derive(serde::Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
enum Envelope {
    Success {
        data: prometheus_http_query::response::PromqlResult,
    },
    Error {
        #[serde(rename = "errorType", default)]
        error_type: String,
        #[serde(default)]
        error: String,
    },
}

pub struct Prometheus {
    address: Option<String>,
    timeout: std::time::Duration,
    options: HttpOptions,
    insecure: bool,
    resolved: Resolved,
}

impl Prometheus {
    pub fn new(
        spec: &PrometheusMetric,
        options: &HttpOptions,
        timeout: std::time::Duration,
    ) -> Self {
        let address = spec
            .address
            .clone()
            .filter(|a| !a.is_empty())
            .or_else(|| options.default_prometheus.clone())
            .or_else(|| std::env::var(ADDRESS_ENV).ok());
        Prometheus {
            address,
            timeout,
            options: options.clone(),
            insecure: spec.insecure.unwrap_or(false),
            resolved: Resolved::of(spec.headers.as_ref(), spec.authentication.as_ref()),
        }
    }
}

impl Provider for Prometheus {
    fn measure<'a>(
        &'a self,
        plan: &'a MetricPlan,
    ) -> BoxFuture<'a, Result<MetricValue, ProviderError>> {
        Box::pin(async move {
            let address = self.address.as_deref().ok_or_else(|| {
                ProviderError::Query(format!(
                    "no Prometheus address: set provider.prometheus.address or {ADDRESS_ENV}"
                ))
            })?;
            let query = plan.query.as_deref().unwrap_or_default();
            let http =
                authorized_client(self.timeout, self.insecure, &self.resolved, &self.options)
                    .await?;
            let client = prometheus_http_query::Client::from(http, address).map_err(|e| {
                ProviderError::Query(format!("invalid Prometheus address '{address}': {e}"))
            })?;
            // Raw, so the body is read within MAX_RESPONSE_BYTES; the crate's own types parse it.
            let response = match &plan.range {
                None => client.query(query).get_raw().await,
                Some(range) => {
                    let now = k8s_openapi::jiff::Timestamp::now();
                    let bound = |name: &str, t: &crate::analysis::time_expr::TimeExpr| {
                        t.at(now)
                            .map(|t| t.as_second())
                            .map_err(|e| ProviderError::Query(format!("rangeQuery.{name}: {e}")))
                    };
                    let (start, end) = (bound("start", &range.start)?, bound("end", &range.end)?);
                    client
                        .query_range(query, start, end, range.step.as_secs_f64())
                        .get_raw()
                        .await
                }
            }
            .map_err(|e| {
                ProviderError::Query(format!("Prometheus query failed: {}", describe(&e)))
            })?;
            let status = response.status();
            let body = read_limited(response, MAX_RESPONSE_BYTES)
                .await
                .map_err(|e| ProviderError::Query(format!("Prometheus query failed: {e}")))?;
            match serde_json::from_slice::<Envelope>(&body) {
                Ok(Envelope::Success { data }) => Ok(metric_value(data.data())),
                Ok(Envelope::Error { error_type, error }) => Err(ProviderError::Query(format!(
                    "Prometheus query failed: {error_type}: {error}"
                ))),
                Err(e) => Err(ProviderError::Query(format!(
                    "Prometheus query failed: HTTP {status}, not a Prometheus API answer: {e}"
                ))),
            }
        })
    }
}
