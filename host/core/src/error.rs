//! The typed failure a connector reports.

use serde::{Deserialize, Serialize};

/// Why a connector operation failed, as the plugin reported it (mirrors WIT `connector-error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "message", rename_all = "kebab-case")]
pub enum ConnectorError {
    #[error("invalid credentials: {0}")]
    InvalidCredentials(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("throttled by the source: retry after {0} ms")]
    Throttled(u32),
    #[error("source unavailable: {0}")]
    Unavailable(String),
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("{0}")]
    Other(String),
}

impl ConnectorError {
    /// A short machine-readable name for the case (`invalid-credentials`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidCredentials(_) => "invalid-credentials",
            Self::PermissionDenied(_) => "permission-denied",
            Self::NotFound(_) => "not-found",
            Self::Throttled(_) => "throttled",
            Self::Unavailable(_) => "unavailable",
            Self::InvalidConfig(_) => "invalid-config",
            Self::Other(_) => "other",
        }
    }
}
