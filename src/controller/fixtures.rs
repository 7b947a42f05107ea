//! The shell's middle test tier: a mock API server (kube's `tower-test` pattern) that answers
//! each request the controller makes, in order, and lets a test assert exactly what was asked.
//! A test drives the code under test and the server side by side (`tokio::join!`), the code
//! under test dropping its `Context` when done and the server side ending with
//! [`ApiServer::expect_no_more`], all [`within_deadline`]: a reordered or wrong request fails an
//! `expect`, a missing one finds the client gone, an extra one fails `expect_no_more`, and a
//! request left unanswered fails the deadline instead of hanging the suite.

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use serde_json::Value;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// The API server's side of a mock client.
pub struct ApiServer {
    handle: Handle,
}

/// A client whose requests reach only the returned [`ApiServer`].
pub fn mock_client() -> (Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServer { handle })
}

/// One request as the server received it.
#[derive(Debug)]
pub struct Received {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub body: Value,
}

impl ApiServer {
    /// Waits for the next request, checks its method and path (the query is not compared),
    /// answers `status` with `reply`, and returns what was received.
    pub async fn expect(
        &mut self,
        method: &str,
        path: &str,
        status: StatusCode,
        reply: Value,
    ) -> Received {
        self.expect_after(method, path, status, reply, || {}).await
    }

    /// [`ApiServer::expect`], running `before` (e.g. watch events) after the request arrives
    /// and before it is answered.
    pub async fn expect_after(
        &mut self,
        method: &str,
        path: &str,
        status: StatusCode,
        reply: Value,
        before: impl FnOnce(),
    ) -> Received {
        let (request, send) = self
            .handle
            .next_request()
            .await
            .unwrap_or_else(|| panic!("expected {method} {path}, but the client hung up"));
        let received = Received {
            method: request.method().to_string(),
            uri: request.uri().to_string(),
            body: {
                let bytes = request
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                serde_json::from_slice(&bytes).unwrap_or(Value::Null)
            },
        };
        assert_eq!(
            (received.method.as_str(), received.uri.split('?').next()),
            (method, Some(path)),
            "unexpected request: {received:?}"
        );
        before();
        let response = Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&reply).unwrap_or_default()))
            .unwrap_or_else(|e| panic!("response: {e}"));
        send.send_response(response);
        received
    }

    /// Answers every further request with `status` and `reply` until the client hangs up;
    /// returns the requests, in order.
    pub async fn answer_all(mut self, status: StatusCode, reply: Value) -> Vec<String> {
        let mut seen = vec![];
        while let Some((request, send)) = self.handle.next_request().await {
            seen.push(format!("{} {}", request.method(), request.uri().path()));
            let response = Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&reply).unwrap_or_default()))
                .unwrap_or_else(|e| panic!("response: {e}"));
            send.send_response(response);
        }
        seen
    }

    /// Asserts that the client made no further request (its side is dropped first).
    pub async fn expect_no_more(mut self) {
        if let Some((request, _)) = self.handle.next_request().await {
            panic!("unexpected request: {} {}", request.method(), request.uri());
        }
    }
}

/// A 500 answer in the API's Status shape.
pub fn server_error() -> Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure",
        "message": "etcdserver: request timed out", "reason": "InternalError", "code": 500,
    })
}

/// Awaits a test's conversation with the mock API server, failing it if that takes longer than
/// a generous deadline (a request nobody answers would otherwise hang the suite).
pub async fn within_deadline<T>(conversation: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(30), conversation)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the conversation with the mock API server did not end: a request went unanswered"
            )
        })
}

/// The Rollout the shell's tests act for: `web` in namespace `shop` (uid `u1`), one replica of
/// pods labelled `app: web` running `web:2`, with this `strategy` (`{"canary": …}` or
/// `{"blueGreen": …}`) and `status` (`null` for none).
pub fn rollout(strategy: Value, status: Value) -> crate::api::Rollout {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "aviary.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u1"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "web", "image": "web:2"}]}},
            "strategy": strategy,
        },
        "status": status,
    }))
    .unwrap_or_else(|e| panic!("test rollout: {e}"))
}
