//! The OpenAPI description of the auth endpoints.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::dto::{
    ChangePassword, Credentials, CsrfTokenView, MfaRequired, Reauthenticate, SessionList,
    SessionView, UserSession, UserView,
};
use super::handlers;
use crate::error::{ErrorCode, Problem};
use crate::session::Aal;

/// The auth endpoints, with paths relative to where the service is mounted. Use
/// [`AuthKit::openapi`](crate::AuthKit::openapi) for the document mounted at `/api/v1/auth`.
#[derive(OpenApi, Debug)]
#[openapi(
    paths(
        handlers::register,
        handlers::login,
        handlers::logout,
        handlers::current_session,
        handlers::list_sessions,
        handlers::revoke_session,
        handlers::revoke_other_sessions,
        handlers::reauthenticate,
        handlers::change_password,
        handlers::csrf_token,
    ),
    components(schemas(
        Credentials, Reauthenticate, ChangePassword, UserView, SessionView, UserSession,
        MfaRequired, SessionList, CsrfTokenView, Problem, ErrorCode, Aal
    )),
    modifiers(&CookieScheme),
    tags(
        (name = "auth", description = "Sign-up, sign-in, sign-out and credentials"),
        (name = "sessions", description = "Listing and revoking the user's sessions"),
    )
)]
pub struct AuthApi;

struct CookieScheme;

impl Modify for CookieScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "__Host-authkit_session",
                "HttpOnly session cookie (`authkit_session` over plain http in development). \
                 Unsafe requests also pass CSRF checks: browser Origin/Sec-Fetch-Site, or an \
                 X-CSRF-Token header from GET /csrf for clients that send neither.",
            ))),
        );
    }
}
