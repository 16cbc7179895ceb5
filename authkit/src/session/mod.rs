//! Cookie sessions as a tower layer.
//!
//! [`SessionLayer`] reads the session cookie (through `tower-cookies`), loads the session via an
//! in-process `moka` cache over the [`SessionStore`](crate::store::SessionStore), enforces the
//! idle and absolute timeouts, and puts a [`Session`] handle into the request extensions.
//! Handlers read the [`SessionState`]: anonymous, [`PendingSession`] (password done, second
//! factor missing) or [`AuthenticatedSession`]. The two authenticated states are different
//! types, so code that needs a signed-in user cannot be handed a pending one by mistake.
//!
//! Tokens are 256 random bits; the store only ever sees their SHA-256 ([`SessionIdHash`]).
//! Every sign-in or re-authentication rotates the token ([`Session::login`],
//! [`Session::reauthenticated`]); revocation deletes the stored row and evicts the cache entry,
//! so it applies on the session's next request.
//!
//! # Deployment caveats
//! The cache is per process. A session revoked through another instance is refused here once
//! its cache entry expires ([`SessionConfig::cache_ttl`], 1 s by default).

mod config;
mod handle;
mod layer;
mod manager;
mod record;
mod token;

pub use config::{CookieConfig, SessionConfig};
pub use handle::{
    AuthenticatedSession, PendingSession, Session, SessionError, SessionRejection, SessionState,
};
pub use layer::{SessionLayer, SessionService};
pub use manager::{ClientMeta, SessionManager};
pub use record::{Aal, SessionKind, SessionRecord};
pub use token::{SessionIdHash, SessionToken, TOKEN_BYTES, TOKEN_TEXT_LEN};
