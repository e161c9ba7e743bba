//! The one error shape every failing request answers with, and the crate's own error type.

use axum::Json;
use axum::http::{StatusCode, header};
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
    #[error(
        "public URL `{value}` is not usable: {reason}; expected `https://NAME[:PORT]`, the address users reach this server by"
    )]
    PublicUrl { value: String, reason: &'static str },
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
    /// When to try again, sent as `Retry-After` (whole seconds).
    #[serde(skip)]
    pub retry_after: Option<u64>,
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
            retry_after: None,
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

    /// Too many failed sign-ins from the caller's address; try again after `wait`.
    pub fn throttled(wait: std::time::Duration) -> Self {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut err = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            format!("too many failed sign-ins from this address; try again in {seconds} seconds"),
        );
        err.retry_after = Some(seconds.max(1));
        err
    }

    /// `response` with this error's `Retry-After`, if it has one.
    pub(crate) fn retry_after_on(&self, mut response: Response) -> Response {
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }

    /// Names the request field at fault.
    pub fn on_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let response = (self.status, Json(Body { error: &self })).into_response();
        self.retry_after_on(response)
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
