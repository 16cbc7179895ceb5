use std::fmt;

use axum::body::Body;
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

use super::RequestId;

/// The media type of every error body.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// The stable error codes of the API. Clients switch on these, never on `title` or `detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// Wrong e-mail or password (also a locked account, which must look the same).
    InvalidCredentials,
    /// No valid session.
    Unauthenticated,
    /// The session still needs its second factor.
    MfaRequired,
    /// The action needs a recent re-authentication.
    ReauthRequired,
    /// The request failed the CSRF checks.
    CsrfFailed,
    /// Too many requests.
    RateLimited,
    /// Malformed or invalid input.
    ValidationFailed,
    /// The new password is refused by the password policy.
    PasswordTooWeak,
    /// The body is not JSON.
    UnsupportedMediaType,
    /// The body is too large.
    PayloadTooLarge,
    /// No such resource.
    NotFound,
    /// The resource does not support this method.
    MethodNotAllowed,
    /// An account with this e-mail address exists.
    AccountExists,
    /// The last way to sign in cannot be removed.
    LastSignInMethod,
    /// The token is unknown, used or expired.
    InvalidToken,
    /// A dependency is down.
    ServiceUnavailable,
    /// Something failed on the server.
    Internal,
}

impl ErrorCode {
    /// The code as sent in the `code` member.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidCredentials => "invalid_credentials",
            Self::Unauthenticated => "unauthenticated",
            Self::MfaRequired => "mfa_required",
            Self::ReauthRequired => "reauth_required",
            Self::CsrfFailed => "csrf_failed",
            Self::RateLimited => "rate_limited",
            Self::ValidationFailed => "validation_failed",
            Self::PasswordTooWeak => "password_too_weak",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge => "payload_too_large",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::AccountExists => "account_exists",
            Self::LastSignInMethod => "last_sign_in_method",
            Self::InvalidToken => "invalid_token",
            Self::ServiceUnavailable => "service_unavailable",
            Self::Internal => "internal",
        }
    }

    /// The HTTP status this code is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidCredentials | Self::Unauthenticated | Self::MfaRequired => {
                StatusCode::UNAUTHORIZED
            }
            Self::ReauthRequired | Self::CsrfFailed => StatusCode::FORBIDDEN,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::ValidationFailed | Self::PasswordTooWeak | Self::InvalidToken => {
                StatusCode::BAD_REQUEST
            }
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::AccountExists | Self::LastSignInMethod => StatusCode::CONFLICT,
            Self::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short, fixed, human-readable summary.
    pub fn title(self) -> &'static str {
        match self {
            Self::InvalidCredentials => "The e-mail address or password is wrong.",
            Self::Unauthenticated => "You are not signed in.",
            Self::MfaRequired => "The second authentication factor is still required.",
            Self::ReauthRequired => "Confirm your password to continue.",
            Self::CsrfFailed => "The request failed cross-site request forgery checks.",
            Self::RateLimited => "Too many requests; try again later.",
            Self::ValidationFailed => "The request is malformed or invalid.",
            Self::PasswordTooWeak => "The password does not meet the password policy.",
            Self::UnsupportedMediaType => "The request body must be JSON (application/json).",
            Self::PayloadTooLarge => "The request body is too large.",
            Self::NotFound => "The resource does not exist.",
            Self::MethodNotAllowed => "The method is not allowed on this resource.",
            Self::AccountExists => "An account with this e-mail address already exists.",
            Self::LastSignInMethod => "The last way to sign in cannot be removed.",
            Self::InvalidToken => "The token is invalid or expired.",
            Self::ServiceUnavailable => "The service is temporarily unavailable.",
            Self::Internal => "An internal error occurred.",
        }
    }

    /// The code for an error status produced outside authkit (a router, a body limit…).
    pub fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::UNAUTHORIZED => Self::Unauthenticated,
            StatusCode::FORBIDDEN => Self::CsrfFailed,
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::LENGTH_REQUIRED => Self::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            StatusCode::TOO_MANY_REQUESTS => Self::RateLimited,
            StatusCode::CONFLICT => Self::AccountExists,
            StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
            | StatusCode::REQUEST_TIMEOUT => Self::ServiceUnavailable,
            s if s.is_client_error() => Self::ValidationFailed,
            _ => Self::Internal,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "type": "urn:authkit:problem:invalid_credentials",
    "title": "The e-mail address or password is wrong.",
    "status": 401,
    "code": "invalid_credentials",
    "request_id": "5f1c0a6e2b7d4c1a-42"
}))]
pub struct Problem {
    /// `urn:authkit:problem:<code>`.
    #[serde(rename = "type")]
    pub r#type: String,
    /// A fixed summary of the code.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// The stable error code.
    pub code: ErrorCode,
    /// The id of the request, for support and logs.
    pub request_id: String,
    /// A safe, more specific explanation (never internal details).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Per-field reasons for `validation_failed` and `password_too_weak`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Seconds until a retry may succeed (also sent as `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem for `code` in the request `request_id`.
    pub fn new(code: ErrorCode, request_id: &RequestId) -> Self {
        Self {
            r#type: format!("urn:authkit:problem:{}", code.as_str()),
            title: code.title().to_owned(),
            status: code.status().as_u16(),
            code,
            request_id: request_id.as_str().to_owned(),
            detail: None,
            reason: None,
            retry_after: None,
        }
    }

    /// Adds a client-safe explanation.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds a reason (which rule failed).
    #[must_use]
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Adds `Retry-After`.
    #[must_use]
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Renders the response: problem+json body, `Cache-Control: no-store`, the request id.
    pub fn into_response(self) -> Response<Body> {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| {
            br#"{"type":"urn:authkit:problem:internal","title":"An internal error occurred.","status":500,"code":"internal","request_id":""}"#.to_vec()
        });
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            headers.insert(super::REQUEST_ID_HEADER, v);
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.code == ErrorCode::Unauthenticated || self.code == ErrorCode::MfaRequired {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Cookie"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_contract() {
        let table = [
            (ErrorCode::InvalidCredentials, 401),
            (ErrorCode::Unauthenticated, 401),
            (ErrorCode::MfaRequired, 401),
            (ErrorCode::ReauthRequired, 403),
            (ErrorCode::CsrfFailed, 403),
            (ErrorCode::RateLimited, 429),
            (ErrorCode::ValidationFailed, 400),
            (ErrorCode::PasswordTooWeak, 400),
            (ErrorCode::InvalidToken, 400),
            (ErrorCode::AccountExists, 409),
            (ErrorCode::LastSignInMethod, 409),
            (ErrorCode::UnsupportedMediaType, 415),
            (ErrorCode::PayloadTooLarge, 413),
            (ErrorCode::NotFound, 404),
            (ErrorCode::MethodNotAllowed, 405),
            (ErrorCode::ServiceUnavailable, 503),
            (ErrorCode::Internal, 500),
        ];
        for (code, status) in table {
            assert_eq!(code.status().as_u16(), status, "{code}");
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }

    #[test]
    fn renders_rfc9457_with_request_id() {
        let id = RequestId::from_header_value("req-1").unwrap();
        let resp = Problem::new(ErrorCode::RateLimited, &id)
            .with_retry_after(30)
            .into_response();
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "30");
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
    }
}
