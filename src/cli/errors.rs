//! Errors of `kubectl aviary`, each one line saying what went wrong and what to do, and the exit
//! code a script can rely on.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done; for `status`, the rollout is Healthy |
//! | 1 | the answer is "no": the rollout is Degraded or aborted, `lint`/`convert` found problems, or the rollout's state refuses the action |
//! | 2 | `status --timeout` ran out |
//! | 3 | not found: the rollout, a revision, a container or a file |
//! | 4 | Aviary is not installed in the cluster (its API group is not served) |
//! | 5 | no permission (RBAC), or the cluster rejected the credentials |
//! | 6 | no cluster: unreachable, or no usable kubeconfig/context |
//! | 7 | the API server refused the request otherwise (conflict, invalid, internal error) |
//! | 64 | usage error (unknown flag, missing argument) |

use kube::core::Status;

/// Exit codes (see the module documentation).
pub mod exit {
    pub const OK: i32 = 0;
    pub const NO: i32 = 1;
    pub const TIMEOUT: i32 = 2;
    pub const NOT_FOUND: i32 = 3;
    pub const NOT_INSTALLED: i32 = 4;
    pub const FORBIDDEN: i32 = 5;
    pub const NO_CLUSTER: i32 = 6;
    pub const API: i32 = 7;
    pub const USAGE: i32 = 64;
}

/// Everything that can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The `aviary.dev` API group is not served.
    #[error(
        "Aviary is not installed in this cluster ({server}): the API group aviary.dev/v1alpha1 is not served. Install its CRDs (kubectl apply -f crds/) or the Helm chart, or pick another cluster with --context/--kubeconfig"
    )]
    NotInstalled { server: String },
    /// RBAC said no.
    #[error(
        "no permission: {detail}. Ask a cluster admin for RBAC that allows it (check with: kubectl auth can-i {verb} {resource} -n {namespace})"
    )]
    Forbidden {
        detail: String,
        verb: String,
        resource: String,
        namespace: String,
    },
    /// The API server did not accept the credentials.
    #[error(
        "the cluster at {server} rejected the credentials (401 Unauthorized): log in again or fix the user of the context in your kubeconfig"
    )]
    Unauthorized { server: String },
    /// No connection to the API server.
    #[error(
        "cannot reach the cluster at {server} ({detail}): is it running? Check --kubeconfig and --context"
    )]
    Unreachable { server: String, detail: String },
    /// No usable kubeconfig or context.
    #[error("{0}")]
    Kubeconfig(String),
    /// The rollout's state refuses the action (e.g. promoting an aborted rollout).
    #[error("{0}")]
    Refused(String),
    /// A concurrent change won (resourceVersion precondition).
    #[error("{0}")]
    Conflict(String),
    /// Any other refusal by the API server.
    #[error("the API server refused the request: {0}")]
    Api(String),
    /// `status --timeout` ran out.
    #[error("{0}")]
    Timeout(String),
    /// The rollout ended Degraded or aborted (`status`).
    #[error("{0}")]
    Degraded(String),
    /// Local output failed (a closed pipe, a full disk).
    #[error("cannot write output: {0}")]
    Output(String),
}

impl CliError {
    /// The exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => exit::USAGE,
            CliError::NotFound(_) => exit::NOT_FOUND,
            CliError::NotInstalled { .. } => exit::NOT_INSTALLED,
            CliError::Forbidden { .. } | CliError::Unauthorized { .. } => exit::FORBIDDEN,
            CliError::Unreachable { .. } | CliError::Kubeconfig(_) => exit::NO_CLUSTER,
            CliError::Refused(_) | CliError::Degraded(_) => exit::NO,
            CliError::Conflict(_) | CliError::Api(_) | CliError::Output(_) => exit::API,
            CliError::Timeout(_) => exit::TIMEOUT,
        }
    }

    /// The message as one line (`error: …` is added by the caller).
    pub fn one_line(&self) -> String {
        one_line(&self.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Output(e.to_string())
    }
}

/// Collapses whitespace runs (including newlines) into single spaces.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a request was doing, so an error can say which permission or object was missing.
#[derive(Clone, Debug)]
pub struct Op {
    /// RBAC verb: get, list, watch, patch.
    pub verb: &'static str,
    /// RBAC resource, e.g. `rollouts.aviary.dev`, `rollouts.aviary.dev/status`, `pods`.
    pub resource: &'static str,
    /// Namespace of the request (empty: cluster-wide).
    pub namespace: String,
    /// Name of the object, when one is addressed.
    pub name: Option<String>,
}

impl Op {
    pub fn new(verb: &'static str, resource: &'static str, namespace: &str) -> Self {
        Op {
            verb,
            resource,
            namespace: namespace.to_string(),
            name: None,
        }
    }

    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    fn kind_word(&self) -> &'static str {
        match self.resource.split(['.', '/']).next().unwrap_or_default() {
            "rollouts" => "rollout",
            "analysisruns" => "analysis run",
            "replicasets" => "replica set",
            "pods" => "pod",
            _ => "object",
        }
    }
}

/// What a failed API call means, before any follow-up (discovery) request.
#[derive(Clone, Debug, PartialEq)]
pub enum Classified {
    /// Done: this is the error.
    Final(String, Kind),
    /// A 404 that may mean the resource type itself is missing: check discovery.
    MaybeNotInstalled,
}

/// The category of a classified API error (which [`CliError`] variant it becomes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    NotFound,
    Forbidden,
    Unauthorized,
    Conflict,
    Api,
}

/// Classifies an API server `Status` for the operation `op`. Pure, for table tests.
pub fn classify_status(status: &Status, op: &Op) -> Classified {
    let message = one_line(&status.message);
    // Not every error body is a Status (a path the server does not serve answers with plain
    // text "404 page not found"): the HTTP code decides too.
    if status.is_not_found() || status.code == 404 {
        let names_object = status.details.as_ref().is_some_and(|d| !d.name.is_empty());
        return match (&op.name, names_object) {
            (Some(name), true) => {
                let ns = if op.namespace.is_empty() {
                    String::new()
                } else {
                    format!(" in namespace '{}'", op.namespace)
                };
                let hint = if op.kind_word() == "rollout" {
                    ": check the name and -n/--namespace (kubectl aviary list rollouts -A lists them all)"
                } else {
                    ""
                };
                Classified::Final(
                    format!("{} '{name}' not found{ns}{hint}", op.kind_word()),
                    Kind::NotFound,
                )
            }
            _ => Classified::MaybeNotInstalled,
        };
    }
    if status.is_forbidden() || status.code == 403 {
        let detail = message
            .split_once("is forbidden: ")
            .map(|(_, d)| d.to_string())
            .unwrap_or(message);
        return Classified::Final(detail, Kind::Forbidden);
    }
    if status.code == 401 || status.reason == "Unauthorized" {
        return Classified::Final(message, Kind::Unauthorized);
    }
    if status.is_conflict() || status.code == 409 {
        return Classified::Final(message, Kind::Conflict);
    }
    Classified::Final(
        if message.is_empty() {
            format!("{} {}", status.code, status.reason)
        } else {
            message
        },
        Kind::Api,
    )
}

/// Builds the error for a classified status.
pub fn from_classified(message: String, kind: Kind, op: &Op, server: &str) -> CliError {
    match kind {
        Kind::NotFound => CliError::NotFound(message),
        Kind::Forbidden => CliError::Forbidden {
            detail: message,
            verb: op.verb.to_string(),
            resource: op.resource.to_string(),
            namespace: if op.namespace.is_empty() {
                "default".into()
            } else {
                op.namespace.clone()
            },
        },
        Kind::Unauthorized => CliError::Unauthorized {
            server: server.to_string(),
        },
        Kind::Conflict => CliError::Conflict(format!(
            "the {} changed while this command ran ({message}): run it again",
            op.kind_word()
        )),
        Kind::Api => CliError::Api(message),
    }
}

/// The innermost useful reason of a transport error, e.g. "connection refused".
pub fn transport_detail(err: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = vec![err.to_string()];
    let mut source = err.source();
    while let Some(s) = source {
        chain.push(s.to_string());
        source = s.source();
    }
    let all = chain.join(": ").to_lowercase();
    for (needle, say) in [
        ("connection refused", "connection refused"),
        ("dns error", "host name not found"),
        ("failed to lookup address", "host name not found"),
        ("timed out", "connection timed out"),
        ("deadline has elapsed", "connection timed out"),
        ("certificate", "TLS certificate not trusted"),
        ("invalidcertificate", "TLS certificate not trusted"),
        ("connection reset", "connection reset"),
        ("network is unreachable", "network unreachable"),
    ] {
        if all.contains(needle) {
            return say.to_string();
        }
    }
    one_line(chain.last().map(String::as_str).unwrap_or("unknown error"))
}

/// Maps a kube error that is not an API `Status` (transport, TLS, auth plugin, decoding).
pub fn from_transport(err: &kube::Error, server: &str) -> CliError {
    match err {
        kube::Error::Api(_) => CliError::Api(one_line(&err.to_string())),
        kube::Error::Auth(e) => CliError::Kubeconfig(format!(
            "cannot get credentials for the cluster at {server}: {}",
            one_line(&e.to_string())
        )),
        kube::Error::SerdeError(e) => CliError::Api(format!(
            "unexpected answer from {server}: {e} (is that a Kubernetes API server?)"
        )),
        other => CliError::Unreachable {
            server: server.to_string(),
            detail: transport_detail(other),
        },
    }
}

/// Whether the error is the API server's 404.
pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.is_not_found() || s.code == 404)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::response::StatusDetails;

    fn status(code: u16, reason: &str, message: &str, name: Option<&str>) -> Status {
        Status {
            status: None,
            code,
            message: message.into(),
            metadata: None,
            reason: reason.into(),
            details: name.map(|n| StatusDetails {
                name: n.into(),
                group: "aviary.dev".into(),
                kind: "rollouts".into(),
                uid: String::new(),
                causes: vec![],
                retry_after_seconds: 0,
            }),
        }
    }

    #[test]
    fn api_statuses_become_one_line_messages() {
        let get = Op::new("get", "rollouts.aviary.dev", "shop").named("web");
        let cases: Vec<(Status, Classified)> = vec![
            (
                status(404, "NotFound", "rollouts.aviary.dev \"web\" not found", Some("web")),
                Classified::Final(
                    "rollout 'web' not found in namespace 'shop': check the name and -n/--namespace (kubectl aviary list rollouts -A lists them all)".into(),
                    Kind::NotFound,
                ),
            ),
            // The resource type itself is missing: no object name in the details.
            (
                status(404, "NotFound", "the server could not find the requested resource", None),
                Classified::MaybeNotInstalled,
            ),
            // A plain-text 404 (a path the server does not serve).
            (
                status(404, "Failed to parse error data", "404 page not found", None),
                Classified::MaybeNotInstalled,
            ),
            (
                status(
                    403,
                    "Forbidden",
                    "rollouts.aviary.dev \"web\" is forbidden: User \"bob\" cannot get resource \"rollouts\" in API group \"aviary.dev\" in the namespace \"shop\"",
                    Some("web"),
                ),
                Classified::Final(
                    "User \"bob\" cannot get resource \"rollouts\" in API group \"aviary.dev\" in the namespace \"shop\"".into(),
                    Kind::Forbidden,
                ),
            ),
            (
                status(401, "Unauthorized", "Unauthorized", None),
                Classified::Final("Unauthorized".into(), Kind::Unauthorized),
            ),
            (
                status(409, "Conflict", "the object has been modified;\nplease apply", Some("web")),
                Classified::Final("the object has been modified; please apply".into(), Kind::Conflict),
            ),
            (
                status(422, "Invalid", "Rollout.aviary.dev \"web\" is invalid: spec.replicas: Invalid value", Some("web")),
                Classified::Final(
                    "Rollout.aviary.dev \"web\" is invalid: spec.replicas: Invalid value".into(),
                    Kind::Api,
                ),
            ),
        ];
        for (st, want) in cases {
            assert_eq!(classify_status(&st, &get), want, "{st:?}");
        }
    }

    #[test]
    fn list_404_means_maybe_not_installed() {
        let list = Op::new("list", "rollouts.aviary.dev", "shop");
        assert_eq!(
            classify_status(
                &status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                    None
                ),
                &list
            ),
            Classified::MaybeNotInstalled
        );
    }

    #[test]
    fn every_error_is_one_line_with_its_exit_code() {
        let cases: Vec<(CliError, i32, &str)> = vec![
            (
                CliError::NotInstalled {
                    server: "https://k:6443".into(),
                },
                4,
                "Aviary is not installed in this cluster (https://k:6443)",
            ),
            (
                from_classified(
                    "User \"bob\" cannot patch resource".into(),
                    Kind::Forbidden,
                    &Op::new("patch", "rollouts.aviary.dev/status", "shop"),
                    "https://k",
                ),
                5,
                "no permission: User \"bob\" cannot patch resource. Ask a cluster admin for RBAC that allows it (check with: kubectl auth can-i patch rollouts.aviary.dev/status -n shop)",
            ),
            (
                CliError::Unreachable {
                    server: "https://127.0.0.1:1".into(),
                    detail: "connection refused".into(),
                },
                6,
                "cannot reach the cluster at https://127.0.0.1:1 (connection refused)",
            ),
            (CliError::Timeout("timed out".into()), 2, "timed out"),
            (CliError::Degraded("aborted".into()), 1, "aborted"),
            (CliError::Usage("bad".into()), 64, "bad"),
        ];
        for (e, code, starts) in cases {
            assert_eq!(e.exit_code(), code, "{e}");
            let line = e.one_line();
            assert!(line.starts_with(starts), "{line}");
            assert!(!line.contains('\n'));
        }
    }

    #[test]
    fn transport_detail_finds_the_reason_in_the_chain() {
        let io = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        assert_eq!(transport_detail(&io), "connection refused");
        let other = std::io::Error::other("weird\nthing");
        assert_eq!(transport_detail(&other), "weird thing");
    }
}
