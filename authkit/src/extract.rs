//! axum extractors (feature `axum`).

use axum::extract::FromRequestParts;
use axum::response::Response;
use http::request::Parts;

use crate::error::{ErrorCode, Problem, RequestId};
use crate::session::{AuthenticatedSession, Session};
use crate::user::UserId;

/// The signed-in user of a fully authenticated session. Rejects with 401 problem+json
/// (`unauthenticated`, or `mfa_required` for a pending session).
///
/// ```no_run
/// use authkit::CurrentUser;
/// async fn portfolio(user: CurrentUser) -> String {
///     format!("portfolio of {}", user.id)
/// }
/// ```
#[derive(Debug, Clone)]
pub struct CurrentUser {
    /// The user's id.
    pub id: UserId,
    /// The session.
    pub session: AuthenticatedSession,
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = Session::from_request_parts(parts, state).await?;
        match session.authenticated() {
            Ok(s) => Ok(Self {
                id: s.user_id().clone(),
                session: s,
            }),
            Err(rejection) => {
                let id = RequestId::from_headers(&parts.headers);
                Err(Problem::new(rejection.code(), &id).into_response())
            }
        }
    }
}

/// Like [`CurrentUser`] but also requires a second factor (`aal2`).
#[derive(Debug, Clone)]
pub struct RequireAal2(pub CurrentUser);

impl<S: Send + Sync> FromRequestParts<S> for RequireAal2 {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        if user.session.aal() >= crate::session::Aal::Aal2 {
            Ok(Self(user))
        } else {
            let id = RequestId::from_headers(&parts.headers);
            Err(Problem::new(ErrorCode::MfaRequired, &id).into_response())
        }
    }
}
