//! Metric providers: where an AnalysisRun's numbers come from. One trait, one file per
//! provider; the controller picks the provider a metric names. Each measurement is one bounded
//! request (the metric's timeout) — no provider keeps state between measurements.

pub mod prometheus;
pub mod web;

use futures::future::BoxFuture;

use crate::analysis::run::MetricPlan;
use crate::analysis::value::MetricValue;

/// Why a provider could not produce a value. The text becomes the Error measurement's message,
/// so it carries the provider's own words.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("{0}")]
    Query(String),
    #[error("metric has no supported provider: set provider.prometheus or provider.web")]
    NoProvider,
}

/// Credentials and headers resolved for one measurement (never logged).
#[derive(Clone, Debug, Default)]
pub struct Resolved {
    pub headers: Vec<(String, String)>,
    pub basic_auth: Option<(String, String)>,
}

/// Measures one metric.
pub trait Provider: Send + Sync {
    fn measure<'a>(
        &'a self,
        plan: &'a MetricPlan,
    ) -> BoxFuture<'a, Result<MetricValue, ProviderError>>;
}

/// Picks the provider each metric names: [`providers`] in the controller, a fake in tests.
pub type Providers =
    std::sync::Arc<dyn Fn(&MetricPlan) -> Result<Box<dyn Provider>, ProviderError> + Send + Sync>;

/// The real providers, with the default Prometheus address for metrics that name none.
pub fn providers(default_prometheus: Option<String>) -> Providers {
    std::sync::Arc::new(move |plan: &MetricPlan| provider_for(plan, default_prometheus.as_deref()))
}

/// The provider for a metric, with the default Prometheus address for metrics that name none.
pub fn provider_for(
    plan: &MetricPlan,
    default_prometheus: Option<&str>,
) -> Result<Box<dyn Provider>, ProviderError> {
    if let Some(p) = &plan.metric.provider.prometheus {
        return Ok(Box::new(prometheus::Prometheus::new(p, default_prometheus)));
    }
    if let Some(w) = &plan.metric.provider.web {
        return Ok(Box::new(web::Web::new(w)));
    }
    Err(ProviderError::NoProvider)
}

fn http_client(
    timeout_secs: i64,
    insecure: bool,
    resolved: &Resolved,
) -> Result<reqwest::Client, ProviderError> {
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in &resolved.headers {
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| ProviderError::Query(format!("invalid header name '{k}': {e}")))?;
        let value = reqwest::header::HeaderValue::from_str(v)
            .map_err(|_| ProviderError::Query(format!("invalid value for header '{k}'")))?;
        headers.insert(name, value);
    }
    if let Some((user, password)) = &resolved.basic_auth {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let value = reqwest::header::HeaderValue::from_str(&format!("Basic {token}"))
            .map_err(|_| ProviderError::Query("invalid basic auth credentials".into()))?;
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(
            timeout_secs.clamp(1, 600) as u64
        ))
        .danger_accept_invalid_certs(insecure)
        .default_headers(headers)
        .build()
        .map_err(|e| ProviderError::Query(format!("cannot build HTTP client: {e}")))
}
