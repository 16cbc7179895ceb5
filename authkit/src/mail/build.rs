//! Turning a [`MailMessage`] into RFC 5322 bytes, shared by the SMTP transport and the
//! development mailbox so that both produce exactly the same message.

use std::time::{Duration, SystemTime};

use lettre::Address;
use lettre::address::Envelope;
use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox, Message, SinglePart};
use zeroize::Zeroizing;

use super::{MailError, MailMessage};
use crate::clock::Timestamp;
use crate::rng::{RandomSource, random_array};

/// Longest subject accepted, in characters. Templates stay far below it; anything longer is a
/// bug upstream rather than something to truncate silently.
const MAX_SUBJECT_CHARS: usize = 200;

/// RFC 5322's line limit (998 octets before CRLF).
const MAX_LINE_OCTETS: usize = 998;

/// RFC 3834: marks the message as machine-generated so that auto-responders stay quiet.
const AUTO_SUBMITTED: HeaderName = HeaderName::new_from_ascii_str("Auto-Submitted");

/// A message ready for a transport: who to hand it to, and the formatted bytes.
pub(super) struct Prepared {
    /// SMTP envelope (`MAIL FROM` / `RCPT TO`).
    pub(super) envelope: Envelope,
    /// The full message, wiped on drop because the body may hold a single-use link.
    pub(super) bytes: Zeroizing<Vec<u8>>,
}

/// Parses the sender, e.g. `no-reply@example.com` or `Acme <no-reply@example.com>`.
pub(super) fn parse_from(from: &str) -> Option<Mailbox> {
    if from.chars().any(char::is_control) {
        return None;
    }
    from.parse::<Mailbox>().ok()
}

/// Validates and formats `message`, dated `at`, with a fresh random `Message-ID`.
///
/// Header injection is impossible by construction: the recipient must parse as a bare address,
/// the subject may not contain control characters, and lettre encodes every header value.
pub(super) fn prepare(
    message: &MailMessage,
    from: &Mailbox,
    at: Timestamp,
    rng: &dyn RandomSource,
) -> Result<Prepared, MailError> {
    let to = parse_recipient(&message.to)?;
    check_subject(&message.subject)?;
    let message_id = message_id(from, rng)?;
    let built = Message::builder()
        .from(from.clone())
        .to(Mailbox::new(None, to))
        .subject(message.subject.as_str())
        .date(system_time(at))
        .message_id(Some(message_id))
        .raw_header(HeaderValue::new(
            AUTO_SUBMITTED,
            "auto-generated".to_owned(),
        ))
        .singlepart(text_part(&message.text))
        .map_err(|e| MailError::Permanent(format!("cannot build the message: {e}")))?;
    Ok(Prepared {
        envelope: built.envelope().clone(),
        bytes: Zeroizing::new(built.formatted()),
    })
}

/// The body as a `text/plain; charset=utf-8` part.
///
/// ASCII text with lines within RFC 5322's limit goes out as `7bit`, byte for byte, so that the
/// links in a development `.eml` file can be copied as they are. lettre would switch to
/// quoted-printable above 76 characters per line, which turns `token=` into `token=3D` and
/// splits long links. Anything else is left to lettre's choice of encoding.
fn text_part(text: &str) -> SinglePart {
    let crlf = text
        .replace("\r\n", "\n")
        .replace('\r', "\n")
        .replace('\n', "\r\n");
    let seven_bit = crlf.bytes().all(|b| b.is_ascii() && b != 0)
        && crlf.split("\r\n").all(|line| line.len() <= MAX_LINE_OCTETS);
    if seven_bit {
        SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .body(Body::dangerous_pre_encoded(
                crlf.into_bytes(),
                ContentTransferEncoding::SevenBit,
            ))
    } else {
        SinglePart::plain(text.to_owned())
    }
}

fn parse_recipient(to: &str) -> Result<Address, MailError> {
    // lettre's parser refuses these too; checking first keeps the refusal independent of it.
    if to.is_empty() || to.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(MailError::Permanent("malformed recipient address".into()));
    }
    to.parse::<Address>()
        .map_err(|_| MailError::Permanent("malformed recipient address".into()))
}

fn check_subject(subject: &str) -> Result<(), MailError> {
    if subject.chars().any(char::is_control) {
        return Err(MailError::Permanent(
            "subject contains control characters".into(),
        ));
    }
    if subject.chars().count() > MAX_SUBJECT_CHARS {
        return Err(MailError::Permanent("subject too long".into()));
    }
    Ok(())
}

/// `<32 hex digits@sender domain>`: unique without revealing anything about the host.
fn message_id(from: &Mailbox, rng: &dyn RandomSource) -> Result<String, MailError> {
    let bytes: [u8; 16] = random_array(rng)
        .map_err(|_| MailError::Transient("random number generator failed".into()))?;
    let mut id = String::with_capacity(64);
    id.push('<');
    for b in bytes {
        id.push(hex_digit(b >> 4));
        id.push(hex_digit(b & 0x0f));
    }
    id.push('@');
    id.push_str(from.email.domain());
    id.push('>');
    Ok(id)
}

fn hex_digit(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16).unwrap_or('0')
}

fn system_time(at: Timestamp) -> SystemTime {
    let secs = u64::try_from(at.unix_seconds()).unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::MailKind;
    use crate::rng::SeededRandom;

    fn message(to: &str, subject: &str) -> MailMessage {
        MailMessage {
            to: to.into(),
            subject: subject.into(),
            text: "Hello,\nline two\n".into(),
            kind: MailKind::PasswordChanged,
        }
    }

    fn from() -> Mailbox {
        parse_from("Acme <no-reply@acme.test>").unwrap()
    }

    fn text(p: &Prepared) -> String {
        String::from_utf8(p.bytes.to_vec()).unwrap()
    }

    #[test]
    fn formats_headers_and_body() {
        let rng = SeededRandom::new(1);
        let p = prepare(
            &message("bob@example.com", "Your password was changed"),
            &from(),
            Timestamp::from_unix_seconds(1_700_000_000),
            &rng,
        )
        .unwrap();
        let t = text(&p);
        assert!(t.contains("From: Acme <no-reply@acme.test>\r\n"), "{t}");
        assert!(t.contains("To: bob@example.com\r\n"), "{t}");
        assert!(t.contains("Subject: Your password was changed\r\n"), "{t}");
        assert!(
            t.contains("Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"),
            "{t}"
        );
        assert!(t.contains("Auto-Submitted: auto-generated\r\n"), "{t}");
        assert!(t.contains("MIME-Version: 1.0\r\n"), "{t}");
        assert!(
            t.contains("Content-Type: text/plain; charset=utf-8\r\n"),
            "{t}"
        );
        // Bare LFs become CRLF; lettre ends a single part with one more CRLF.
        assert!(t.ends_with("\r\n\r\nHello,\r\nline two\r\n\r\n"), "{t:?}");
        let id_line = t.lines().find(|l| l.starts_with("Message-ID: <")).unwrap();
        assert!(id_line.ends_with("@acme.test>"), "{id_line}");
        assert_eq!(id_line.len(), "Message-ID: <@acme.test>".len() + 32);
        assert_eq!(p.envelope.to().len(), 1);
        assert_eq!(p.envelope.from().unwrap().to_string(), "no-reply@acme.test");
    }

    #[test]
    fn message_ids_differ() {
        let rng = SeededRandom::new(2);
        let m = message("bob@example.com", "s");
        let at = Timestamp::from_unix_seconds(1);
        let a = text(&prepare(&m, &from(), at, &rng).unwrap());
        let b = text(&prepare(&m, &from(), at, &rng).unwrap());
        let id = |t: &str| {
            t.lines()
                .find(|l| l.starts_with("Message-ID"))
                .unwrap()
                .to_owned()
        };
        assert_ne!(id(&a), id(&b));
    }

    // SECURITY.md: header injection through the subject or the recipient must be impossible.
    #[test]
    fn refuses_header_injection() {
        let rng = SeededRandom::new(3);
        let at = Timestamp::from_unix_seconds(1);
        for (to, subject) in [
            ("bob@example.com", "Hi\r\nBcc: eve@evil.test"),
            ("bob@example.com", "Hi\nBcc: eve@evil.test"),
            ("bob@example.com", "Hi\rBcc: eve@evil.test"),
            ("bob@example.com\r\nBcc: eve@evil.test", "Hi"),
            ("bob@example.com\nBcc: eve@evil.test", "Hi"),
            ("Bob <bob@example.com>, eve@evil.test", "Hi"),
            ("bob@example.com,eve@evil.test", "Hi"),
            ("", "Hi"),
            ("no-at-sign", "Hi"),
        ] {
            let err = match prepare(&message(to, subject), &from(), at, &rng) {
                Ok(p) => panic!("accepted {to:?} / {subject:?}:\n{}", text(&p)),
                Err(e) => e,
            };
            assert!(matches!(err, MailError::Permanent(_)), "{err}");
            assert!(!err.to_string().contains("line two"));
        }
    }

    #[test]
    fn long_ascii_lines_stay_seven_bit_and_intact() {
        let rng = SeededRandom::new(5);
        let link = format!(
            "https://app.example.com/verify-email#token={}",
            "A".repeat(120)
        );
        let mut m = message("bob@example.com", "s");
        m.text = format!("Open:\n\n{link}\n\n.\nbare\rcr");
        let p = prepare(&m, &from(), Timestamp::from_unix_seconds(1), &rng).unwrap();
        let t = text(&p);
        assert!(t.contains("Content-Transfer-Encoding: 7bit\r\n"), "{t}");
        assert!(t.contains(&format!("\r\n{link}\r\n")), "{t}");
        assert!(t.contains("\r\n.\r\nbare\r\ncr"), "{t:?}");
        assert!(!t.replace("\r\n", "").contains(['\r', '\n']), "{t:?}");
    }

    #[test]
    fn other_bodies_are_left_to_lettre() {
        let rng = SeededRandom::new(6);
        let at = Timestamp::from_unix_seconds(1);
        let mut m = message("bob@example.com", "s");
        m.text = "Grüße\n".into();
        let t = text(&prepare(&m, &from(), at, &rng).unwrap());
        assert!(!t.contains("Content-Transfer-Encoding: 7bit"), "{t}");
        assert!(t.is_ascii());
        m.text = "x".repeat(MAX_LINE_OCTETS + 1);
        let t = text(&prepare(&m, &from(), at, &rng).unwrap());
        assert!(!t.contains("Content-Transfer-Encoding: 7bit"), "{t}");
        assert!(t.lines().all(|l| l.len() <= MAX_LINE_OCTETS));
    }

    #[test]
    fn non_ascii_subject_is_encoded_not_raw() {
        let rng = SeededRandom::new(4);
        let p = prepare(
            &message("bob@example.com", "Grüße"),
            &from(),
            Timestamp::from_unix_seconds(1),
            &rng,
        )
        .unwrap();
        assert!(p.bytes.is_ascii());
        assert!(text(&p).contains("Subject: =?utf-8?"), "{}", text(&p));
    }

    #[test]
    fn refuses_bad_senders() {
        assert!(parse_from("no-reply@acme.test").is_some());
        assert!(parse_from("Acme\r\nBcc: x@y.z <no-reply@acme.test>").is_none());
        assert!(parse_from("not an address").is_none());
    }
}
