//! The OpenAPI description of the auth endpoints.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::dto::{
    AuditEventView, AuditPage, ChangePassword, Credentials, CsrfTokenView, EmailOnly, MfaRequired,
    Reauthenticate, ResendBody, ResetPassword, SessionList, SessionView, StatusView, TokenBody,
    UserSession, UserView,
};
use super::dto::{BackupCodesView, MfaEnrolment, MfaStatus, MfaVerified, SecondFactor};
use super::oauth::{LinkRequest, LinkStarted, LinkedAccountList, LinkedAccountView};
use super::{account, handlers, mfa, oauth};
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
        account::verify_email,
        account::resend_verification,
        account::forgot_password,
        account::reset_password,
        account::audit_events,
        mfa::enable,
        mfa::verify,
        mfa::disable,
        mfa::regenerate_backup_codes,
        mfa::status,
        oauth::start,
        oauth::callback,
        oauth::link,
        oauth::accounts,
        oauth::unlink,
    ),
    components(schemas(
        Credentials, Reauthenticate, ChangePassword, UserView, SessionView, UserSession,
        MfaRequired, SessionList, CsrfTokenView, Problem, ErrorCode, Aal, EmailOnly, ResendBody,
        TokenBody, ResetPassword, StatusView, AuditEventView, AuditPage, SecondFactor,
        MfaEnrolment, BackupCodesView, MfaStatus, MfaVerified, LinkRequest, LinkStarted,
        LinkedAccountList, LinkedAccountView
    )),
    modifiers(&CookieScheme),
    tags(
        (name = "auth", description = "Sign-up, sign-in, sign-out and credentials"),
        (name = "sessions", description = "Listing and revoking the user's sessions"),
        (name = "account", description = "E-mail verification, password reset and the audit trail"),
        (name = "mfa", description = "Two-factor authentication: TOTP enrolment, the second sign-in step, backup codes"),
        (name = "oauth", description = "Sign-in with OAuth 2 / OpenID Connect providers and linked accounts"),
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
