//! Small HTTP middlewares of the reference server.

use std::net::{IpAddr, SocketAddr};

use authkit::error::{PROBLEM_CONTENT_TYPE, Problem, RequestId};
use authkit::{ClientIp, ErrorCode};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

/// SECURITY.md #37: headers for a JSON API on every response; HSTS only in production.
pub(crate) async fn security_headers(
    State(production): State<bool>,
    req: Request,
    next: Next,
) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    let fixed: [(&str, &str); 6] = [
        ("x-content-type-options", "nosniff"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-site"),
    ];
    for (name, value) in fixed {
        h.insert(name, HeaderValue::from_static(value));
    }
    if production {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        );
    }
    h.remove(header::SERVER);
    // SECURITY.md #37 (A4 14.4.1): an explicit charset on every JSON body.
    let json_type = match h.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes) {
        Some(b"application/json") => Some("application/json; charset=utf-8"),
        Some(b"application/problem+json") => Some("application/problem+json; charset=utf-8"),
        _ => None,
    };
    if let Some(value) = json_type {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
    }
    response
}

/// Errors made outside authkit (body limit, timeout, a router's 405) come with an empty or
/// plain body; give them the same problem+json shape as every other error.
pub(crate) async fn problem_for_bare_errors(req: Request, next: Next) -> Response {
    let request_id = RequestId::from_headers(req.headers());
    let response = next.run(req).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_CONTENT_TYPE.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let code = ErrorCode::from_status(status);
    let (parts, _) = response.into_parts();
    let mut rendered = Problem::new(code, &request_id).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rendered.headers_mut().append(name.clone(), value.clone());
        }
    }
    rendered
}

/// Sets [`ClientIp`]: the peer address, or — when the peer is a trusted proxy — the last
/// address in `X-Forwarded-For` that is not itself a trusted proxy.
pub(crate) async fn resolve_client_ip(
    State(trusted): State<std::sync::Arc<[IpNet]>>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = peer.map(|peer| client_ip(peer, req.headers(), &trusted)) {
        req.extensions_mut().insert(ClientIp(ip));
    }
    next.run(req).await
}

fn client_ip(peer: IpAddr, headers: &axum::http::HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    hops.into_iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

/// The tracing span of a request: method, path and request id; never headers or cookies.
pub(crate) fn request_span(req: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = axum::http::HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 10.0.0.7".parse().unwrap());
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &h, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(stranger, &h, &trusted), stranger);
        assert_eq!(
            client_ip(proxy, &axum::http::HeaderMap::new(), &trusted),
            proxy
        );
    }
}
