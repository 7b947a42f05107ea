//! A `/metrics` endpoint on 127.0.0.1 whose numbers the test sets, registered with the local
//! Prometheus through a file_sd target file, so a test can make PromQL return a chosen success
//! rate, error rate and p95 latency.
//!
//! Series: `http_requests_total{service,version,status}` and the histogram
//! `http_request_duration_seconds{service,version}`. Counters advance lazily at scrape time by
//! `rate × elapsed`, so they are exact whatever the scrape timing and need no ticking task.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Histogram bucket bounds, in seconds.
pub const BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0];

/// The traffic one version of one service receives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Traffic {
    /// Requests per second.
    pub rps: f64,
    /// Fraction of requests answered with status 500.
    pub error_rate: f64,
    /// Every request takes this long (seconds); the histogram's p95 interpolates inside its bucket.
    pub latency: f64,
}

impl Traffic {
    pub fn healthy(rps: f64) -> Self {
        Traffic {
            rps,
            error_rate: 0.0,
            latency: 0.02,
        }
    }
}

#[derive(Default)]
struct Series {
    traffic: Option<Traffic>,
    ok: f64,
    errors: f64,
    sum: f64,
    buckets: Vec<f64>,
    count: f64,
}

impl Series {
    fn advance(&mut self, dt: f64) {
        let Some(t) = self.traffic else { return };
        let n = t.rps * dt;
        self.errors += n * t.error_rate;
        self.ok += n * (1.0 - t.error_rate);
        self.count += n;
        self.sum += n * t.latency;
        if self.buckets.is_empty() {
            self.buckets = vec![0.0; BUCKETS.len()];
        }
        for (b, le) in self.buckets.iter_mut().zip(BUCKETS) {
            if t.latency <= *le {
                *b += n;
            }
        }
    }
}

struct State {
    series: BTreeMap<(String, String), Series>,
    last: Instant,
}

impl State {
    fn advance(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        for s in self.series.values_mut() {
            s.advance(dt);
        }
    }

    fn render(&mut self) -> String {
        self.advance();
        let mut out = String::new();
        out.push_str("# TYPE http_requests_total counter\n");
        for ((svc, ver), s) in &self.series {
            out.push_str(&format!(
                "http_requests_total{{service=\"{svc}\",version=\"{ver}\",status=\"200\"}} {}\n",
                s.ok
            ));
            out.push_str(&format!(
                "http_requests_total{{service=\"{svc}\",version=\"{ver}\",status=\"500\"}} {}\n",
                s.errors
            ));
        }
        out.push_str("# TYPE http_request_duration_seconds histogram\n");
        for ((svc, ver), s) in &self.series {
            for (i, le) in BUCKETS.iter().enumerate() {
                let v = s.buckets.get(i).copied().unwrap_or(0.0);
                out.push_str(&format!(
                    "http_request_duration_seconds_bucket{{service=\"{svc}\",version=\"{ver}\",le=\"{le}\"}} {v}\n"
                ));
            }
            out.push_str(&format!(
                "http_request_duration_seconds_bucket{{service=\"{svc}\",version=\"{ver}\",le=\"+Inf\"}} {}\n",
                s.count
            ));
            out.push_str(&format!(
                "http_request_duration_seconds_sum{{service=\"{svc}\",version=\"{ver}\"}} {}\n",
                s.sum
            ));
            out.push_str(&format!(
                "http_request_duration_seconds_count{{service=\"{svc}\",version=\"{ver}\"}} {}\n",
                s.count
            ));
        }
        out
    }
}

/// A running exporter; dropping it stops the server and removes its scrape target.
pub struct Exporter {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    target_file: Option<PathBuf>,
    server: tokio::task::JoinHandle<()>,
}

impl Exporter {
    /// Starts the server and, when `AVIARY_PROM_TARGETS_DIR` is set, registers it with Prometheus.
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind exporter");
        let addr = listener.local_addr().expect("exporter address");
        let state = Arc::new(Mutex::new(State {
            series: BTreeMap::new(),
            last: Instant::now(),
        }));
        let served = state.clone();
        let server = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let state = served.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut read = 0;
                    // Read the request head; the path doesn't matter, everything is /metrics.
                    while read < buf.len() {
                        match sock.read(&mut buf[read..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read += n,
                        }
                        if buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                    let body = match state.lock() {
                        Ok(mut s) => s.render(),
                        Err(_) => return,
                    };
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(body.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        let target_file = std::env::var_os("AVIARY_PROM_TARGETS_DIR").map(|dir| {
            let file = PathBuf::from(dir).join(format!("{name}.json"));
            let tmp = file.with_extension("tmp");
            let body =
                serde_json::json!([{"targets": [addr.to_string()], "labels": {"exporter": name}}]);
            // Write then rename: Prometheus must never read a half-written target file.
            std::fs::write(&tmp, body.to_string()).expect("write scrape target");
            std::fs::rename(&tmp, &file).expect("install scrape target");
            file
        });
        Exporter {
            addr,
            state,
            target_file,
            server,
        }
    }

    /// Sets (or replaces) the traffic of `service`/`version` from now on; counters keep their totals.
    pub fn set(&self, service: &str, version: &str, traffic: Traffic) {
        if let Ok(mut s) = self.state.lock() {
            s.advance();
            s.series
                .entry((service.to_string(), version.to_string()))
                .or_default()
                .traffic = Some(traffic);
        }
    }

    /// Stops a series' traffic: its counters stall (rate 0/0 = NaN in PromQL).
    pub fn stop(&self, service: &str, version: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.advance();
            if let Some(series) = s
                .series
                .get_mut(&(service.to_string(), version.to_string()))
            {
                series.traffic = None;
            }
        }
    }

    /// The exposition text as Prometheus would scrape it now.
    pub fn render(&self) -> String {
        self.state
            .lock()
            .map(|mut s| s.render())
            .unwrap_or_default()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.server.abort();
        if let Some(f) = &self.target_file {
            let _ = std::fs::remove_file(f);
        }
    }
}
