//! Who sent a request: client address and user agent.

use std::net::{IpAddr, SocketAddr};

use http::{Request, header};

use crate::session::ClientMeta;

/// The client's address, as resolved by the server (e.g. after trusted-proxy handling).
/// When absent, authkit falls back to axum's `ConnectInfo<SocketAddr>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

pub(crate) fn client_ip<B>(req: &Request<B>) -> Option<IpAddr> {
    req.extensions().get::<ClientIp>().map(|c| c.0).or_else(|| {
        req.extensions()
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
    })
}

pub(crate) fn client_meta<B>(req: &Request<B>) -> ClientMeta {
    ClientMeta {
        ip: client_ip(req),
        user_agent: req.headers().get(header::USER_AGENT).cloned(),
    }
}
