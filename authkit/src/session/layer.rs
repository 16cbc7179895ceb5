use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use http::{HeaderValue, Request, Response, header};
use tower::{Layer, Service};
use tower_cookies::Cookies;

use super::handle::Session;
use super::manager::{Liveness, SessionManager};
use super::token::SessionToken;
use crate::client::client_meta;
use crate::error::{ErrorCode, Problem, RequestId};

/// Loads the request's session and puts a [`Session`] into its extensions.
///
/// Needs `tower_cookies::CookieManagerLayer` outside it ([`AuthLayer`](crate::AuthLayer)
/// installs both).
#[derive(Debug, Clone)]
pub struct SessionLayer {
    manager: SessionManager,
}

impl SessionLayer {
    /// A layer over `manager`.
    pub fn new(manager: SessionManager) -> Self {
        Self { manager }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            manager: self.manager.clone(),
        }
    }
}

/// The service made by [`SessionLayer`].
#[derive(Debug, Clone)]
pub struct SessionService<S> {
    inner: S,
    manager: SessionManager,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, ResBody> Service<Request<B>> for SessionService<S>
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

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The clone that was polled ready is the one that serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let manager = self.manager.clone();
        Box::pin(async move {
            let Some(cookies) = req.extensions().get::<Cookies>().cloned() else {
                tracing::error!(
                    "authkit SessionLayer needs tower_cookies::CookieManagerLayer outside it; use authkit::AuthLayer"
                );
                let id = RequestId::from_headers(req.headers());
                return Ok(Problem::new(ErrorCode::Internal, &id).into_response());
            };
            let presented = cookies
                .get(&manager.config().cookie.full_name())
                .map(|c| c.value().to_owned());
            let mut loaded = None;
            let mut stale = false;
            if let Some(value) = &presented {
                match SessionToken::parse(value) {
                    None => stale = true,
                    Some(token) => {
                        let hash = token.hash();
                        match manager.load(&hash).await {
                            Err(e) => {
                                // Fail closed: without the store we cannot tell a revoked
                                // session from a live one.
                                let id = RequestId::from_headers(req.headers());
                                tracing::error!(request_id = %id, error = %e, "session store unavailable");
                                return Ok(Problem::new(ErrorCode::ServiceUnavailable, &id)
                                    .into_response());
                            }
                            Ok(None) => stale = true,
                            Ok(Some(s)) => {
                                let now = manager.clock().now();
                                match manager.liveness(&s, now) {
                                    Liveness::Live => {
                                        manager.touch(&s, now).await;
                                        loaded = Some(s);
                                    }
                                    Liveness::Expired => {
                                        if let Err(e) = manager.revoke(&hash).await {
                                            tracing::warn!(error = %e, "could not delete an expired session");
                                        }
                                        stale = true;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            let meta = client_meta(&req);
            let session = Session::new(manager, cookies, meta, loaded);
            if stale {
                session.clear();
            }
            req.extensions_mut().insert(session.clone());

            let Ok(response) = inner.call(req).await;
            let mut response = response.map(Body::new);
            // SECURITY.md #7: nothing that depends on the session may be cached.
            if (presented.is_some() || session.changed())
                && !response.headers().contains_key(header::CACHE_CONTROL)
            {
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            Ok(response)
        })
    }
}
