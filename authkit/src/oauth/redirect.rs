//! Where a browser may be sent after an OAuth sign-in (SECURITY.md #33: no open redirect).
//!
//! The `redirect_to` of `GET /oauth/{provider}` comes from the request, so anyone can write a
//! link that starts a sign-in with any value. [`RedirectTarget::sanitize`] accepts only:
//!
//! - a **same-origin path**: `/` followed by anything that is not a second `/` or `\`
//!   (`//evil.example` and `/\evil.example` are protocol-relative to browsers), or
//! - an **absolute `http(s)` URL on an allowed origin**, without user info;
//!
//! and answers `/` for everything else. Because browsers and frontends are lenient, the checks
//! are strict where they differ:
//!
//! - ASCII control characters, spaces and backslashes are refused anywhere: browsers drop tab
//!   and newline from URLs (`/\t/evil.example` becomes `//evil.example`) and read `\` as `/`
//!   (`https://app\@evil.example`, Django CVE-2016-2512).
//! - The same checks run again on the percent-decoded text, so that a frontend that decodes the
//!   value once more (`/%2F%2Fevil.example`, `%0a//evil.example`; oauth2-proxy CVE-2020-11053)
//!   still gets nothing but a local path.
//! - An absolute URL must parse (WHATWG rules, the `url` crate) to exactly an allowed origin;
//!   no suffix or prefix matching (`https://app.example.com.evil.example`, CVE-2021-21291).
//! - A path is also resolved against the public URL, and must stay on its origin.

use std::fmt;

use percent_encoding::percent_decode_str;

use crate::csrf::Origin;

/// Longest accepted target, in bytes.
pub const MAX_REDIRECT_LEN: usize = 2048;

/// A post-sign-in redirect target that passed [`RedirectTarget::sanitize`]: a same-origin
/// path or an absolute URL on an allowed origin.
#[derive(Clone, PartialEq, Eq)]
pub struct RedirectTarget(String);

impl RedirectTarget {
    /// `/`, where a refused target goes.
    pub fn root() -> Self {
        Self("/".to_owned())
    }

    /// `raw` if it is a safe target for a service whose public origin is `public` and whose
    /// frontends are `allowed`; `/` otherwise (SECURITY.md #33).
    pub fn sanitize(raw: &str, public: &Origin, allowed: &[Origin]) -> Self {
        Self::check(raw, public, allowed).unwrap_or_else(Self::root)
    }

    /// Like [`sanitize`](Self::sanitize), but `None` for a refused target (to log or count it).
    pub fn check(raw: &str, public: &Origin, allowed: &[Origin]) -> Option<Self> {
        if raw.is_empty() || raw.len() > MAX_REDIRECT_LEN || !plain(raw) {
            return None;
        }
        // What a frontend that decodes once more would see must be just as harmless (an
        // encoded space inside a path is fine; controls and backslashes are not).
        let decoded = percent_decode_str(raw).decode_utf8().ok()?;
        if !plain(&decoded.replace(' ', "")) || decoded.starts_with(' ') {
            return None;
        }
        if raw.starts_with('/') {
            return local_path(raw, &decoded, public).map(Self);
        }
        allowed_absolute(raw, public, allowed).map(Self)
    }

    /// The target, for a `Location` header.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RedirectTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedirectTarget").field(&self.0).finish()
    }
}

/// No ASCII control character, space or backslash: what browsers drop or reinterpret.
fn plain(text: &str) -> bool {
    !text
        .chars()
        .any(|c| c.is_ascii_control() || c == ' ' || c == '\\' || c == '\u{a0}')
}

/// A path on the public origin: one leading `/`, never `//`, in raw and decoded form, and it
/// resolves to the public origin. Answers it as the URL parser serialises it (path, query and
/// fragment, percent-encoded: always a valid `Location` header value).
fn local_path(raw: &str, decoded: &str, public: &Origin) -> Option<String> {
    let single_slash = |t: &str| t.starts_with('/') && !t.starts_with("//");
    if !single_slash(raw) || !single_slash(decoded) {
        return None;
    }
    let resolved = url::Url::parse(public.as_str()).ok()?.join(raw).ok()?;
    let stays = Origin::of_url(resolved.as_str()).is_some_and(|o| &o == public);
    // Everything after the origin: path, query and fragment.
    let path = resolved
        .as_str()
        .get(public.as_str().len()..)
        .filter(|_| stays)?;
    single_slash(path).then(|| path.to_owned())
}

/// An absolute `http(s)` URL without user info whose origin is allowed; its serialised form.
fn allowed_absolute(raw: &str, public: &Origin, allowed: &[Origin]) -> Option<String> {
    // `https:evil.example` parses as `https://evil.example/`; demanding `//` after the scheme
    // keeps the text and its meaning the same.
    let lower = raw.get(..8).unwrap_or(raw).to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return None;
    }
    let url = url::Url::parse(raw).ok()?;
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
        || url.host_str().is_none()
    {
        return None;
    }
    let origin = Origin::of_url(url.as_str())?;
    (&origin == public || allowed.contains(&origin)).then(|| url.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn public() -> Origin {
        Origin::parse("https://app.example.com").unwrap()
    }

    fn allowed() -> Vec<Origin> {
        vec![Origin::parse("https://web.example.com").unwrap()]
    }

    fn sanitize(raw: &str) -> String {
        RedirectTarget::sanitize(raw, &public(), &allowed())
            .as_str()
            .to_owned()
    }

    // SECURITY.md #33: every payload of the list falls back to `/`.
    #[test]
    fn the_payload_list_falls_back_to_root() {
        for payload in [
            "//evil.com",
            "/\\evil.com",
            "\\/evil.com",
            "/%09/evil.com",
            "%0a//evil.com",
            "https:evil.com",
            "@evil.com",
            ".evil.com",
            "https://app.example.com.evil.com",
            "https://app.example.com\\@evil.com",
            "javascript:alert(1)",
            "data:",
            "data:text/html,<script>alert(1)</script>",
            // More of the same families.
            "///evil.com",
            "/\t/evil.com",
            "/\n/evil.com",
            " //evil.com",
            "/%2F%2Fevil.com",
            "/%2f/evil.com",
            "/%5Cevil.com",
            "/%5c%5cevil.com",
            "https://evil.com",
            "https://evil.com/https://app.example.com",
            "https://user@app.example.com/",
            "https://app.example.com@evil.com/",
            "https://app.example.com:pass@evil.com/",
            "http://app.example.com/",
            "https://app.example.com:8443/",
            "https://web.example.com.evil.com/",
            "HTTPS:evil.com",
            "https:/evil.com",
            "https:\\\\evil.com",
            "ftp://app.example.com/",
            "vbscript:msgbox(1)",
            "evil.com",
            "",
            "/%ff",
            "/\u{0}",
            "/\u{7f}",
            "/\u{a0}//evil.com",
        ] {
            assert_eq!(sanitize(payload), "/", "{payload:?}");
            assert!(
                RedirectTarget::check(payload, &public(), &allowed()).is_none(),
                "{payload:?}"
            );
        }
        assert_eq!(sanitize(&format!("/{}", "a".repeat(MAX_REDIRECT_LEN))), "/");
    }

    #[test]
    fn local_paths_and_allowed_origins_pass() {
        for (raw, expected) in [
            ("/", "/"),
            ("/dashboard", "/dashboard"),
            (
                "/settings/security?tab=mfa#codes",
                "/settings/security?tab=mfa#codes",
            ),
            ("/a%20b", "/a%20b"),
            ("/ünïcode", "/%C3%BCn%C3%AFcode"),
            (
                "https://app.example.com/after",
                "https://app.example.com/after",
            ),
            ("https://APP.example.com/x", "https://app.example.com/x"),
            ("https://web.example.com", "https://web.example.com/"),
            (
                "https://web.example.com:443/x?y=1",
                "https://web.example.com/x?y=1",
            ),
        ] {
            assert_eq!(sanitize(raw), expected, "{raw:?}");
        }
    }

    proptest! {
        // Whatever passes is a path that stays on the public origin, or a URL on an allowed
        // origin; in both forms a browser lands on an allowed origin.
        #[test]
        fn what_passes_lands_on_an_allowed_origin(raw in "\\PC{0,40}|[/\\\\%@.:a-z0-9\\t\\n]{0,24}") {
            if let Some(target) = RedirectTarget::check(&raw, &public(), &allowed()) {
                let t = target.as_str();
                let base = url::Url::parse(public().as_str()).unwrap();
                let landed = Origin::of_url(base.join(t).unwrap().as_str()).unwrap();
                prop_assert!(landed == public() || allowed().contains(&landed), "{t:?}");
                prop_assert!(!t.starts_with("//"));
                prop_assert!(!t.contains('\\'));
            }
        }
    }
}
