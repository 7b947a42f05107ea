//! The Prometheus provider: an instant query at now through `prometheus-http-query`.

use futures::future::BoxFuture;

use super::{Provider, ProviderError, Resolved, http_client};
use crate::analysis::prometheus::metric_value;
use crate::analysis::run::MetricPlan;
use crate::analysis::value::MetricValue;
use crate::api::PrometheusMetric;

/// Environment variable naming the Prometheus used by metrics without `address`.
pub const ADDRESS_ENV: &str = "AVIARY_PROMETHEUS_ADDRESS";

pub struct Prometheus {
    address: Option<String>,
    timeout: i64,
    insecure: bool,
    resolved: Resolved,
}

impl Prometheus {
    pub fn new(spec: &PrometheusMetric, default_address: Option<&str>) -> Self {
        let address = spec
            .address
            .clone()
            .filter(|a| !a.is_empty())
            .or_else(|| default_address.map(str::to_string))
            .or_else(|| std::env::var(ADDRESS_ENV).ok());
        Prometheus {
            address,
            timeout: spec.timeout.unwrap_or(30),
            insecure: spec.insecure.unwrap_or(false),
            resolved: Resolved {
                headers: spec
                    .headers
                    .iter()
                    .flatten()
                    .map(|h| (h.key.clone(), h.value.clone()))
                    .collect(),
                basic_auth: spec
                    .authentication
                    .as_ref()
                    .and_then(|a| a.basic_auth.as_ref())
                    .map(|b| (b.username.clone(), b.password.clone())),
            },
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
            let http = http_client(self.timeout, self.insecure, &self.resolved)?;
            let client = prometheus_http_query::Client::from(http, address).map_err(|e| {
                ProviderError::Query(format!("invalid Prometheus address '{address}': {e}"))
            })?;
            let result = client
                .query(query)
                .get()
                .await
                .map_err(|e| ProviderError::Query(format!("Prometheus query failed: {e}")))?;
            Ok(metric_value(result.data()))
        })
    }
}
