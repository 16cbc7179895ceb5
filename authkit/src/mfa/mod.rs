//! Second factor core: TOTP (RFC 6238), `otpauth://` URIs, QR codes and backup codes.
//!
//! Nothing here talks to a database or to HTTP: the store keeps what [`TotpSecret::seal`] and
//! [`BackupCodeHasher::hash`] produce plus the last accepted time step, and the endpoints call
//! [`TotpConfig::check`] with the server's clock.
//!
//! # TOTP (SECURITY.md #23–#25)
//!
//! - **Parameters.** 30-second steps from T0 = 0, 6 digits, HMAC-SHA1 by default, because that
//!   is what every authenticator app implements (several silently ignore `algorithm=`).
//!   [`TotpConfig`] allows 6–8 digits, SHA-256/SHA-512 and 15–300 s steps for deployments that
//!   control the apps.
//! - **Window.** [`TotpConfig::check`] accepts the current step and one step either side
//!   (the MISSION contract; `steps_back`/`steps_ahead`, at most 2 each). RFC 6238 §5.2
//!   recommends allowing at most one step back for network delay and typing time; one step
//!   ahead tolerates a phone clock that runs a little fast. A5 6.5.5 asks for a ≤30 s code
//!   lifetime, which any usable window exceeds: the replay rule below, not a shorter window,
//!   is what stops a seen code from being used again.
//! - **Replay.** The caller stores the last accepted step; a code is accepted only for a step
//!   strictly greater than it, otherwise the result is [`TotpCheck::Reused`] so that the
//!   caller can audit the replay and notify the user. A code accepted for step T+1 (fast phone)
//!   therefore ends the acceptance of the code for step T too, which is harmless: the user
//!   simply waits for the next code.
//! - **Timing.** Every candidate step's code is computed and compared in constant time
//!   (`subtle`), with no early exit, so the response time does not say which step matched.
//! - **Time** comes only from the `now` the caller passes (the server clock, see
//!   [`crate::clock`]), never from the client.
//! - **Secrets** are 20–64 bytes from the injected CSPRNG ([`TotpSecret::generate`]), stored
//!   only sealed with the encryption key ring, bound to the user ([`TotpSecret::seal`]).
//!
//! # Backup codes (SECURITY.md #26)
//!
//! Each [`BackupCode`] carries 120 random bits, written as 24 Crockford base32 symbols in six
//! groups of four (`7k3m-…`): short enough to type, with the confusable letters folded on
//! input. At ≥112 bits a guess-resistant slow hash buys nothing (N3 §5.1.2.2, A5 6.5.2), so
//! [`BackupCodeHasher`] stores a keyed HMAC-SHA256 under the pepper key ring instead: a leaked
//! table is useless without the pepper, verification is cheap, and the user id is bound into
//! the hash so a row copied to another account does not verify.
//!
//! # Secret hygiene
//!
//! TOTP secrets, TOTP codes and backup codes live only in types whose `Debug` prints
//! `[REDACTED]` and which are wiped on drop ([`TotpSecret`], [`TotpCode`], [`BackupCode`],
//! [`OtpAuth`]). They leave those types only through [`TotpSecret::expose`],
//! [`TotpSecret::to_base32`], [`TotpConfig::otpauth_uri`] (whose output is a
//! [`Zeroizing`](zeroize::Zeroizing) string) and the `as_str` accessors the caller needs to
//! show a code once. No error here carries any of them. The QR images necessarily encode the
//! secret: send them to the user once, never log or cache them.

mod backup;
// `MfaConfig` (the auth service's MFA settings) is written with the endpoints, in config.rs.
mod config;
mod otpauth;
mod qr;
mod totp;

pub use backup::{BACKUP_CODE_COUNT, BackupCode, BackupCodeHasher, generate_backup_codes};
pub use config::MfaConfig;
pub use otpauth::{MAX_OTPAUTH_URI_LEN, OtpAuth, parse_otpauth_uri};
pub use qr::{qr_png_data_uri, qr_svg};
pub use totp::{CodeError, TotpAlgorithm, TotpCheck, TotpCode, TotpConfig, TotpSecret};

/// Why an MFA operation failed. Never carries a secret, a code or user input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MfaError {
    /// A configuration value (or an argument checked like one) is out of range.
    #[error("invalid MFA configuration: {0}")]
    Config(&'static str),
    /// The random source failed.
    #[error("the random number generator failed")]
    Random,
    /// Sealing or opening a stored secret failed.
    #[error("sealed TOTP secret: {0}")]
    Crypto(#[from] crate::crypto::CryptoError),
    /// The text is not an `otpauth://totp/` URI this module accepts.
    #[error("not a valid otpauth URI")]
    InvalidUri,
    /// The data does not fit in a QR code, or the image could not be encoded.
    #[error("the QR code could not be built")]
    Qr,
}
