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
        let trimmed = text.trim();
        if trimmed.contains('#') {
            return Err(err());
        }
        let uri: http::Uri = trimmed.parse().map_err(|_| err())?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(err());
        }
        Self::from_uri(&uri).ok_or_else(err)
    }

    /// The origin of a full URL (as in `Referer`).
    pub fn of_url(url: &str) -> Option<Self> {
        Self::from_uri(&url.trim().parse().ok()?)
    }

    fn from_uri(uri: &http::Uri) -> Option<Self> {
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            _ => return None,
        };
        // `http::Uri` accepts loose authorities (`host:8443x`, `host:[1]:443`); re-read the
        // authority strictly so that a typo is refused instead of silently becoming another
        // origin.
        let (host, port) = split_authority(uri.authority()?.as_str())?;
        Some(match port {
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

/// `host[:port]` or `[v6][:port]`, strictly: a host of `[a-z0-9.-]` (lower-cased) or a whole
/// IPv6 literal, and a port of 1–5 digits up to 65535.
fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, rest) = v6.split_once(']')?;
        addr.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match rest {
            "" => None,
            _ => Some(rest.strip_prefix(':')?),
        };
        (format!("[{}]", addr.to_ascii_lowercase()), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !ok {
            return None;
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port {
        None => None,
        Some(p) if (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    Some((host, port))
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
