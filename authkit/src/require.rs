//! [`RequireAuthLayer`]: a framework-agnostic guard for protected routes.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use http::{Request, Response};
use tower::{Layer, Service};

use crate::error::{ErrorCode, Problem, RequestId};
use crate::session::{Aal, Session};

/// Refuses requests without a fully authenticated session (401 `unauthenticated`, or
/// `mfa_required` for a pending one) and puts the
/// [`AuthenticatedSession`](crate::session::AuthenticatedSession) into the extensions.
///
/// Use it on routes of apps that do not use axum extractors; with axum, the
/// [`CurrentUser`](crate::CurrentUser) extractor does the same per handler.
#[derive(Debug, Clone, Copy)]
pub struct RequireAuthLayer {
    min_aal: Aal,
}

impl RequireAuthLayer {
    /// Requires any full session.
    pub fn new() -> Self {
        Self { min_aal: Aal::Aal1 }
    }

    /// Requires a session that passed a second factor (`aal2`).
    pub fn aal2() -> Self {
        Self { min_aal: Aal::Aal2 }
    }
}

impl Default for RequireAuthLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for RequireAuthLayer {
    type Service = RequireAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireAuth {
            inner,
            min_aal: self.min_aal,
        }
    }
}

/// The service made by [`RequireAuthLayer`].
#[derive(Debug, Clone)]
pub struct RequireAuth<S> {
    inner: S,
    min_aal: Aal,
}

impl<S, B, ResBody> Service<Request<B>> for RequireAuth<S>
where
    S: Service<Request<B>, Response = Response<ResBody>, Error = Infallible> + Send,
    S::Future: Send + 'static,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let verdict = match req.extensions().get::<Session>() {
            None => {
                tracing::error!(
                    "RequireAuthLayer found no Session: install authkit::AuthLayer in front of it"
                );
                Err(ErrorCode::Internal)
            }
            Some(session) => match session.authenticated() {
                Ok(s) if s.aal() >= self.min_aal => Ok(s),
                Ok(_) => Err(ErrorCode::MfaRequired),
                Err(rejection) => Err(rejection.code()),
            },
        };
        match verdict {
            Ok(s) => {
                req.extensions_mut().insert(s);
                let fut = self.inner.call(req);
                Box::pin(async move {
                    let Ok(response) = fut.await;
                    Ok(response.map(Body::new))
                })
            }
            Err(code) => {
                let id = RequestId::from_headers(req.headers());
                let response = Problem::new(code, &id).into_response();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}
