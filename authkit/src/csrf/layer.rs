use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use tower::{Layer, Service};
use tower_cookies::Cookies;

use super::origin::Origin;
use super::token::{CSRF_HEADER, CsrfTokens};
use crate::error::{ErrorCode, Problem, RequestId};
use crate::session::SessionToken;

/// What the CSRF layer allows.
#[derive(Debug, Clone)]
pub struct CsrfConfig {
    /// Origins whose unsafe requests are accepted (the public URL's origin and the frontends).
    pub allowed_origins: HashSet<Origin>,
    /// Name of the session cookie (to know whether a header-less request carries a session).
    pub session_cookie: String,
}

/// The CSRF layer; see the [module docs](crate::csrf).
#[derive(Debug, Clone)]
pub struct CsrfLayer {
    config: Arc<CsrfConfig>,
    tokens: CsrfTokens,
}

impl CsrfLayer {
    /// A layer with `config`, verifying tokens with `tokens`.
    pub fn new(config: CsrfConfig, tokens: CsrfTokens) -> Self {
        Self {
            config: Arc::new(config),
            tokens,
        }
    }
}

impl<S> Layer<S> for CsrfLayer {
    type Service = CsrfService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CsrfService {
            inner,
            config: Arc::clone(&self.config),
            tokens: self.tokens.clone(),
        }
    }
}

/// The service made by [`CsrfLayer`].
#[derive(Debug, Clone)]
pub struct CsrfService<S> {
    inner: S,
    config: Arc<CsrfConfig>,
    tokens: CsrfTokens,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pass,
    Forbidden(&'static str),
    SimpleContentType,
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Content types an HTML form (or `fetch` without preflight) can send cross-site.
fn is_simple_content_type(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONTENT_TYPE).iter().any(|v| {
        let essence = v.to_str().map(|s| {
            s.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
        match essence {
            Ok(e) => matches!(
                e.as_str(),
                "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
            ),
            // Unreadable content type: treat as the worst case.
            Err(_) => true,
        }
    })
}

impl<S> CsrfService<S> {
    fn allowed(&self, origin: Option<Origin>) -> bool {
        origin.is_some_and(|o| self.config.allowed_origins.contains(&o))
    }

    fn header_origin(headers: &HeaderMap) -> Option<Option<Origin>> {
        headers
            .get(header::ORIGIN)
            .map(|v| v.to_str().ok().and_then(|s| Origin::parse(s).ok()))
    }

    fn check<B>(&self, req: &Request<B>) -> Verdict {
        if is_safe(req.method()) {
            return Verdict::Pass;
        }
        let headers = req.headers();
        if is_simple_content_type(headers) {
            return Verdict::SimpleContentType;
        }
        if let Some(site) = headers.get("sec-fetch-site") {
            return match site.as_bytes() {
                b"same-origin" | b"none" => Verdict::Pass,
                b"same-site" if self.allowed(Self::header_origin(headers).flatten()) => {
                    Verdict::Pass
                }
                b"same-site" => Verdict::Forbidden("same-site request from an origin not allowed"),
                b"cross-site" => Verdict::Forbidden("cross-site request"),
                _ => Verdict::Forbidden("unrecognised Sec-Fetch-Site"),
            };
        }
        if let Some(origin) = Self::header_origin(headers) {
            return if self.allowed(origin) {
                Verdict::Pass
            } else {
                Verdict::Forbidden("Origin not allowed")
            };
        }
        if let Some(referer) = headers.get(header::REFERER) {
            let origin = referer.to_str().ok().and_then(Origin::of_url);
            return if self.allowed(origin) {
                Verdict::Pass
            } else {
                Verdict::Forbidden("Referer origin not allowed")
            };
        }
        // No browser headers. Without a session cookie there is nothing to forge; with one,
        // the client must prove it read a token bound to that session.
        let session = req
            .extensions()
            .get::<Cookies>()
            .and_then(|c| c.get(&self.config.session_cookie))
            .and_then(|c| SessionToken::parse(c.value()));
        let Some(session) = session else {
            return Verdict::Pass;
        };
        let token = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        match token {
            Some(t) if self.tokens.verify(t, &session.hash()) => Verdict::Pass,
            Some(_) => Verdict::Forbidden("invalid X-CSRF-Token"),
            None => Verdict::Forbidden("missing X-CSRF-Token"),
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, ResBody> Service<Request<B>> for CsrfService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let verdict = self.check(&req);
        let rejection = match verdict {
            Verdict::Pass => None,
            Verdict::Forbidden(why) => Some((ErrorCode::CsrfFailed, why)),
            Verdict::SimpleContentType => Some((
                ErrorCode::UnsupportedMediaType,
                "form and text bodies are refused",
            )),
        };
        if let Some((code, why)) = rejection {
            let id = RequestId::from_headers(req.headers());
            tracing::info!(request_id = %id, method = %req.method(), reason = why, "request refused by CSRF checks");
            let mut response = Problem::new(code, &id).into_response();
            add_vary(response.headers_mut());
            return Box::pin(async move { Ok(response) });
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let Ok(response) = inner.call(req).await;
            let mut response = response.map(Body::new);
            add_vary(response.headers_mut());
            Ok(response)
        })
    }
}

/// SECURITY.md #12: caches must key on the headers the decision used.
fn add_vary(headers: &mut HeaderMap) {
    headers.append(
        header::VARY,
        HeaderValue::from_static("Sec-Fetch-Site, Origin"),
    );
}
