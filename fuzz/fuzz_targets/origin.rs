//! `Origin` and `Referer` header values: `Origin::parse` and `Origin::of_url` on arbitrary
//! text (SECURITY.md #12). Anything accepted must already be in serialised form, parse back to
//! itself through both entry points, and (for `parse`) be the input itself up to case, white
//! space, a trailing `/` and how the port is written: an origin value is never silently rewritten into
//! a different one.
//!
//! The same text is also a post-sign-in redirect target (SECURITY.md #33):
//! `RedirectTarget::check` never panics, and whatever it accepts lands a browser on the public
//! or an allowed origin, with no `//` at the start and no backslash, control or space anywhere.

#![no_main]

use authkit::csrf::Origin;
use authkit::oauth::RedirectTarget;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    redirect_target(text);
    let parsed = Origin::parse(text).ok();
    if let Some(origin) = &parsed {
        assert!(
            spells(text, origin),
            "{text:?} was read as {:?}",
            origin.as_str()
        );
    }
    for origin in [parsed, Origin::of_url(text)].into_iter().flatten() {
        let s = origin.as_str();
        assert!(
            s.starts_with("https://") || s.starts_with("http://"),
            "{s:?}"
        );
        assert!(!s.contains('@') && !s.contains('*'), "{s:?}");
        assert_eq!(s.to_ascii_lowercase(), s);
        assert_eq!(Origin::parse(s).as_ref(), Ok(&origin), "{text:?} -> {s:?}");
        assert_eq!(
            Origin::of_url(s).as_ref(),
            Some(&origin),
            "{text:?} -> {s:?}"
        );
        assert_eq!(origin.is_https(), s.starts_with("https://"));
    }
});

/// Whether `text` is a way of writing `origin`: the same scheme and host (ignoring case and
/// surrounding white space), then nothing, `/`, or a port equal to the origin's (leading zeros
/// and an empty or default port allowed).
fn spells(text: &str, origin: &Origin) -> bool {
    let input = text.trim().to_ascii_lowercase();
    let input = input.strip_suffix('/').unwrap_or(&input);
    let Some((scheme, authority)) = origin.as_str().split_once("://") else {
        return false;
    };
    let default_port = if origin.is_https() { 443 } else { 80 };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port.parse::<u16>().ok()),
        _ => (authority, None),
    };
    let port = port.unwrap_or(default_port);
    let Some(rest) = input.strip_prefix(&format!("{scheme}://{host}")) else {
        return false;
    };
    match rest.strip_prefix(':') {
        None => rest.is_empty(),
        Some("") => true,
        Some(digits) => {
            digits.bytes().all(|b| b.is_ascii_digit()) && digits.parse::<u16>().ok() == Some(port)
        }
    }
}

fn redirect_target(text: &str) {
    let (Ok(public), Ok(web)) = (
        Origin::parse("https://app.example.com"),
        Origin::parse("https://web.example.com"),
    ) else {
        return;
    };
    let allowed = [web];
    let Some(target) = RedirectTarget::check(text, &public, &allowed) else {
        assert_eq!(
            RedirectTarget::sanitize(text, &public, &allowed).as_str(),
            "/"
        );
        return;
    };
    let t = target.as_str();
    assert!(!t.starts_with("//"), "{text:?} -> {t:?}");
    assert!(
        !t.chars().any(|c| c.is_ascii_control() || c == ' ' || c == '\\'),
        "{text:?} -> {t:?}"
    );
    let landed = url::Url::parse(public.as_str())
        .and_then(|base| base.join(t))
        .ok()
        .and_then(|u| Origin::of_url(u.as_str()));
    assert!(
        landed.as_ref() == Some(&public) || landed.as_ref() == allowed.first(),
        "{text:?} -> {t:?} lands on {landed:?}"
    );
}
