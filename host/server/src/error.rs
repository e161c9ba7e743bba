//! The one error shape every failing request answers with, and the crate's own error type.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::BackendError;

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on `{addr}`")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the server failed")]
    Io(#[source] std::io::Error),
}

/// A failed request: `{"error": {"code": "...", "message": "...", "field": "..."}}` with the
/// matching HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    /// A stable, machine-readable reason (`forbidden`, `not_found`, `invalid`, ...).
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a ApiError,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in, or send `Authorization: Bearer TOKEN` with a token from `keelson token create`",
        )
    }

    pub fn forbidden(needed: &str, have: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this needs the `{needed}` role; your token has `{have}`"),
        )
    }

    /// Names the request field at fault.
    pub fn on_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(Body { error: &self })).into_response()
    }
}

impl From<keelson_store::Error> for ApiError {
    fn from(err: keelson_store::Error) -> Self {
        use keelson_store::Error as E;
        match &err {
            E::UnknownConnection(_) | E::UnknownIssue(_) | E::UnknownRun(_) => {
                Self::not_found(err.to_string())
            }
            E::AlreadyRunning { .. }
            | E::AlreadySuppressed(_)
            | E::NotSuppressed(_)
            | E::TokenExists(_) => Self::new(StatusCode::CONFLICT, "conflict", err.to_string()),
            E::NotHeld { .. } => Self::new(StatusCode::CONFLICT, "not_held", err.to_string()),
            E::HeldSuperseded { .. } => {
                Self::new(StatusCode::CONFLICT, "held_superseded", err.to_string())
            }
            E::InvalidTimestamp(_) | E::InvalidCursor(_) | E::InvalidRole(_) => {
                Self::invalid(err.to_string())
            }
            _ => {
                tracing::error!(error = %err, "store failure");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the store failed; see the server log",
                )
            }
        }
    }
}

impl From<BackendError> for ApiError {
    fn from(err: BackendError) -> Self {
        match err {
            BackendError::Invalid(m) => Self::invalid(m),
            BackendError::NotFound(m) => Self::not_found(m),
            BackendError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            BackendError::Failed(m) => Self::new(StatusCode::BAD_GATEWAY, "plugin_failed", m),
        }
    }
}
