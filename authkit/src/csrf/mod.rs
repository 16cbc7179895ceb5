//! CSRF protection for cookie-authenticated APIs (SECURITY.md #12–#14).
//!
//! For unsafe methods (everything but `GET`, `HEAD`, `OPTIONS`, `TRACE`), [`CsrfLayer`]:
//! 1. refuses the content types an HTML form can send without a preflight
//!    (`application/x-www-form-urlencoded`, `multipart/form-data`, `text/plain`) with 415;
//! 2. with `Sec-Fetch-Site`: allows `same-origin` and `none`, allows `same-site` only when
//!    `Origin` is in the allow-list, refuses `cross-site`;
//! 3. without it, checks `Origin` (or else `Referer`) against the allow-list;
//! 4. with no browser header at all, passes requests without a session cookie (nothing to
//!    forge) and demands a session-bound `X-CSRF-Token` from those with one.
//!
//! Tokens are `v1.<kid>.<HMAC-SHA256(key, sha256(session token))>`: bound to one session,
//! signed with the session key ring (so rotating the key breaks no token until the old key is
//! retired), compared in constant time. Clients get one from `GET /api/v1/auth/csrf`.

mod layer;
mod origin;
mod token;

pub use layer::{CsrfConfig, CsrfLayer, CsrfService};
pub use origin::{Origin, OriginError};
pub use token::{CSRF_HEADER, CsrfTokens};
