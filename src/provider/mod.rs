//! Metric providers: where an AnalysisRun's numbers come from. One trait, one file per
//! provider; the controller picks the provider a metric names. Each measurement is one bounded
//! request (the metric's timeout) — no provider keeps state between measurements.

pub mod job;
mod oauth2;
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
    pub oauth2: Option<crate::api::OAuth2>,
}

impl Resolved {
    /// A metric's `headers` and `authentication.basicAuth` (Prometheus and web alike).
    pub fn of(
        headers: Option<&Vec<crate::api::WebMetricHeader>>,
        authentication: Option<&crate::api::PrometheusAuth>,
    ) -> Self {
        Resolved {
            headers: headers
                .into_iter()
                .flatten()
                .map(|h| (h.key.clone(), h.value.clone()))
                .collect(),
            basic_auth: authentication
                .and_then(|a| a.basic_auth.as_ref())
                .map(|b| (b.username.clone(), b.password.clone())),
            oauth2: authentication.and_then(|a| a.oauth2.clone()),
        }
    }
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

/// How every provider's HTTP client is built: the controller's settings.
#[derive(Clone, Debug, Default)]
pub struct HttpOptions {
    /// The default Prometheus address, for metrics that name none.
    pub default_prometheus: Option<String>,
    /// Extra CA certificates trusted for provider endpoints (`--analysis-ca-bundle`), so a
    /// private CA needs no `insecure: true`.
    pub ca_certificates: Vec<reqwest::Certificate>,
}

impl HttpOptions {
    /// Reads a PEM bundle of CA certificates.
    pub fn with_ca_bundle(mut self, pem: &[u8]) -> Result<Self, ProviderError> {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| ProviderError::Query(format!("invalid CA bundle: {e}")))?;
        if certs.is_empty() {
            return Err(ProviderError::Query(
                "the CA bundle holds no PEM certificate".into(),
            ));
        }
        self.ca_certificates = certs;
        Ok(self)
    }
}

/// The real providers, built with `options`.
pub fn providers(options: HttpOptions) -> Providers {
    std::sync::Arc::new(move |plan: &MetricPlan| provider_for(plan, &options))
}

/// The provider for a metric.
pub fn provider_for(
    plan: &MetricPlan,
    options: &HttpOptions,
) -> Result<Box<dyn Provider>, ProviderError> {
    let timeout = |spec: Option<i64>, default: i64| fitted_timeout(spec.unwrap_or(default), plan);
    if let Some(p) = &plan.metric.provider.prometheus {
        return Ok(Box::new(prometheus::Prometheus::new(
            p,
            options,
            timeout(p.timeout, 30),
        )));
    }
    if let Some(w) = &plan.metric.provider.web {
        return Ok(Box::new(web::Web::new(
            w,
            options,
            timeout(w.timeout_seconds, 10),
        )));
    }
    Err(ProviderError::NoProvider)
}

/// The largest response body a provider reads: a metric is a number or a few series, and an
/// unbounded read let one large answer exhaust the controller's memory (all rollouts' aborts
/// with it).
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// At most 10 redirects of a provider request are followed.
const MAX_REDIRECTS: usize = 10;

/// A measurement's time limit: the metric's timeout (1 to 600 s), and never longer than its
/// interval, so one slow endpoint cannot hold measurements back past their next one.
fn fitted_timeout(spec_secs: i64, plan: &MetricPlan) -> std::time::Duration {
    let secs = u64::try_from(spec_secs.clamp(1, 600)).unwrap_or(600);
    let timeout = std::time::Duration::from_secs(secs);
    match plan
        .metric
        .interval
        .as_ref()
        .and_then(|i| i.duration())
        .map(|i| i.as_std())
    {
        Some(interval) if interval >= std::time::Duration::from_secs(1) => timeout.min(interval),
        _ => timeout,
    }
}

/// Redirects stay on the origin they started from (scheme, host and port) and never go from
/// HTTPS to HTTP: the request's credential headers (`Authorization`, `X-Api-Key`, …) go with a
/// redirect, and must not reach another host.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let Some(first) = attempt.previous().first() else {
            return attempt.follow();
        };
        let next = attempt.url();
        let same_origin = first.scheme() == next.scheme()
            && first.host_str() == next.host_str()
            && first.port_or_known_default() == next.port_or_known_default();
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else if !same_origin {
            let to = format!(
                "{}://{}",
                next.scheme(),
                next.host_str().unwrap_or_default()
            );
            attempt.error(format!(
                "redirect to another origin ({to}) refused: credentials would follow it; point the metric at the final URL"
            ))
        } else {
            attempt.follow()
        }
    })
}

/// An error with its causes, `a: b: c`: reqwest keeps the why (a refused redirect, a
/// certificate) in the source chain, not in its own text.
pub(crate) fn describe(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The response's body, refused past `limit` bytes (by its Content-Length, or while reading).
async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, ProviderError> {
    let too_large = || {
        ProviderError::Query(format!(
            "the response is larger than {} MiB: query less (a number or a few series)",
            limit >> 20
        ))
    };
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ProviderError::Query(format!("reading the response failed: {e}")))?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The HTTP client for one measurement: `resolved`'s headers and credentials on every request.
/// With `oauth2`, a token is fetched first (client credentials; one per measurement, as no
/// provider keeps state between measurements).
async fn authorized_client(
    timeout: std::time::Duration,
    insecure: bool,
    resolved: &Resolved,
    options: &HttpOptions,
) -> Result<reqwest::Client, ProviderError> {
    // Each would set the one header (a CEL check of this costs more than admission's budget
    // for a template's metrics).
    if (resolved.basic_auth.is_some() || resolved.oauth2.is_some())
        && resolved
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
    {
        return Err(ProviderError::Query(
            "set either authentication (basicAuth or oauth2) or an Authorization header, not both"
                .into(),
        ));
    }
    let Some(oauth2) = &resolved.oauth2 else {
        return http_client(timeout, insecure, resolved, options);
    };
    let plain = http_client(timeout, insecure, &Resolved::default(), options)?;
    let token = oauth2::client_credentials(&plain, oauth2).await?;
    let mut with_token = resolved.clone();
    with_token.oauth2 = None;
    with_token
        .headers
        .push(("Authorization".into(), format!("Bearer {token}")));
    http_client(timeout, insecure, &with_token, options)
}

fn http_client(
    timeout: std::time::Duration,
    insecure: bool,
    resolved: &Resolved,
    options: &HttpOptions,
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
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(std::time::Duration::from_secs(10)))
        .redirect(same_origin_redirects())
        .danger_accept_invalid_certs(insecure)
        .default_headers(headers);
    for cert in &options.ca_certificates {
        builder = builder.add_root_certificate(cert.clone());
    }
    builder
        .build()
        .map_err(|e| ProviderError::Query(format!("cannot build HTTP client: {e}")))
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "hostile_tests.rs"]
mod hostile_tests;
