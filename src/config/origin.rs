//! Web origins (`scheme://host[:port]`) and the host/port check shared with referrers.
//!
//! An accepted origin reads one way only: its serialised form is what CORS compares with the
//! `Origin` header and its host is what the path check connects to, so a host that a browser
//! and our HTTP client could read differently is refused rather than normalised.

/// A web origin: `scheme://host[:port]`, nothing after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    serialized: String,
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl Origin {
    pub fn parse(text: &str) -> Result<Origin, String> {
        // Scheme and host are case-insensitive, and nothing else may follow them.
        let text = text.trim().to_ascii_lowercase();
        let (tls, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err("must start with http:// or https://".into());
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() {
            return Err("has no host".into());
        }
        if authority.contains(['/', '?', '#', '@', '\\'])
            || authority
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(
                "must be an origin: scheme and host (and port) only, no path, query or user".into(),
            );
        }
        let (host, port) = split_host_port(authority)?;
        let default_port = if tls { 443 } else { 80 };
        let port = port.unwrap_or(default_port);
        let scheme = if tls { "https" } else { "http" };
        let serialized = if port == default_port {
            format!("{scheme}://{host}")
        } else {
            format!("{scheme}://{host}:{port}")
        };
        Ok(Origin {
            serialized,
            tls,
            host: host.to_string(),
            port,
        })
    }

    /// The origin as a browser sends it in the `Origin` header.
    pub fn as_str(&self) -> &str {
        &self.serialized
    }
}

/// Splits an authority (`host[:port]`, userinfo already removed) and checks both parts: a
/// host is a DNS name or IPv4 address (letters, digits, `-`, `.`, `_`) or a bracketed IPv6
/// address; a port is 1 to 65535 in plain digits. Shared by origins and referrers, so that
/// neither can carry a host that reads two ways.
pub fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let end = bracketed
            .find(']')
            .ok_or("has an unclosed `[` in its IPv6 host")?;
        if bracketed[..end].parse::<std::net::Ipv6Addr>().is_err() {
            return Err("has an invalid IPv6 host".into());
        }
        let after = &bracketed[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err("has characters after its IPv6 host".into()),
        };
        (&authority[..end + 2], port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err("has no host".into());
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err("has an invalid host name".into());
        }
        (host, port)
    };
    let port = match port {
        Some(port) => Some(
            Some(port)
                .filter(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|&p| p != 0)
                .ok_or("has an invalid port")?,
        ),
        None => None,
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised() {
        let origin = Origin::parse("HTTPS://Example.org:443/").unwrap();
        assert_eq!(origin.as_str(), "https://example.org");
        let origin = Origin::parse("http://[::1]:8080").unwrap();
        assert_eq!((origin.host.as_str(), origin.port), ("[::1]", 8080));
        for bad in [
            "ftp://x",
            "http://",
            "http://a@b",
            "http://a:0",
            "http://a:x",
            "https://a/b",
            "http://a b",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origins_with_hosts_that_read_two_ways_are_refused() {
        // Found by fuzzing (tests/fuzz/regressions/config): a control character used to
        // reach the Host header and panic at start-up.
        for bad in [
            "https://exam\u{1}ple.org",
            "http://s::1]:80",
            "https://a:b:8443",
            "http://a:+80",
            "http://a:080000",
            "http://[zz::1]",
            "http://exa mple.org",
            "http://ex%41mple.org",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad:?}");
        }
        for good in [
            "http://localhost:8080",
            "https://Example.ORG",
            "http://[::1]:80",
            "http://10.0.0.1",
            "http://web_site",
        ] {
            let origin = Origin::parse(good).unwrap();
            assert!(
                hyper::header::HeaderValue::from_str(origin.as_str()).is_ok(),
                "{good}"
            );
            assert_eq!(
                Origin::parse(origin.as_str()).unwrap(),
                origin,
                "{good} re-parses to itself"
            );
        }
    }

    #[test]
    fn host_and_port_split_strictly() {
        assert_eq!(
            split_host_port("a.example:8080"),
            Ok(("a.example", Some(8080)))
        );
        assert_eq!(split_host_port("[::1]"), Ok(("[::1]", None)));
        assert!(split_host_port("[::1]x").is_err());
        assert!(split_host_port(":80").is_err());
        assert!(split_host_port("a:65536").is_err());
    }
}
