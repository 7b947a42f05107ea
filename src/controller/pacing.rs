//! Client-side pacing of the requests that move rollouts forward.
//!
//! A wave over thousands of rollouts lets the main lane send requests as fast as the API server
//! answers them, and on a small control plane that keeps its cores busy: an abort arriving then
//! waits for the server like everything else (the benchmark's reaction time at 1,000 rollouts
//! was mostly the API server's answer). So the main lane's requests can be paced (a token
//! bucket: `--kube-api-burst` tokens refilled at `--kube-api-qps` a second; off by default),
//! and what must not wait is not: the watches (they deliver the aborts), the urgent
//! lane's whole reconcile, the abort writes sent from the watch, the analysis controller (it
//! detects a bad canary) and leader election.
//!
//! Which client a request takes is decided per task: code in [`unpaced`] gets the unpaced one
//! from [`Clients::current`]; everything else the paced one.

use std::future::Future;
use std::pin::Pin;
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

/// The pace: a token bucket of `burst` tokens refilled at `qps` a second, a request taking one
/// (client-go's `--kube-api-qps` / `--kube-api-burst`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pace {
    pub qps: f64,
    pub burst: u32,
}

/// Slower than one request in ~17 minutes is a stuck controller, not a pace.
const MIN_QPS: f64 = 0.001;
const MAX_QPS: f64 = 1_000_000.0;

impl Pace {
    /// `None` when `qps` is zero (pacing off).
    pub fn new(qps: f64, burst: u32) -> Result<Option<Pace>, String> {
        if qps == 0.0 {
            return Ok(None);
        }
        if !(MIN_QPS..=MAX_QPS).contains(&qps) {
            return Err(format!(
                "--kube-api-qps must be 0 (unpaced) or between {MIN_QPS} and {MAX_QPS} requests \
                 per second (got {qps})"
            ));
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

    /// The longest a request waits for its token once it is first in line.
    fn token_interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.qps)
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
        Paced {
            inner,
            pace: self.pace,
            tokens: f64::from(self.pace.burst),
            refilled_at: Instant::now(),
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            held_since: None,
            metrics: self.metrics.clone(),
        }
    }
}

/// A token-bucket-paced service that counts how long it held requests back
/// (`aviary_kube_api_pace_wait_seconds_total`). kube's client puts one buffer in front of it
/// whose worker asks for one request at a time whether it may go, so the count is the time the
/// first request in line waited: how long the main lane was stopped by its pace.
pub struct Paced<S> {
    inner: S,
    pace: Pace,
    tokens: f64,
    refilled_at: Instant,
    sleep: Pin<Box<tokio::time::Sleep>>,
    held_since: Option<Instant>,
    metrics: Arc<Metrics>,
}

impl<S> Paced<S> {
    fn refill(&mut self, now: Instant) {
        let earned = now.duration_since(self.refilled_at).as_secs_f64() * self.pace.qps;
        self.tokens = (self.tokens + earned).min(f64::from(self.pace.burst));
        self.refilled_at = now;
    }
}

impl<S, R> tower::Service<R> for Paced<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        loop {
            let now = Instant::now();
            self.refill(now);
            if self.tokens >= 1.0 {
                break;
            }
            if self.held_since.is_none() {
                tracing::debug!(target: "aviary::pacing", "holding the main lane's requests for the pace");
                self.held_since = Some(now);
            }
            let wait = Duration::from_secs_f64((1.0 - self.tokens) / self.pace.qps);
            self.sleep.as_mut().reset(now + wait);
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        if let Some(since) = self.held_since.take() {
            // A request cancelled while held leaves no one to end the hold; one token's wait is
            // the most a hold can really last.
            self.metrics
                .api_pace_waited(since.elapsed().min(self.pace.token_interval()));
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.tokens -= 1.0;
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
        for qps in [-1.0, 1e-9, 1e10, f64::NAN, f64::INFINITY] {
            let err = Pace::new(qps, 10).unwrap_err();
            assert!(err.contains("--kube-api-qps"), "{qps}: {err}");
        }
        let err = Pace::new(50.0, 0).unwrap_err();
        assert!(err.contains("--kube-api-burst"), "{err}");
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
    async fn the_paced_client_sends_its_burst_then_one_request_per_token() {
        let pace = Pace::new(10.0, 5).unwrap().unwrap();
        let metrics = Arc::new(Metrics::new());
        let (client, sent) = counting_client(Some(pace.layer(metrics.clone())));
        let start = tokio::time::Instant::now();
        let requests = (0..7).map(|_| client.request_text(get()));
        let mut all = futures::future::join_all(requests);
        // The burst goes out at once; the sixth and seventh wait 0.1 s each for a token.
        let early = tokio::time::timeout(Duration::from_millis(150), &mut all).await;
        assert!(early.is_err(), "all seven were sent within 0.15 s");
        assert_eq!(sent.load(Ordering::SeqCst), 6);
        for r in all.await {
            r.unwrap();
        }
        assert_eq!(sent.load(Ordering::SeqCst), 7);
        assert!(start.elapsed() >= Duration::from_millis(200));
        let waited = || {
            metrics
                .encode()
                .lines()
                .find_map(|l| l.strip_prefix("aviary_kube_api_pace_wait_seconds_total "))
                .and_then(|v| v.parse::<f64>().ok())
        };
        assert!(
            waited().is_some_and(|w| (0.15..=0.25).contains(&w)),
            "pace wait counted: {:?}",
            waited()
        );

        // Idle refills the bucket, never beyond the burst.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let mut again = futures::future::join_all((0..6).map(|_| client.request_text(get())));
        let early = tokio::time::timeout(Duration::from_millis(50), &mut again).await;
        assert!(
            early.is_err(),
            "more than the burst went out at once after idling"
        );
        assert_eq!(sent.load(Ordering::SeqCst), 12);
        again.await;
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
