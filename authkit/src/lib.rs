//! # authkit
//!
//! Framework-agnostic auth for Rust web services, as `tower` layers and services:
//! httpOnly cookie sessions, CSRF protection, password login (argon2id), e-mail verification
//! and password reset over a durable mail queue, rate limits and lockout, and an audit trail,
//! on SQLite, PostgreSQL or memory. Tokens never travel in response bodies.
//!
//! ```no_run
//! use authkit::{AuthKit, CurrentUser, secrets::LocalSecrets};
//! use axum::{Router, routing::get};
//!
//! async fn portfolio(user: CurrentUser) -> String {
//!     format!("portfolio of {}", user.id)
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mailer = authkit::mail::SmtpMailer::from_url("smtps://mail.example.org", "Acme <no-reply@example.org>")?;
//! let auth = AuthKit::builder()
//!     .database("sqlite://authkit.db?mode=rwc").await?
//!     .secrets(LocalSecrets::new("./.authkit/secrets")).await?
//!     // Mails are queued in the same database and sent by background workers; without a
//!     // mailer, registration is one-step (`instant`) and no mail is sent.
//!     .mailer(std::sync::Arc::new(mailer), authkit::mail::LinkBase::parse("https://app.example.org")?)
//!     .build().await?;
//! let app: Router = Router::new()
//!     .route("/portfolio", get(portfolio))
//!     .nest_service("/api/v1/auth", auth.service())
//!     .layer(auth.layer());
//! # Ok(()) }
//! ```
//!
//! ## Parts
//! - [`session`]: the session layer, tokens, timeouts and rotation;
//! - [`csrf`]: Fetch Metadata / Origin checks and session-bound tokens;
//! - [`password`]: argon2id off the executor, the password policy, legacy hash upgrade;
//! - [`account`]: registration modes, e-mail verification and reset tokens, the mail outbox;
//! - [`ratelimit`]: per-address quotas, account lockout with back-off, device cookies;
//! - [`audit`]: the security event trail;
//! - [`mail`], [`jobs`], [`crypto`]: mail delivery, the durable job queue, sealed payloads;
//! - [`store`]: SQL and in-memory persistence;
//! - [`secrets`]: where keys come from;
//! - [`service`]: the auth endpoints and their OpenAPI description;
//! - [`clock`], [`rng`]: injected time and randomness.
//!
//! Without axum, use [`AuthLayer`], [`AuthService`] and [`RequireAuthLayer`] as plain tower
//! types (see `examples/hyper-bare`): mount the service under `/api/v1/auth` by stripping that
//! prefix, and insert [`ClientIp`] into request extensions so that sessions record the client
//! address (with axum, `ConnectInfo<SocketAddr>` is used automatically).
//!
//! ## Features
//! - `axum` (default): the [`CurrentUser`] and [`RequireAal2`] extractors. axum itself is always
//!   a dependency: the auth service is an axum router inside and [`Body`] is axum's body type;
//!   your app does not need to use axum for anything.
//! - `test-util`: [`rng::SeededRandom`] for reproducible tests.
//!
//! ## Deployment caveats
//! - Serve over HTTPS in production and set [`CookieConfig::secure`](session::CookieConfig):
//!   it turns on `Secure` and the `__Host-` prefix.
//! - List your frontends' origins in [`AuthKitBuilder::allowed_origins`]; unsafe requests from
//!   anywhere else are refused.
//! - `docs/security.md` explains every default and its reason.

#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod account;
pub mod audit;
pub mod client;
pub mod clock;
pub mod crypto;
pub mod csrf;
pub mod error;
#[cfg(feature = "axum")]
mod extract;
pub mod jobs;
mod kit;
mod layer;
pub mod mail;
pub mod mfa;
pub mod oauth;
pub mod password;
pub mod ratelimit;
mod require;
pub mod rng;
pub mod secret;
pub mod secrets;
pub mod service;
pub mod session;
pub mod store;
pub mod user;
mod util;

/// The response body type of authkit's layers and services.
pub use axum::body::Body;
pub use client::ClientIp;
pub use csrf::Origin;
pub use error::{ErrorCode, Problem};
#[cfg(feature = "axum")]
pub use extract::{CurrentUser, RequireAal2};
pub use kit::{AuthKit, AuthKitBuilder, BuildError, KeyChanges, KeyRotationError};
pub use layer::AuthLayer;
pub use require::{RequireAuth, RequireAuthLayer};
pub use service::AuthService;
pub use session::{AuthenticatedSession, PendingSession, Session, SessionState};
