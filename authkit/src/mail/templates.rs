//! The messages authkit sends, as plain text.
//!
//! Every link is built from the configured public URL ([`LinkBase`], `AUTHKIT_PUBLIC_URL`),
//! never from request headers: a forged `Host` must not be able to point a reset link at an
//! attacker's site. Tokens travel in the URL *fragment* (`#token=…`), which browsers never send
//! to a server, so they stay out of access logs and `Referer` headers; the frontend reads the
//! fragment and POSTs the token to the API.
//!
//! Text that comes from a client (user agent, address) is reduced to harmless, bounded text
//! before it appears in a security notice, and cannot look like a link.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use url::Url;

use super::{MailKind, MailMessage};
use crate::clock::Timestamp;
use crate::user::Email;

/// Longest token accepted in a link, in bytes.
const MAX_TOKEN_LEN: usize = 512;
/// Longest user agent shown in a notice, in characters.
const MAX_USER_AGENT_CHARS: usize = 160;
/// Longest product name, in characters.
const MAX_PRODUCT_CHARS: usize = 64;

/// The public base URL that links point to, e.g. `https://app.example.com` (no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkBase(String);

/// Why a base URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkBaseError {
    /// Not an absolute `http://` or `https://` URL with a host.
    #[error("the public URL must be an absolute http:// or https:// URL with a host")]
    NotHttp,
    /// Has credentials, a query or a fragment, which would end up inside every link.
    #[error("the public URL must not contain credentials, a query or a fragment")]
    ExtraComponents,
}

impl LinkBase {
    /// Validates `base`: `http` or `https`, a host, optionally a path prefix (`/app`); no
    /// credentials, query or fragment. The form kept is normalised (lower-case host, no
    /// trailing slash).
    pub fn parse(base: &str) -> Result<Self, LinkBaseError> {
        let url = Url::parse(base.trim()).map_err(|_| LinkBaseError::NotHttp)?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err(LinkBaseError::NotHttp);
        }
        if !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(LinkBaseError::ExtraComponents);
        }
        Ok(Self(url.as_str().trim_end_matches('/').to_owned()))
    }

    /// The base as text, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `base` followed by `path` (which starts with `/`).
    fn link(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

/// Why a message could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// The token is empty, too long, or not base64url text.
    #[error("token is not base64url text")]
    InvalidToken,
}

/// Builds authkit's messages with links under one [`LinkBase`].
#[derive(Debug, Clone)]
pub struct Templates {
    base: LinkBase,
    product: String,
}

impl Templates {
    /// Templates whose links start with `base`, signed "authkit".
    pub fn new(base: LinkBase) -> Self {
        Self {
            base,
            product: "authkit".to_owned(),
        }
    }

    /// Sets the product name used in subjects and signatures (control characters removed,
    /// at most 64 characters).
    #[must_use]
    pub fn with_product_name(mut self, name: &str) -> Self {
        let clean: String = name
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_PRODUCT_CHARS)
            .collect();
        let clean = clean.trim();
        if !clean.is_empty() {
            self.product = clean.to_owned();
        }
        self
    }

    /// The base that every link starts with.
    pub fn link_base(&self) -> &LinkBase {
        &self.base
    }

    /// Asks the owner of `to` to confirm the address: link `{base}/verify-email#token={token}`.
    pub fn verification(
        &self,
        to: &Email,
        token: &str,
        expires_in: Duration,
    ) -> Result<MailMessage, TemplateError> {
        let link = self
            .base
            .link(&format!("/verify-email#token={}", check_token(token)?));
        let p = &self.product;
        let mut text = String::new();
        let _ = write!(
            text,
            "Hello,\n\n\
             please confirm that this e-mail address belongs to you by opening this link:\n\n\
             {link}\n\n\
             The link works once and expires in {}.\n\n\
             If you did not sign up for {p}, ignore this message: nothing happens without the \
             link.\n",
            human_duration(expires_in)
        );
        Ok(self.message(
            to,
            format!("Confirm your e-mail address for {p}"),
            text,
            MailKind::Verification,
        ))
    }

    /// Sends a password reset link: `{base}/reset-password#token={token}`.
    pub fn password_reset(
        &self,
        to: &Email,
        token: &str,
        expires_in: Duration,
    ) -> Result<MailMessage, TemplateError> {
        let link = self
            .base
            .link(&format!("/reset-password#token={}", check_token(token)?));
        let p = &self.product;
        let mut text = String::new();
        let _ = write!(
            text,
            "Hello,\n\n\
             someone asked to reset the password of your {p} account. To choose a new \
             password, open this link:\n\n\
             {link}\n\n\
             The link works once and expires in {}. Setting a new password signs out every \
             device.\n\n\
             If you did not ask for this, ignore this message: your password stays as it is.\n",
            human_duration(expires_in)
        );
        Ok(self.message(
            to,
            format!("Reset your {p} password"),
            text,
            MailKind::PasswordReset,
        ))
    }

    /// Tells the owner of `to` that someone tried to register with it, without creating
    /// anything: registration answers the same whether or not an address is taken.
    pub fn account_exists(&self, to: &Email) -> MailMessage {
        let p = &self.product;
        let forgot = self.base.link("/forgot-password");
        let mut text = String::new();
        let _ = write!(
            text,
            "Hello,\n\n\
             someone tried to create a {p} account with this e-mail address, but an account \
             with this address already exists.\n\n\
             If it was you, sign in instead. If you forgot your password, reset it here:\n\n\
             {forgot}\n\n\
             If it was not you, ignore this message: nothing was changed.\n"
        );
        self.message(
            to,
            format!("Sign-up attempt for your {p} account"),
            text,
            MailKind::AccountExists,
        )
    }

    /// "Your two-factor settings changed" (SECURITY.md #24, #27: the user is notified of every
    /// MFA change and of an attempt to reuse a code).
    pub fn mfa_changed(
        &self,
        to: &Email,
        change: MfaChange,
        at: Timestamp,
        ip: Option<String>,
    ) -> MailMessage {
        let p = &self.product;
        let (subject, what, advice) = match change {
            MfaChange::Enabled => (
                format!("Two-factor authentication is on for your {p} account"),
                "two-factor authentication was turned on for your account",
                "Keep your backup codes somewhere safe: each one signs you in once if you lose \
                 your authenticator.",
            ),
            MfaChange::Disabled => (
                format!("Two-factor authentication was turned off for your {p} account"),
                "two-factor authentication was turned off for your account",
                "Your account is now protected by its password alone.",
            ),
            MfaChange::BackupCodesRegenerated => (
                format!("New backup codes for your {p} account"),
                "new backup codes were created for your account; the old ones no longer work",
                "Keep the new codes somewhere safe.",
            ),
            MfaChange::CodeReused => (
                format!("A used sign-in code was tried on your {p} account"),
                "someone entered an authenticator code that had already been used",
                "If you were signing in, try again with the next code. If not, someone may know \
                 your password.",
            ),
        };
        let forgot = self.base.link("/forgot-password");
        let mut text = String::new();
        let _ = write!(
            text,
            "Hello,\n\n\
             {what}.\n\n\
             When: {}\n\
             IP address: {}\n\n\
             {advice}\n\n\
             If this was not you, change your password now at\n\n\
             {forgot}\n",
            human_time(at),
            clean_ip(ip.as_deref())
        );
        self.message(to, subject, text, MailKind::MfaChanged)
    }
    /// "A sign-in provider was linked to / unlinked from your account" (sign-in by a new
    /// provider is a new way into the account: the owner must hear of it).
    pub fn oauth_changed(
        &self,
        to: &Email,
        change: OAuthChange,
        provider: &str,
        at: Timestamp,
        ip: Option<String>,
    ) -> MailMessage {
        let p = &self.product;
        // Provider names are configuration (a-z, 0-9, -), never user input.
        let (subject, what) = match change {
            OAuthChange::Linked => (
                format!("{provider} can now sign in to your {p} account"),
                format!("a {provider} account was linked to your account; it can now sign you in"),
            ),
            OAuthChange::Unlinked => (
                format!("{provider} was removed from your {p} account"),
                format!("the {provider} account linked to your account was removed"),
            ),
        };
        let forgot = self.base.link("/forgot-password");
        let mut text = String::new();
        let _ = write!(
            text,
            "Hello,\n\n\
             {what}.\n\n\
             When: {}\n\
             IP address: {}\n\n\
             If this was not you, change your password now at\n\n\
             {forgot}\n\n\
             and remove the linked account from your settings.\n",
            human_time(at),
            clean_ip(ip.as_deref())
        );
        self.message(to, subject, text, MailKind::OauthChanged)
    }

    /// Security notice: the password changed at `at`, from address `ip` if known.
    pub fn password_changed(&self, to: &Email, at: Timestamp, ip: Option<String>) -> MailMessage {
        let p = &self.product;
        let forgot = self.base.link("/forgot-password");
        let mut text = String::new();
        let _ = write!(
            text,
            "Hello,\n\n\
             the password of your {p} account was changed.\n\n\
             When: {}\n\
             IP address: {}\n\n\
             Other devices signed in to your account have been signed out.\n\n\
             If this was you, there is nothing to do.\n\n\
             If it was not you, someone may have access to your account: reset your password \
             now at\n\n\
             {forgot}\n",
            human_time(at),
            clean_ip(ip.as_deref())
        );
        self.message(
            to,
            format!("Your {p} password was changed"),
            text,
            MailKind::PasswordChanged,
        )
    }

    /// Security notice: a sign-in from a device not seen before.
    pub fn new_sign_in(
        &self,
        to: &Email,
        at: Timestamp,
        ip: Option<String>,
        user_agent: Option<String>,
    ) -> MailMessage {
        let p = &self.product;
        let forgot = self.base.link("/forgot-password");
        let mut text = String::new();
        let _ = write!(
            text,
            "Hello,\n\n\
             your {p} account was signed in to from a device or browser we have not seen \
             before.\n\n\
             When: {}\n\
             IP address: {}\n\
             Browser (as it describes itself): {}\n\n\
             If this was you, there is nothing to do.\n\n\
             If it was not you, reset your password now, which signs out every device:\n\n\
             {forgot}\n",
            human_time(at),
            clean_ip(ip.as_deref()),
            clean_user_agent(user_agent.as_deref())
        );
        self.message(
            to,
            format!("New sign-in to your {p} account"),
            text,
            MailKind::NewSignIn,
        )
    }

    fn message(
        &self,
        to: &Email,
        subject: String,
        mut text: String,
        kind: MailKind,
    ) -> MailMessage {
        // A constant footer that helps recipients tell real mail from phishing.
        let _ = write!(
            text,
            "\n-- \n{}\nLinks in messages from {} always start with {}/\n",
            self.product, self.product, self.base.0
        );
        MailMessage {
            to: to.as_str().to_owned(),
            subject,
            text,
            kind,
        }
    }
}

/// Accepts base64url text only, so a token can neither break out of the fragment nor carry
/// anything but itself into the link.
fn check_token(token: &str) -> Result<&str, TemplateError> {
    let ok = !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(token)
    } else {
        Err(TemplateError::InvalidToken)
    }
}

/// `2026-11-27 12:00:00 UTC`.
fn human_time(at: Timestamp) -> String {
    let iso = at.to_rfc3339();
    format!("{} UTC", iso.trim_end_matches('Z').replacen('T', " ", 1))
}

/// Days, hours and minutes, the two largest non-zero units, rounded down (a link is never
/// announced as living longer than it does): `1 hour 30 minutes`, `2 days`, `45 seconds`.
fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        return plural(secs, "second");
    }
    let parts: Vec<String> = [
        (secs / 86_400, "day"),
        (secs % 86_400 / 3600, "hour"),
        (secs % 3600 / 60, "minute"),
    ]
    .into_iter()
    .skip_while(|(n, _)| *n == 0)
    .take(2)
    .filter(|(n, _)| *n > 0)
    .map(|(n, unit)| plural(n, unit))
    .collect();
    parts.join(" ")
}

fn plural(n: u64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// An IP address in canonical form, or `unknown`: nothing else from the request is echoed.
fn clean_ip(ip: Option<&str>) -> String {
    ip.and_then(|s| s.trim().parse::<IpAddr>().ok())
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

/// A client's self-description, made harmless: printable ASCII only (control characters
/// dropped, anything else `?`), bounded, and with `://` broken so that mail clients do not turn
/// an attacker's URL into a link inside a genuine security notice.
fn clean_user_agent(ua: Option<&str>) -> String {
    let Some(ua) = ua else {
        return "unknown".to_owned();
    };
    let mut out = String::new();
    let mut chars = 0usize;
    let mut truncated = false;
    for c in ua.chars().filter(|c| !c.is_control()) {
        if chars == MAX_USER_AGENT_CHARS {
            truncated = true;
            break;
        }
        let c = if c.is_ascii_graphic() || c == ' ' {
            c
        } else {
            '?'
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
        chars += 1;
    }
    let mut out = out.trim_end().replace("://", "[:]//");
    if truncated {
        out.push_str("...");
    }
    if out.is_empty() {
        "unknown".to_owned()
    } else {
        format!("\"{out}\"")
    }
}

/// What changed, for [`Templates::mfa_changed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MfaChange {
    /// Enrolment was confirmed.
    Enabled,
    /// MFA was turned off.
    Disabled,
    /// A new set of backup codes replaced the old one.
    BackupCodesRegenerated,
    /// A TOTP code was presented again after it had been accepted.
    CodeReused,
}

/// What changed in the account's linked providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OAuthChange {
    /// A provider account was linked (explicitly, automatically, or at sign-up).
    Linked,
    /// A provider account was unlinked.
    Unlinked,
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "Q2hlY2tfdG9rZW4tMTIzNDU2Nzg5MA_-";

    fn templates(base: &str) -> Templates {
        Templates::new(LinkBase::parse(base).unwrap())
    }

    fn alice() -> Email {
        Email::parse("alice@example.com").unwrap()
    }

    /// Every URL-looking word in `text`.
    fn links(text: &str) -> Vec<&str> {
        text.split_whitespace()
            .filter(|w| w.contains("://"))
            .collect()
    }

    fn all_messages(t: &Templates, ua: &str) -> Vec<MailMessage> {
        let at = Timestamp::from_unix_seconds(1_795_000_000);
        vec![
            t.verification(&alice(), TOKEN, Duration::from_secs(86_400))
                .unwrap(),
            t.password_reset(&alice(), TOKEN, Duration::from_secs(3600))
                .unwrap(),
            t.account_exists(&alice()),
            t.password_changed(&alice(), at, Some("203.0.113.9".into())),
            t.new_sign_in(&alice(), at, Some("2001:db8::1".into()), Some(ua.into())),
        ]
    }

    #[test]
    fn verification_link_is_exact() {
        let m = templates("http://localhost:8080")
            .verification(&alice(), TOKEN, Duration::from_secs(86_400))
            .unwrap();
        assert_eq!(m.kind, MailKind::Verification);
        assert_eq!(m.to, "alice@example.com");
        assert_eq!(m.subject, "Confirm your e-mail address for authkit");
        assert_eq!(
            links(&m.text),
            [
                format!("http://localhost:8080/verify-email#token={TOKEN}").as_str(),
                "http://localhost:8080/"
            ]
        );
        assert!(
            m.text.contains(&format!(
                "\n\nhttp://localhost:8080/verify-email#token={TOKEN}\n\n"
            )),
            "the link stands alone on its line:\n{}",
            m.text
        );
        assert!(m.text.contains("expires in 1 day"), "{}", m.text);
    }

    #[test]
    fn reset_link_is_exact_under_a_path_prefix() {
        let m = templates("https://App.Example.com/portal/")
            .password_reset(&alice(), TOKEN, Duration::from_secs(1800))
            .unwrap();
        assert_eq!(m.kind, MailKind::PasswordReset);
        assert_eq!(
            links(&m.text)[0],
            format!("https://app.example.com/portal/reset-password#token={TOKEN}")
        );
        assert!(m.text.contains("expires in 30 minutes"), "{}", m.text);
    }

    #[test]
    fn notices_link_to_forgot_password() {
        let t = templates("https://app.example.com");
        for m in &all_messages(&t, "Firefox")[2..] {
            assert_eq!(
                links(&m.text)[0],
                "https://app.example.com/forgot-password",
                "{:?}",
                m.kind
            );
        }
    }

    // Only the configured base produces links; nothing from the request can add one.
    #[test]
    fn every_link_starts_with_the_base() {
        let t = templates("https://app.example.com");
        let hostile = "Mozilla/5.0 https://evil.example/reset-password#token=x \
                       http://evil.example\r\nBcc: eve@evil.example";
        for m in all_messages(&t, hostile) {
            for link in links(&m.text) {
                assert!(
                    link.starts_with("https://app.example.com/"),
                    "{:?} has foreign link {link}",
                    m.kind
                );
            }
            assert!(!m.subject.contains(['\r', '\n']));
            assert!(!m.text.contains('\r'));
        }
    }

    #[test]
    fn sanitises_the_user_agent() {
        let t = templates("https://app.example.com");
        let at = Timestamp::from_unix_seconds(0);
        let ua = "Evil\u{0}Agent\r\n\u{202e}gnp.exe  https://evil.example ".to_owned()
            + &"A".repeat(500);
        let m = t.new_sign_in(&alice(), at, None, Some(ua));
        let line = m.text.lines().find(|l| l.starts_with("Browser")).unwrap();
        assert!(
            line.starts_with(
                "Browser (as it describes itself): \"EvilAgent?gnp.exe https[:]//evil.example AAA"
            ),
            "{line}"
        );
        assert!(line.ends_with("...\""), "{line}");
        assert!(line.chars().count() <= 50 + MAX_USER_AGENT_CHARS, "{line}");
        assert!(m.text.contains("IP address: unknown\n"), "{}", m.text);
        assert!(
            m.text.contains("When: 1970-01-01 00:00:00 UTC\n"),
            "{}",
            m.text
        );

        let m = t.new_sign_in(&alice(), at, None, Some("\u{1}\u{2}".into()));
        assert!(
            m.text
                .contains("Browser (as it describes itself): unknown\n"),
            "{}",
            m.text
        );
    }

    #[test]
    fn shows_only_well_formed_ip_addresses() {
        let t = templates("https://app.example.com");
        let at = Timestamp::from_unix_seconds(0);
        let m = t.password_changed(&alice(), at, Some("2001:DB8:0:0::1".into()));
        assert!(m.text.contains("IP address: 2001:db8::1\n"), "{}", m.text);
        let m = t.password_changed(&alice(), at, Some("1.2.3.4 https://evil.example".into()));
        assert!(m.text.contains("IP address: unknown\n"), "{}", m.text);
        assert_eq!(m.kind, MailKind::PasswordChanged);
    }

    #[test]
    fn refuses_tokens_that_are_not_base64url() {
        let t = templates("https://app.example.com");
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        for bad in [
            "",
            "a#b",
            "a b",
            "a/b",
            "a?b=c",
            "a\nb",
            "tøken",
            "a%20",
            long.as_str(),
        ] {
            assert_eq!(
                t.verification(&alice(), bad, Duration::from_secs(60))
                    .unwrap_err(),
                TemplateError::InvalidToken,
                "{bad:?}"
            );
            assert!(
                t.password_reset(&alice(), bad, Duration::from_secs(60))
                    .is_err()
            );
        }
    }

    #[test]
    fn link_base_accepts_only_plain_http_origins() {
        assert_eq!(
            LinkBase::parse("http://localhost:8080").unwrap().as_str(),
            "http://localhost:8080"
        );
        assert_eq!(
            LinkBase::parse("https://EXAMPLE.com/").unwrap().as_str(),
            "https://example.com"
        );
        for bad in [
            "ftp://example.com",
            "javascript:alert(1)",
            "example.com",
            "",
            "http://",
        ] {
            assert_eq!(LinkBase::parse(bad), Err(LinkBaseError::NotHttp), "{bad:?}");
        }
        for bad in [
            "https://user:pw@example.com",
            "https://example.com/?next=x",
            "https://example.com/#x",
        ] {
            assert_eq!(
                LinkBase::parse(bad),
                Err(LinkBaseError::ExtraComponents),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn durations_read_naturally_and_never_overstate() {
        let d = |s| human_duration(Duration::from_secs(s));
        assert_eq!(d(1), "1 second");
        assert_eq!(d(45), "45 seconds");
        assert_eq!(d(60), "1 minute");
        assert_eq!(d(119), "1 minute");
        assert_eq!(d(3600), "1 hour");
        assert_eq!(d(5400), "1 hour 30 minutes");
        assert_eq!(d(86_400), "1 day");
        assert_eq!(d(2 * 86_400 + 3600 + 60), "2 days 1 hour");
        assert_eq!(d(86_400 + 60), "1 day");
    }

    #[test]
    fn product_name_is_cleaned() {
        let t = templates("https://app.example.com").with_product_name("Acme\r\nBcc: x ");
        let m = t.account_exists(&alice());
        assert_eq!(m.subject, "Sign-up attempt for your AcmeBcc: x account");
        assert_eq!(m.kind, MailKind::AccountExists);
    }
}
