use std::sync::Arc;

use axum::response::{IntoResponse, Response};

use crate::error::{ErrorCode, Problem, RequestId};
use crate::password::{PasswordError, PolicyViolation};
use crate::session::{SessionError, SessionRejection};
use crate::store::StoreError;

/// An error answered by the auth service. Rendered as problem+json by the service's outer
/// middleware, which knows the request id and logs internal causes with it.
#[derive(Debug, thiserror::Error)]
#[error("{code}")]
pub struct ApiError {
    code: ErrorCode,
    detail: Option<String>,
    reason: Option<String>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ApiError {
    /// An error with `code` and nothing more.
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            detail: None,
            reason: None,
            source: None,
        }
    }

    /// `validation_failed` with a client-safe explanation.
    pub fn validation(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationFailed).with_detail(detail)
    }

    /// An internal failure: the client sees `internal`, the log sees `source`.
    pub fn internal(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            source: Some(Box::new(source)),
            ..Self::new(ErrorCode::Internal)
        }
    }

    /// Keeps `source` for the log (never shown to the client).
    #[must_use]
    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Adds a client-safe explanation.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The error code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub(crate) fn to_problem(&self, request_id: &RequestId) -> Problem {
        let mut p = Problem::new(self.code, request_id);
        p.detail = self.detail.clone();
        p.reason = self.reason.clone();
        p
    }
}

/// Marker put into response extensions; the outer middleware renders it.
#[derive(Debug, Clone)]
pub(crate) struct PendingProblem(pub(crate) Arc<ApiError>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.code.status().into_response();
        response
            .extensions_mut()
            .insert(PendingProblem(Arc::new(self)));
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            // A unique key clash is `account_exists` only where an account is created
            // (`register` maps it there); anywhere else it is a server-side surprise.
            StoreError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) => Self {
                source: Some(Box::new(e)),
                ..Self::new(ErrorCode::ServiceUnavailable)
            },
            other => Self::internal(other),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Store(s) => s.into(),
            SessionError::Revoked => Self::new(ErrorCode::Unauthenticated),
            SessionError::CredentialsChanged => Self::new(ErrorCode::InvalidCredentials),
            other => Self::internal(other),
        }
    }
}

impl From<PasswordError> for ApiError {
    fn from(e: PasswordError) -> Self {
        Self::internal(e)
    }
}

impl From<SessionRejection> for ApiError {
    fn from(r: SessionRejection) -> Self {
        Self::new(r.code())
    }
}

impl From<PolicyViolation> for ApiError {
    fn from(v: PolicyViolation) -> Self {
        let mut e = Self::new(ErrorCode::PasswordTooWeak).with_detail(v.to_string());
        e.reason = Some(v.reason_code().to_owned());
        e
    }
}
