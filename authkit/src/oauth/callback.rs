//! Reading the provider's redirect back to us (`/oauth/{provider}/callback?…`): hostile input,
//! parsed strictly and never echoed.

/// Longest parameter value accepted (codes and states are far shorter).
const MAX_VALUE_LEN: usize = 2048;
/// Longest query string accepted.
const MAX_QUERY_LEN: usize = 8192;

/// An error the provider reported instead of a code (RFC 6749 §4.1.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderErrorCode {
    /// `access_denied`: the user (or the provider's policy) refused.
    AccessDenied,
    /// Any other code, kept only if it is a short `[a-z_]` word (for logs).
    Other(Option<String>),
}

/// The parameters of a callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackParams {
    /// The `state`, if present.
    pub state: Option<String>,
    /// The authorization code, or the provider's error.
    pub outcome: Result<String, ProviderErrorCode>,
    /// The RFC 9207 `iss` parameter, if present (compared with the provider's issuer).
    pub issuer: Option<String>,
}

/// Why a callback query was refused before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed callback query")]
pub struct MalformedCallback;

impl CallbackParams {
    /// Parses a raw query string. Refuses repeated parameters (RFC 6749 §3.1), oversized
    /// values, and a query with neither `code` nor `error`.
    pub fn parse(query: &str) -> Result<Self, MalformedCallback> {
        if query.len() > MAX_QUERY_LEN {
            return Err(MalformedCallback);
        }
        let (mut state, mut code, mut error, mut issuer) = (None, None, None, None);
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match key.as_ref() {
                "state" => &mut state,
                "code" => &mut code,
                "error" => &mut error,
                "iss" => &mut issuer,
                // error_description, error_uri, session_state, scope, authuser, prompt …
                _ => continue,
            };
            if slot.is_some()
                || value.is_empty()
                || value.len() > MAX_VALUE_LEN
                || value.chars().any(char::is_control)
            {
                return Err(MalformedCallback);
            }
            *slot = Some(value.into_owned());
        }
        let outcome = match (code, error) {
            (Some(code), None) => Ok(code),
            (None, Some(error)) => Err(if error == "access_denied" {
                ProviderErrorCode::AccessDenied
            } else {
                let word =
                    error.len() <= 64 && error.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
                ProviderErrorCode::Other(word.then_some(error))
            }),
            _ => return Err(MalformedCallback),
        };
        Ok(Self {
            state,
            outcome,
            issuer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_code_and_the_state() {
        let p = CallbackParams::parse("code=abc&state=xyz&iss=https%3A%2F%2Fop.example").unwrap();
        assert_eq!(p.outcome, Ok("abc".into()));
        assert_eq!(p.state.as_deref(), Some("xyz"));
        assert_eq!(p.issuer.as_deref(), Some("https://op.example"));
    }

    #[test]
    fn reads_provider_errors_without_keeping_free_text() {
        let p = CallbackParams::parse("error=access_denied&error_description=no&state=s").unwrap();
        assert_eq!(p.outcome, Err(ProviderErrorCode::AccessDenied));
        let p = CallbackParams::parse("error=server_error&state=s").unwrap();
        assert_eq!(
            p.outcome,
            Err(ProviderErrorCode::Other(Some("server_error".into())))
        );
        let p = CallbackParams::parse("error=%3Cscript%3E").unwrap();
        assert_eq!(p.outcome, Err(ProviderErrorCode::Other(None)));
    }

    #[test]
    fn refuses_ambiguous_or_oversized_queries() {
        for bad in [
            "",
            "state=s",
            "code=a&code=b&state=s",
            "code=a&state=s&state=t",
            "code=a&error=access_denied",
            "code=&state=s",
            "code=a%0Ab&state=s",
        ] {
            assert_eq!(
                CallbackParams::parse(bad),
                Err(MalformedCallback),
                "{bad:?}"
            );
        }
        let long = format!("code={}&state=s", "a".repeat(MAX_VALUE_LEN + 1));
        assert!(CallbackParams::parse(&long).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(query in ".{0,300}") {
            let _ = CallbackParams::parse(&query);
        }
    }
}
