//! Reconcile errors, classified: an invalid spec (or a routing object that can't carry the
//! split) waits for a change; everything else is retried with backoff.

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
    /// An AnalysisRun could not be created (a template is missing): the rollout treats the
    /// analysis as ended in Error with this message.
    #[error("{message}")]
    AnalysisSetup {
        kind: crate::plan::AnalysisKind,
        hash: String,
        message: String,
    },
    #[error("serialisation: {0}")]
    Serde(#[from] serde_json::Error),
}

impl Error {
    /// Whether retrying without any change can help.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Kube(_) => true,
            Error::Traffic(t) => t.is_transient(),
            Error::InvalidSpec(_) | Error::Serde(_) | Error::AnalysisSetup { .. } => false,
        }
    }

    /// A short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Traffic(_) => "traffic",
            Error::InvalidSpec(_) => "invalid_spec",
            Error::Serde(_) => "serde",
            Error::AnalysisSetup { .. } => "analysis_setup",
        }
    }
}
