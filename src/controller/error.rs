//! Reconcile errors, classified: an invalid spec (or a routing object that can't carry the
//! split) waits for a change; everything else is retried with backoff.

use kube::runtime::finalizer::Error as FinalizerError;

use crate::traffic::TrafficError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Traffic(#[from] TrafficError),
    /// The Rollout references something that does not exist or can't be used as configured.
    #[error("{0}")]
    InvalidSpec(String),
    #[error("serialisation: {0}")]
    Serde(#[from] serde_json::Error),
    /// What the plan was made from changed before an action that needed more of it; the next
    /// reconcile plans again.
    #[error("re-planning: {0}")]
    Replan(String),
    /// Adding or removing the route-cleanup finalizer failed (the reconcile and the cleanup it
    /// wraps report their own errors, unwrapped).
    #[error("route-cleanup finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// Whether retrying without any change can help.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Kube(_) | Error::Replan(_) => true,
            Error::Traffic(t) => t.is_transient(),
            Error::InvalidSpec(_) | Error::Serde(_) => false,
            Error::Finalizer(e) => match e.as_ref() {
                FinalizerError::ApplyFailed(inner) | FinalizerError::CleanupFailed(inner) => {
                    inner.is_transient()
                }
                FinalizerError::AddFinalizer(_) | FinalizerError::RemoveFinalizer(_) => true,
                FinalizerError::UnnamedObject | FinalizerError::InvalidFinalizer => false,
            },
        }
    }

    /// A short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Traffic(_) => "traffic",
            Error::InvalidSpec(_) => "invalid_spec",
            Error::Serde(_) => "serde",
            Error::Replan(_) => "replan",
            Error::Finalizer(e) => match e.as_ref() {
                FinalizerError::ApplyFailed(inner) | FinalizerError::CleanupFailed(inner) => {
                    inner.kind()
                }
                _ => "finalizer",
            },
        }
    }

    /// The error a finalizer-wrapped reconcile gives back: the reconcile's or the cleanup's own
    /// error as it was (so it is classified as usual), or the finalizer's.
    pub fn from_finalizer(e: FinalizerError<Error>) -> Self {
        match e {
            FinalizerError::ApplyFailed(inner) | FinalizerError::CleanupFailed(inner) => inner,
            other => Error::Finalizer(Box::new(other)),
        }
    }
}
