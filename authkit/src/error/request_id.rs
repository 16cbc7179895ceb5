use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderName;

/// The header that carries the request id in and out.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The id of one request, as shown in error bodies and logs.
///
/// Taken from an incoming `X-Request-Id` when it is short printable ASCII (set by a proxy or an
/// outer layer), else generated: a random per-process prefix and a counter, which is unique
/// across instances and costs no system call per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// The id from a header value, if it is 1–128 visible ASCII characters.
    pub fn from_header_value(value: &str) -> Option<Self> {
        let ok =
            !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| Self(value.to_owned()))
    }

    /// The id of `headers`' request id, or a new one.
    pub fn from_headers(headers: &http::HeaderMap) -> Self {
        headers
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(Self::from_header_value)
            .unwrap_or_else(Self::generate)
    }

    /// A fresh id.
    pub fn generate() -> Self {
        static PREFIX: OnceLock<String> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let prefix = PREFIX.get_or_init(|| {
            let mut bytes = [0u8; 8];
            // A failed read only makes ids less unique across processes; they are not secrets.
            let _ = getrandom::fill(&mut bytes);
            crate::util::hex_lower(&bytes)
        });
        Self(format!(
            "{prefix}-{}",
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_safe_incoming_ids_and_replaces_unsafe_ones() {
        let mut h = http::HeaderMap::new();
        h.insert(REQUEST_ID_HEADER, "abc-123".parse().unwrap());
        assert_eq!(RequestId::from_headers(&h).as_str(), "abc-123");
        h.insert(REQUEST_ID_HEADER, "has space".parse().unwrap());
        assert_ne!(RequestId::from_headers(&h).as_str(), "has space");
        assert_ne!(RequestId::generate(), RequestId::generate());
    }
}
