//! Errors at the HTTP edge: one mapping to RFC 9457 `application/problem+json`.
//!
//! Every module has its own `thiserror` enum; each converts into an [`ErrorCode`], and
//! [`Problem`] renders it as `{type, title, status, code, request_id}`. Client mistakes are
//! answered precisely; internal failures get the generic `internal` body while their cause is
//! logged with the request id (SECURITY.md #38).

mod problem;
mod request_id;

pub use problem::{ErrorCode, PROBLEM_CONTENT_TYPE, Problem};
pub use request_id::{REQUEST_ID_HEADER, RequestId};

/// An error and its sources on one line (`outer: inner: innermost`), for logs and command
/// output. Errors of this crate never carry secret values, so neither does this text.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
