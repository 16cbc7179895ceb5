//! Delivery over SMTP with lettre.
//!
//! Configured by one URL (`AUTHKIT_SMTP_URL`):
//!
//! | URL | connection | default port |
//! | --- | --- | --- |
//! | `smtps://host[:port]` | implicit TLS from the first byte (recommended) | 465 |
//! | `smtp://host[:port]?tls=starttls` | plain, then STARTTLS, which the server **must** offer | 587 |
//! | `smtp://host[:port]` | plain text, never upgraded | 25 |
//!
//! `?tls=required` is accepted as a synonym of `starttls` (lettre's spelling). Opportunistic
//! STARTTLS is deliberately not offered: it looks encrypted but an active attacker can strip it.
//! Plain `smtp://` is meant for a relay on the same machine or pod (`localhost`); the server warns
//! when it points anywhere else ([`SmtpMailer::host_is_loopback`]).
//!
//! Credentials go in the user-info part, percent-encoded: `smtps://user:p%40ss@host`. They are
//! refused on a plain connection to a non-loopback host, where they would cross the network in
//! clear text. TLS certificates are checked against the bundled Mozilla roots (`webpki-roots`).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};
use percent_encoding::percent_decode_str;
use secrecy::{ExposeSecret as _, SecretString};
use url::{Host, Url};

use super::build::{parse_from, prepare};
use super::{MailError, MailMessage, Mailer};
use crate::clock::{Clock, SystemClock};
use crate::rng::{OsRandom, RandomSource};

/// Default timeout for connecting and for each SMTP command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound on one whole delivery (connect, TLS, AUTH, envelope, DATA).
const TOTAL_TIMEOUT_FACTOR: u32 = 6;
/// Longest piece of a server reply kept in an error.
const MAX_REPLY_CHARS: usize = 200;

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://`: no encryption at all. Only sensible on loopback.
    Plain,
    /// `smtp://…?tls=starttls`: STARTTLS required; fails if the server does not offer it.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    ImplicitTls,
}

/// Why an SMTP URL or sender address was refused. Never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MailConfigError {
    /// The URL does not parse (its text is not repeated: it may hold a password).
    #[error("SMTP URL is not a valid URL")]
    InvalidUrl,
    /// The scheme is neither `smtp` nor `smtps`.
    #[error("SMTP URL scheme must be smtp or smtps, not {0:?}")]
    UnsupportedScheme(String),
    /// The URL has no host.
    #[error("SMTP URL has no host")]
    MissingHost,
    /// `tls=` has a value other than `starttls`/`required`, or is used with `smtps://`.
    #[error(
        "SMTP URL: unsupported tls mode {0:?} (use smtp://…?tls=starttls, or smtps:// for implicit TLS)"
    )]
    UnsupportedTls(String),
    /// A query parameter other than `tls`, or a path.
    #[error("SMTP URL: unsupported component {0:?}")]
    UnsupportedComponent(String),
    /// The user name or password is not valid percent-encoded UTF-8, or only one of them is set.
    #[error("SMTP URL: credentials must be user:password, percent-encoded UTF-8")]
    InvalidCredentials,
    /// Credentials on an unencrypted connection to another machine.
    #[error(
        "SMTP URL: refusing to send credentials over plain smtp:// to a non-loopback host; use smtps:// or ?tls=starttls"
    )]
    CredentialsWithoutTls,
    /// TLS parameters could not be built.
    #[error("SMTP TLS setup failed: {0}")]
    Tls(String),
    /// The sender address does not parse.
    #[error("mail sender address is not a valid mailbox")]
    InvalidFrom,
}

/// User name and password for SMTP AUTH. The password is kept as a secret; lettre holds its own
/// copy inside the transport for as long as the mailer lives.
struct SmtpCredentials {
    user: String,
    password: SecretString,
}

/// A [`Mailer`] that delivers through an SMTP server.
///
/// Each [`send`](Mailer::send) opens a connection, delivers one message and closes it: the
/// background worker sends rarely, and a fresh connection makes every retry independent.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    host: String,
    loopback: bool,
    port: u16,
    security: SmtpSecurity,
    credentials: Option<SmtpCredentials>,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn RandomSource>,
}

impl fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("authenticated", &self.credentials.is_some())
            .field("from", &self.from.email.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// A mailer for `url` (see the module documentation) sending as `from`
    /// (`no-reply@example.com` or `Acme <no-reply@example.com>`).
    pub fn from_url(url: &str, from: &str) -> Result<Self, MailConfigError> {
        let from = parse_from(from).ok_or(MailConfigError::InvalidFrom)?;
        let parsed = Url::parse(url).map_err(|_| MailConfigError::InvalidUrl)?;
        let security = security_of(&parsed)?;
        let (host, loopback) = host_of(&parsed)?;
        let port = parsed.port().unwrap_or(match security {
            SmtpSecurity::Plain => 25,
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::ImplicitTls => 465,
        });
        let credentials = credentials_of(&parsed)?;
        if credentials.is_some() && security == SmtpSecurity::Plain && !loopback {
            return Err(MailConfigError::CredentialsWithoutTls);
        }
        let transport =
            build_transport(&host, port, security, credentials.as_ref(), COMMAND_TIMEOUT)?;
        Ok(Self {
            transport,
            from,
            host,
            loopback,
            port,
            security,
            credentials,
            timeout: COMMAND_TIMEOUT,
            clock: Arc::new(SystemClock),
            rng: Arc::new(OsRandom),
        })
    }

    /// Replaces the clock that dates messages (the `Date` header).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the random source of `Message-ID`s.
    #[must_use]
    pub fn with_random(mut self, rng: Arc<dyn RandomSource>) -> Self {
        self.rng = rng;
        self
    }

    /// Sets the timeout for connecting and for each SMTP command (default 10 s); one whole
    /// delivery is bounded by six times this.
    pub fn with_timeout(mut self, timeout: Duration) -> Result<Self, MailConfigError> {
        self.transport = build_transport(
            &self.host,
            self.port,
            self.security,
            self.credentials.as_ref(),
            timeout,
        )?;
        self.timeout = timeout;
        Ok(self)
    }

    /// How the connection is protected.
    pub fn security(&self) -> SmtpSecurity {
        self.security
    }

    /// Whether mail (and any credentials) cross the connection unencrypted (`smtp://` without
    /// `tls=starttls`).
    pub fn is_plaintext(&self) -> bool {
        self.security == SmtpSecurity::Plain
    }

    /// Whether the server is on this machine (`localhost`, `127.0.0.0/8`, `::1`), where plain
    /// SMTP does not cross a network.
    pub fn host_is_loopback(&self) -> bool {
        self.loopback
    }

    /// The server's host name or address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

#[async_trait::async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, message: &MailMessage) -> Result<(), MailError> {
        let prepared = prepare(message, &self.from, self.clock.now(), self.rng.as_ref())?;
        let deadline = self.timeout.saturating_mul(TOTAL_TIMEOUT_FACTOR);
        let outcome = tokio::time::timeout(
            deadline,
            self.transport
                .send_raw(&prepared.envelope, prepared.bytes.as_slice()),
        )
        .await;
        match outcome {
            Ok(Ok(_response)) => {
                tracing::debug!(
                    kind = message.kind.as_str(),
                    recipient_domain = message.recipient_domain(),
                    "mail handed to the SMTP server"
                );
                Ok(())
            }
            Ok(Err(e)) => Err(classify(&e)),
            Err(_elapsed) => Err(MailError::Transient(format!(
                "SMTP delivery did not finish within {} s",
                deadline.as_secs()
            ))),
        }
    }
}

fn build_transport(
    host: &str,
    port: u16,
    security: SmtpSecurity,
    credentials: Option<&SmtpCredentials>,
    timeout: Duration,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailConfigError> {
    // The host as lettre connects to it: IPv6 literals without their URL brackets. It is also
    // the name the server's certificate must carry.
    let server = host.trim_start_matches('[').trim_end_matches(']');
    let tls_params =
        || TlsParameters::new(server.to_owned()).map_err(|e| MailConfigError::Tls(e.to_string()));
    let tls = match security {
        SmtpSecurity::Plain => Tls::None,
        SmtpSecurity::StartTls => Tls::Required(tls_params()?),
        SmtpSecurity::ImplicitTls => Tls::Wrapper(tls_params()?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server)
        .port(port)
        .tls(tls)
        .timeout(Some(timeout));
    if let Some(c) = credentials {
        builder = builder.credentials(Credentials::new(
            c.user.clone(),
            c.password.expose_secret().to_owned(),
        ));
    }
    Ok(builder.build())
}

/// 4xx and every connection problem are worth retrying; 5xx are final for this message.
fn classify(e: &lettre::transport::smtp::Error) -> MailError {
    let text = bounded(&e.to_string());
    if e.is_permanent() {
        MailError::Permanent(format!("SMTP server refused: {text}"))
    } else if e.is_transient() {
        MailError::Transient(format!("SMTP server deferred: {text}"))
    } else if e.is_timeout() {
        MailError::Transient(format!("SMTP timeout: {text}"))
    } else {
        // Network, TLS, protocol and client errors: a property of the connection or the
        // configuration, not of this message, so the worker should retry (and alert).
        MailError::Transient(format!("SMTP connection failed: {text}"))
    }
}

/// A server's reply is foreign text: keep it printable and short before it reaches logs.
fn bounded(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REPLY_CHARS)
        .collect();
    if text.chars().count() > MAX_REPLY_CHARS {
        out.push('…');
    }
    out
}

fn security_of(url: &Url) -> Result<SmtpSecurity, MailConfigError> {
    let mut tls: Option<String> = None;
    for (key, value) in url.query_pairs() {
        if key != "tls" || tls.is_some() {
            return Err(MailConfigError::UnsupportedComponent(bounded(&format!(
                "query parameter {key}"
            ))));
        }
        tls = Some(value.into_owned());
    }
    if !matches!(url.path(), "" | "/") {
        return Err(MailConfigError::UnsupportedComponent("path".into()));
    }
    if url.fragment().is_some() {
        return Err(MailConfigError::UnsupportedComponent("fragment".into()));
    }
    match (url.scheme(), tls.as_deref()) {
        ("smtp", None) => Ok(SmtpSecurity::Plain),
        ("smtp", Some("starttls" | "required")) => Ok(SmtpSecurity::StartTls),
        ("smtps", None) => Ok(SmtpSecurity::ImplicitTls),
        ("smtp" | "smtps", Some(mode)) => Err(MailConfigError::UnsupportedTls(bounded(mode))),
        (scheme, _) => Err(MailConfigError::UnsupportedScheme(bounded(scheme))),
    }
}

fn host_of(url: &Url) -> Result<(String, bool), MailConfigError> {
    match url.host() {
        None => Err(MailConfigError::MissingHost),
        Some(Host::Domain("")) => Err(MailConfigError::MissingHost),
        Some(Host::Domain(d)) => {
            // `smtp` is not a "special" scheme to `Url`: its hosts stay opaque text, neither
            // lower-cased nor parsed as IPv4, so both happen here.
            let d = d.to_ascii_lowercase();
            let loopback = match d.parse::<IpAddr>() {
                Ok(ip) => ip.is_loopback(),
                Err(_) => d == "localhost" || d == "localhost.",
            };
            Ok((d, loopback))
        }
        Some(Host::Ipv4(ip)) => Ok((ip.to_string(), IpAddr::V4(ip).is_loopback())),
        Some(Host::Ipv6(ip)) => Ok((format!("[{ip}]"), IpAddr::V6(ip).is_loopback())),
    }
}

fn credentials_of(url: &Url) -> Result<Option<SmtpCredentials>, MailConfigError> {
    let user = url.username();
    let password = url.password();
    match (user.is_empty(), password) {
        (true, None) => Ok(None),
        (false, Some(password)) => {
            let user = percent_decode_str(user)
                .decode_utf8()
                .map_err(|_| MailConfigError::InvalidCredentials)?
                .into_owned();
            let password = percent_decode_str(password)
                .decode_utf8()
                .map_err(|_| MailConfigError::InvalidCredentials)?;
            Ok(Some(SmtpCredentials {
                user,
                password: SecretString::from(password.as_ref()),
            }))
        }
        _ => Err(MailConfigError::InvalidCredentials),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: &str = "no-reply@acme.test";

    fn mailer(url: &str) -> SmtpMailer {
        SmtpMailer::from_url(url, FROM).unwrap()
    }

    #[test]
    fn parses_the_three_forms() {
        let m = mailer("smtp://localhost:2525");
        assert_eq!(
            (m.security(), m.host(), m.port()),
            (SmtpSecurity::Plain, "localhost", 2525)
        );
        assert!(m.is_plaintext() && m.host_is_loopback());

        let m = mailer("smtp://mail.example.com?tls=starttls");
        assert_eq!(
            (m.security(), m.host(), m.port()),
            (SmtpSecurity::StartTls, "mail.example.com", 587)
        );
        assert!(!m.is_plaintext() && !m.host_is_loopback());
        assert_eq!(
            mailer("smtp://mail.example.com?tls=required").security(),
            SmtpSecurity::StartTls
        );

        let m = mailer("smtps://Mail.Example.com");
        assert_eq!(
            (m.security(), m.host(), m.port()),
            (SmtpSecurity::ImplicitTls, "mail.example.com", 465)
        );
        assert_eq!(mailer("smtp://relay").port(), 25);
    }

    #[test]
    fn recognises_loopback_hosts() {
        for url in [
            "smtp://127.0.0.1:25",
            "smtp://127.1.2.3",
            "smtp://[::1]:25",
            "smtp://LOCALHOST",
        ] {
            assert!(mailer(url).host_is_loopback(), "{url}");
        }
        for url in [
            "smtp://10.0.0.1",
            "smtp://[2001:db8::1]",
            "smtp://localhost.evil.test",
            "smtp://mail.example.com",
        ] {
            assert!(!mailer(url).host_is_loopback(), "{url}");
        }
        assert_eq!(mailer("smtp://[::1]:25").host(), "[::1]");
    }

    #[test]
    fn refuses_malformed_urls() {
        use MailConfigError as E;
        for (url, want) in [
            ("not a url", E::InvalidUrl),
            (
                "http://mail.example.com",
                E::UnsupportedScheme("http".into()),
            ),
            ("smtp://", E::MissingHost),
            (
                "smtp://mail.example.com?tls=opportunistic",
                E::UnsupportedTls("opportunistic".into()),
            ),
            (
                "smtps://mail.example.com?tls=starttls",
                E::UnsupportedTls("starttls".into()),
            ),
            (
                "smtp://mail.example.com?tls=starttls&tls=starttls",
                E::UnsupportedComponent("query parameter tls".into()),
            ),
            (
                "smtp://mail.example.com?timeout=5",
                E::UnsupportedComponent("query parameter timeout".into()),
            ),
            (
                "smtp://mail.example.com/ehlo",
                E::UnsupportedComponent("path".into()),
            ),
            ("smtps://user@mail.example.com", E::InvalidCredentials),
            ("smtps://user:%FF@mail.example.com", E::InvalidCredentials),
        ] {
            assert_eq!(SmtpMailer::from_url(url, FROM).unwrap_err(), want, "{url}");
        }
        assert_eq!(
            SmtpMailer::from_url("smtp://localhost", "nobody").unwrap_err(),
            E::InvalidFrom
        );
    }

    #[test]
    fn credentials_are_decoded_and_never_shown() {
        let m = mailer("smtps://us%40er:p%40ss%3Aword@mail.example.com");
        let c = m.credentials.as_ref().unwrap();
        assert_eq!(c.user, "us@er");
        assert_eq!(c.password.expose_secret(), "p@ss:word");
        let shown = format!("{m:?}");
        assert!(
            !shown.contains("p@ss") && !shown.contains("p%40ss"),
            "{shown}"
        );
        assert!(shown.contains("authenticated: true"), "{shown}");
    }

    #[test]
    fn error_texts_never_repeat_the_password() {
        for url in [
            "smtp://user:hunter2@mail.example.com",
            "smtp://user:hunter2@mail.example.com?tls=bogus",
            "smtp://user:hunter2@mail.example.com/x",
            "ftp://user:hunter2@mail.example.com",
        ] {
            let err = SmtpMailer::from_url(url, FROM).unwrap_err();
            assert!(!err.to_string().contains("hunter2"), "{err}");
            assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
        }
    }

    // Plain SMTP AUTH to another machine would put the password on the wire in clear text.
    #[test]
    fn refuses_credentials_over_plain_remote_smtp() {
        assert_eq!(
            SmtpMailer::from_url("smtp://u:p@mail.example.com", FROM).unwrap_err(),
            MailConfigError::CredentialsWithoutTls
        );
        assert!(SmtpMailer::from_url("smtp://u:p@127.0.0.1:2525", FROM).is_ok());
        assert!(SmtpMailer::from_url("smtp://u:p@mail.example.com?tls=starttls", FROM).is_ok());
    }

    #[test]
    fn bounds_server_text() {
        let long = "x".repeat(500);
        assert_eq!(bounded(&long).chars().count(), MAX_REPLY_CHARS + 1);
        assert_eq!(bounded("a\r\nb"), "a  b");
    }
}
