//! [`AuthLayer`]: cookies, CSRF and sessions in one layer.

use tower::Layer;
use tower_cookies::{CookieManager, CookieManagerLayer};

use crate::csrf::{CsrfConfig, CsrfLayer, CsrfService, CsrfTokens};
use crate::session::{SessionLayer, SessionManager, SessionService};

/// The layer an app installs once: parses cookies (`tower-cookies`), applies the CSRF checks,
/// then loads the session. Order matters: a forged request is refused before any session
/// work, and the cookie manager sees every `Set-Cookie` the session makes.
///
/// The wrapped service must be `Clone + Send + 'static` with `Error = Infallible` (as axum
/// routers are); map a fallible stack's errors to responses before this layer (for example
/// with `tower::util::MapErr` or axum's `HandleErrorLayer`). Responses come back with
/// [`Body`](crate::Body) bodies.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    sessions: SessionManager,
    csrf: CsrfLayer,
}

impl AuthLayer {
    pub(crate) fn new(sessions: SessionManager, csrf: CsrfConfig, tokens: CsrfTokens) -> Self {
        Self {
            sessions,
            csrf: CsrfLayer::new(csrf, tokens),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = CookieManager<CsrfService<SessionService<S>>>;

    fn layer(&self, inner: S) -> Self::Service {
        let session = SessionLayer::new(self.sessions.clone()).layer(inner);
        CookieManagerLayer::new().layer(self.csrf.layer(session))
    }
}
