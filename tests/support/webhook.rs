//! A webhook receiver on 127.0.0.1 that records every JSON body posted to it, by path, and
//! answers GETs with a JSON document the test sets (a metric for the web analysis provider).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use tokio::net::TcpListener;

/// One request received.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub body: serde_json::Value,
}

/// The receiver; stops accepting when dropped.
pub struct WebhookReceiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    document: Arc<Mutex<serde_json::Value>>,
    /// Every GET: its URI and headers, as one line of text.
    gets: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind webhook receiver");
        let addr = listener.local_addr().expect("receiver address");
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let document: Arc<Mutex<serde_json::Value>> = Arc::default();
        let gets: Arc<Mutex<Vec<String>>> = Arc::default();
        let store = received.clone();
        let doc = document.clone();
        let seen = gets.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = store.clone();
                let doc = doc.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let store = store.clone();
                            let doc = doc.clone();
                            let seen = seen.clone();
                            async move {
                                if req.method() == hyper::Method::GET {
                                    let headers: Vec<String> = req
                                        .headers()
                                        .iter()
                                        .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("?")))
                                        .collect();
                                    if let Ok(mut g) = seen.lock() {
                                        g.push(format!("{} {}", req.uri(), headers.join("; ")));
                                    }
                                    let body =
                                        doc.lock().map(|d| d.to_string()).unwrap_or_default();
                                    return Ok::<_, std::convert::Infallible>(
                                        hyper::Response::new(Full::new(Bytes::from(body))),
                                    );
                                }
                                let path = req.uri().path().to_string();
                                let bytes = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let body = serde_json::from_slice(&bytes)
                                    .unwrap_or(serde_json::Value::Null);
                                if let Ok(mut s) = store.lock() {
                                    s.push(Received { path, body });
                                }
                                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                    Bytes::from_static(b"ok"),
                                )))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        WebhookReceiver {
            addr,
            received,
            document,
            gets,
            task,
        }
    }

    /// The JSON document GET requests get.
    pub fn serve_document(&self, doc: serde_json::Value) {
        if let Ok(mut d) = self.document.lock() {
            *d = doc;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every GET received so far: its URI and headers as one line each.
    pub fn get_requests(&self) -> Vec<String> {
        self.gets.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Bodies received on `path`, in order.
    pub fn bodies(&self, path: &str) -> Vec<serde_json::Value> {
        self.received
            .lock()
            .map(|r| {
                r.iter()
                    .filter(|x| x.path == path)
                    .map(|x| x.body.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP server that accepts connections and never answers: an analysis provider as slow as
/// its timeout. Returns its address and how many connections it accepted.
pub async fn hanging_server() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = vec![];
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(stream);
        }
    });
    (addr, accepted)
}
