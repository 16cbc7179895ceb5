use std::fmt;

/// A web origin, serialised as `scheme://host[:port]` in lower case with the default port
/// omitted: the form browsers send in `Origin`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin(String);

/// An allowed origin that is not a plain `http(s)://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an origin of the form https://host[:port]")]
pub struct OriginError(pub String);

impl Origin {
    /// Parses an `Origin` header value or a configured origin. Refuses `null`, wildcards,
    /// user info, paths, queries and fragments.
    pub fn parse(text: &str) -> Result<Self, OriginError> {
        let err = || OriginError(text.to_owned());
        let uri: http::Uri = text.trim().parse().map_err(|_| err())?;
        let path_ok = matches!(uri.path(), "" | "/") && uri.query().is_none();
        if !path_ok || text.trim().ends_with('/') && uri.path() != "/" {
            return Err(err());
        }
        Self::from_uri(&uri).ok_or_else(err)
    }

    /// The origin of a full URL (as in `Referer`).
    pub fn of_url(url: &str) -> Option<Self> {
        Self::from_uri(&url.parse().ok()?)
    }

    fn from_uri(uri: &http::Uri) -> Option<Self> {
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let authority = uri.authority()?;
        if authority.as_str().contains('@') {
            return None;
        }
        let host = authority.host().to_ascii_lowercase();
        if host.is_empty() || host.contains('*') {
            return None;
        }
        let default_port = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            _ => return None,
        };
        Some(match authority.port_u16() {
            Some(p) if p != default_port => Self(format!("{scheme}://{host}:{p}")),
            _ => Self(format!("{scheme}://{host}")),
        })
    }

    /// The serialised origin.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this origin uses `https`.
    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_default_ports() {
        assert_eq!(
            Origin::parse("HTTPS://App.Example.org:443")
                .unwrap()
                .as_str(),
            "https://app.example.org"
        );
        assert_eq!(
            Origin::parse("http://localhost:5173").unwrap().as_str(),
            "http://localhost:5173"
        );
        assert_eq!(
            Origin::parse("https://app.example.org/").unwrap().as_str(),
            "https://app.example.org"
        );
        assert_eq!(
            Origin::of_url("https://app.example.org/page?q=1")
                .unwrap()
                .as_str(),
            "https://app.example.org"
        );
    }

    #[test]
    fn refuses_non_origins() {
        for bad in [
            "null",
            "*",
            "https://*.example.org",
            "ftp://x.org",
            "https://u:p@x.org",
            "https://x.org/path",
            "x.org",
            "",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }
}
