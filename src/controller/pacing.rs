//! Client-side pacing of the requests that move rollouts forward.
//!
//! A wave over thousands of rollouts lets the main lane send requests as fast as the API server
//! answers them, and on a small control plane that keeps its cores busy: an abort arriving then
//! waits for the server like everything else (the benchmark's reaction time at 1,000 rollouts
//! was mostly the API server's answer). So the main lane's requests can be paced (tower's rate
//! limit: `--kube-api-burst` requests per window of burst ÷ `--kube-api-qps` seconds; off by
//! default), and what must not wait is not: the watches (they deliver the aborts), the urgent
//! lane's whole reconcile, the abort writes sent from the watch, the analysis controller (it
//! detects a bad canary) and leader election.
//!
//! Which client a request takes is decided per task: code in [`unpaced`] gets the unpaced one
//! from [`Clients::current`]; everything else the paced one.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use kube::Client;
use tokio::time::Instant;

use crate::metrics::Metrics;

tokio::task_local! {
    static UNPACED: ();
}

/// The controller's two clients to the same API server.
#[derive(Clone)]
pub struct Clients {
    paced: Client,
    unpaced: Client,
}

impl Clients {
    pub fn new(paced: Client, unpaced: Client) -> Self {
        Clients { paced, unpaced }
    }

    /// No pacing: both are `client`.
    pub fn unpaced_only(client: Client) -> Self {
        Clients {
            paced: client.clone(),
            unpaced: client,
        }
    }

    /// The client for a request made now: unpaced inside [`unpaced`], paced otherwise.
    pub fn current(&self) -> &Client {
        if is_unpaced() {
            &self.unpaced
        } else {
            &self.paced
        }
    }

    /// The client that never waits for the pace: watches, abort writes, analysis, leases.
    pub fn unpaced(&self) -> &Client {
        &self.unpaced
    }
}

/// Runs `f` with every request through [`Clients::current`] unpaced. Task-local: a task `f`
/// spawns is paced again.
pub async fn unpaced<F: Future>(f: F) -> F::Output {
    UNPACED.scope((), f).await
}

/// Whether the current task is inside [`unpaced`].
pub fn is_unpaced() -> bool {
    UNPACED.try_with(|_| ()).is_ok()
}

/// The pace: at most `burst` requests at once, `qps` per second on average.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pace {
    pub qps: f64,
    pub burst: u32,
}

impl Pace {
    /// `None` when `qps` is zero (pacing off).
    pub fn new(qps: f64, burst: u32) -> Result<Option<Pace>, String> {
        if !qps.is_finite() || qps < 0.0 {
            return Err(format!(
                "--kube-api-qps must be a number of requests per second, 0 or more (got {qps})"
            ));
        }
        if qps == 0.0 {
            return Ok(None);
        }
        if burst == 0 {
            return Err("--kube-api-burst must be at least 1 when --kube-api-qps is set".into());
        }
        Ok(Some(Pace { qps, burst }))
    }

    /// The layer that paces a client, adding its waits to `metrics`.
    pub fn layer(&self, metrics: Arc<Metrics>) -> PaceLayer {
        PaceLayer {
            pace: *self,
            metrics,
        }
    }

    fn window(&self) -> Duration {
        Duration::from_secs_f64(f64::from(self.burst) / self.qps)
    }
}

/// See [`Pace::layer`].
#[derive(Clone)]
pub struct PaceLayer {
    pace: Pace,
    metrics: Arc<Metrics>,
}

impl<S> tower::Layer<S> for PaceLayer {
    type Service = Paced<S>;
    fn layer(&self, inner: S) -> Self::Service {
        // tower's rate limit counts `burst` requests per window, so the window is the time
        // `qps` takes to send `burst`.
        let limit =
            tower::limit::RateLimitLayer::new(u64::from(self.pace.burst), self.pace.window());
        Paced {
            inner: tower::Layer::layer(&limit, inner),
            held_since: None,
            metrics: self.metrics.clone(),
        }
    }
}

/// A rate-limited service that counts how long it held requests back
/// (`aviary_kube_api_pace_wait_seconds_total`). The client's buffer asks one request at a time
/// whether it may go, so that time is how long the main lane waited for its pace.
pub struct Paced<S> {
    inner: tower::limit::RateLimit<S>,
    held_since: Option<Instant>,
    metrics: Arc<Metrics>,
}

impl<S, R> tower::Service<R> for Paced<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        let ready = self.inner.poll_ready(cx);
        match (&ready, self.held_since) {
            (Poll::Pending, None) => {
                tracing::debug!(target: "aviary::pacing", "holding the main lane's requests for the pace");
                self.held_since = Some(Instant::now());
            }
            (Poll::Ready(_), Some(since)) => {
                self.metrics.api_pace_waited(since.elapsed());
                self.held_since = None;
            }
            _ => {}
        }
        ready
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn zero_qps_is_no_pacing_and_bad_values_name_the_flag() {
        assert_eq!(Pace::new(0.0, 0), Ok(None));
        let err = Pace::new(-1.0, 10).unwrap_err();
        assert!(err.contains("--kube-api-qps"), "{err}");
        let err = Pace::new(50.0, 0).unwrap_err();
        assert!(err.contains("--kube-api-burst"), "{err}");
    }

    #[test]
    fn the_window_sends_the_burst_at_the_average_rate() {
        let pace = Pace::new(100.0, 50).unwrap().unwrap();
        assert_eq!(pace.window(), Duration::from_millis(500));
    }

    /// A client whose every request only counts itself.
    fn counting_client(layer: Option<PaceLayer>) -> (Client, Arc<AtomicUsize>) {
        let count = Arc::new(AtomicUsize::new(0));
        let counter = count.clone();
        let svc = tower::service_fn(move |_req: http::Request<kube::client::Body>| {
            counter.fetch_add(1, Ordering::SeqCst);
            async {
                Ok::<_, Infallible>(http::Response::new(kube::client::Body::from(
                    b"{}".to_vec(),
                )))
            }
        });
        let client = match layer {
            Some(l) => Client::new(
                tower::ServiceBuilder::new().layer(l).service(svc),
                "default",
            ),
            None => Client::new(svc, "default"),
        };
        (client, count)
    }

    fn get() -> http::Request<Vec<u8>> {
        http::Request::get("/api/v1/namespaces/default/pods/p")
            .body(vec![])
            .unwrap()
    }

    #[tokio::test]
    async fn requests_inside_unpaced_take_the_unpaced_client() {
        let (paced_client, to_paced) = counting_client(None);
        let (unpaced_client, to_unpaced) = counting_client(None);
        let clients = Clients::new(paced_client, unpaced_client);
        clients.current().request_text(get()).await.unwrap();
        unpaced(async { clients.current().request_text(get()).await.unwrap() }).await;
        assert_eq!(to_paced.load(Ordering::SeqCst), 1);
        assert_eq!(to_unpaced.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_paced_client_sends_a_burst_then_waits_for_the_next_window() {
        let pace = Pace::new(10.0, 5).unwrap().unwrap();
        let metrics = Arc::new(Metrics::new());
        let (client, sent) = counting_client(Some(pace.layer(metrics.clone())));
        let start = tokio::time::Instant::now();
        let requests = (0..6).map(|_| client.request_text(get()));
        let mut all = futures::future::join_all(requests);
        // The burst goes out at once; the sixth waits for the next window (0.5 s at 10/s).
        let early = tokio::time::timeout(Duration::from_millis(400), &mut all).await;
        assert!(early.is_err(), "all six were sent within 0.4 s");
        assert_eq!(sent.load(Ordering::SeqCst), 5);
        for r in all.await {
            r.unwrap();
        }
        assert_eq!(sent.load(Ordering::SeqCst), 6);
        assert!(start.elapsed() >= Duration::from_millis(500));
        let waited = metrics
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix("aviary_kube_api_pace_wait_seconds_total "))
            .and_then(|v| v.parse::<f64>().ok());
        assert!(
            waited.is_some_and(|w| w >= 0.1),
            "pace wait not counted: {waited:?}"
        );
    }

    #[tokio::test]
    async fn only_code_inside_unpaced_is_unpaced_and_spawned_tasks_are_not() {
        assert!(!is_unpaced());
        let (inside, spawned) = unpaced(async {
            let spawned = tokio::spawn(async { is_unpaced() }).await;
            (is_unpaced(), spawned)
        })
        .await;
        assert!(inside);
        assert_eq!(spawned.ok(), Some(false));
        assert!(!is_unpaced());
    }
}
