//! The client's address behind trusted reverse proxies (SPEC §11 `trusted_proxies`), for
//! the per-client limit only: it is never stored or logged.
//!
//! A proxy appends the address it received a request from to `X-Forwarded-For`, so the
//! header reads left to right from the (claimed) client towards us, and only the entries
//! our own proxies appended can be believed. Walking from the right, every trusted address
//! is one of our proxies; the first untrusted one is whoever talked to our outermost proxy:
//! the client. Anything to its left was written by that client and is ignored, so a
//! client cannot choose its own address by sending the header itself.
//!
//! Rules, in order:
//! - the peer is not a trusted proxy: the peer (its header is the client's own words);
//! - walking every `X-Forwarded-For` line (in order, each split at commas) from the right,
//!   trusted entries are skipped and the first untrusted one is the client;
//! - if that entry does not parse as an address (empty, `unknown`, garbage), the peer: a
//!   proxy we trust wrote something we cannot read, and guessing further left would let the
//!   client pick;
//! - if every entry is trusted, the leftmost (the request came from inside);
//! - no header at all: the peer.
//!
//! Addresses are compared and returned in canonical form: an IPv4-mapped IPv6 address
//! (`::ffff:192.0.2.1`, what a dual-stack socket reports) is its IPv4 address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hyper::header::HeaderMap;

/// The address of the TCP peer a request came from, as the server hands it to the router
/// with every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub IpAddr);

/// The header, lower case as `HeaderMap` stores names.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The client's address for a request from `peer` carrying `headers`.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: impl Fn(IpAddr) -> bool) -> IpAddr {
    client_ip_from(
        peer,
        headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .map(|value| value.as_bytes()),
        trusted,
    )
}

/// [`client_ip`] over the raw values of the `X-Forwarded-For` lines, in the order received.
pub fn client_ip_from<'a>(
    peer: IpAddr,
    lines: impl DoubleEndedIterator<Item = &'a [u8]>,
    trusted: impl Fn(IpAddr) -> bool,
) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted(peer) {
        return peer;
    }
    let mut leftmost = None;
    for entry in lines.rev().flat_map(|line| line.rsplit(|b| *b == b',')) {
        let Some(address) = parse_entry(entry) else {
            return peer;
        };
        if !trusted(address) {
            return address;
        }
        leftmost = Some(address);
    }
    leftmost.unwrap_or(peer)
}

/// One `X-Forwarded-For` entry: `192.0.2.1`, `192.0.2.1:5678`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:443`, with optional spaces or tabs around it.
/// Anything else (an obfuscated `unknown`, a host name, a zone index) is `None`.
pub fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(trim_ows(entry)).ok()?;
    let address = if let Some(bracketed) = text.strip_prefix('[') {
        let (inside, rest) = bracketed.split_once(']')?;
        if !rest.is_empty() {
            parse_port(rest.strip_prefix(':')?)?;
        }
        IpAddr::V6(inside.parse::<Ipv6Addr>().ok()?)
    } else if let Some((host, port)) = text.split_once(':')
        && !port.contains(':')
    {
        // Exactly one colon: an IPv4 address with a port (an IPv6 address has at least two).
        parse_port(port)?;
        IpAddr::V4(host.parse::<Ipv4Addr>().ok()?)
    } else {
        text.parse::<IpAddr>().ok()?
    };
    Some(address.to_canonical())
}

fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Trims the optional whitespace HTTP lists allow around their elements: spaces and tabs.
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// Our proxies: 10.0.0.0/8 and fd00::/8.
    fn ours(address: IpAddr) -> bool {
        match address {
            IpAddr::V4(v4) => v4.octets()[0] == 10,
            IpAddr::V6(v6) => v6.octets()[0] == 0xfd,
        }
    }

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for line in lines {
            map.append(X_FORWARDED_FOR, HeaderValue::from_str(line).unwrap());
        }
        map
    }

    fn client(peer: &str, lines: &[&str]) -> IpAddr {
        client_ip(ip(peer), &headers(lines), ours)
    }

    #[test]
    fn entries_parse_with_and_without_ports() {
        for (entry, expected) in [
            ("192.0.2.1", "192.0.2.1"),
            ("192.0.2.1:5678", "192.0.2.1"),
            (" \t192.0.2.1 ", "192.0.2.1"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("::ffff:192.0.2.1", "192.0.2.1"),
            ("[::ffff:192.0.2.1]:80", "192.0.2.1"),
        ] {
            assert_eq!(
                parse_entry(entry.as_bytes()),
                Some(ip(expected)),
                "{entry:?}"
            );
        }
        for bad in [
            "",
            " ",
            "unknown",
            "example.org",
            "192.0.2.1:",
            "192.0.2.1:65536",
            "192.0.2.1:12a",
            "192.0.2.1:+80",
            "192.0.2",
            "192.0.2.01",
            "192.0.2.1 192.0.2.2",
            "[2001:db8::1",
            "[2001:db8::1]443",
            "[2001:db8::1]:",
            "[192.0.2.1]",
            "2001:db8::1]",
            "fe80::1%eth0",
            "_hidden",
            "192.0.2.1\u{a0}",
        ] {
            assert_eq!(parse_entry(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(parse_entry(b"192.0.2.\xff"), None);
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        assert_eq!(client("203.0.113.5", &["198.51.100.7"]), ip("203.0.113.5"));
        assert_eq!(client("203.0.113.5", &[]), ip("203.0.113.5"));
    }

    #[test]
    fn the_first_untrusted_entry_from_the_right_is_the_client() {
        assert_eq!(client("10.0.0.1", &["198.51.100.7"]), ip("198.51.100.7"));
        // Two of our proxies in a row.
        assert_eq!(
            client("10.0.0.1", &["198.51.100.7, 10.0.0.2"]),
            ip("198.51.100.7")
        );
        // A client that sends its own header: our proxy appends the real address.
        assert_eq!(
            client("10.0.0.1", &["6.6.6.6, 198.51.100.7"]),
            ip("198.51.100.7")
        );
        // ... even when it claims to be one of our proxies.
        assert_eq!(
            client("10.0.0.1", &["10.9.9.9, 198.51.100.7"]),
            ip("198.51.100.7")
        );
        assert_eq!(
            client("fd00::1", &["2001:db8::7, fd00::2"]),
            ip("2001:db8::7")
        );
    }

    #[test]
    fn every_header_line_counts_in_order() {
        // Proxies that add a line instead of extending the last one.
        assert_eq!(
            client("10.0.0.1", &["6.6.6.6", "198.51.100.7", "10.0.0.2"]),
            ip("198.51.100.7")
        );
        // A client's extra line is further left than anything our proxies wrote.
        assert_eq!(
            client("10.0.0.1", &["6.6.6.6, 10.0.0.3", "198.51.100.7"]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn an_unreadable_client_entry_falls_back_to_the_peer() {
        assert_eq!(
            client("10.0.0.1", &["198.51.100.7, unknown"]),
            ip("10.0.0.1")
        );
        assert_eq!(client("10.0.0.1", &["198.51.100.7, "]), ip("10.0.0.1"));
        assert_eq!(client("10.0.0.1", &[""]), ip("10.0.0.1"));
        assert_eq!(
            client("10.0.0.1", &["198.51.100.7,,10.0.0.2"]),
            ip("10.0.0.1"),
            "an empty entry where the client should be"
        );
        let mut map = HeaderMap::new();
        map.append(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"198.51.100.\xff").unwrap(),
        );
        assert_eq!(client_ip(ip("10.0.0.1"), &map, ours), ip("10.0.0.1"));
        // Garbage left of the client is the client's own business.
        assert_eq!(
            client("10.0.0.1", &["garbage,,unknown, 198.51.100.7"]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn when_everything_is_trusted_the_leftmost_is_the_client() {
        assert_eq!(client("10.0.0.1", &["10.0.0.9, 10.0.0.2"]), ip("10.0.0.9"));
        assert_eq!(client("10.0.0.1", &[]), ip("10.0.0.1"), "no header");
    }

    #[test]
    fn ports_and_brackets_do_not_hide_the_address() {
        assert_eq!(
            client("10.0.0.1", &["198.51.100.7:5678, 10.0.0.2:80"]),
            ip("198.51.100.7")
        );
        assert_eq!(
            client("10.0.0.1", &["[2001:db8::7]:443,[fd00::3]:80"]),
            ip("2001:db8::7")
        );
    }

    #[test]
    fn mapped_addresses_are_trusted_and_returned_as_ipv4() {
        // A dual-stack listener reports an IPv4 proxy as ::ffff:10.0.0.1.
        assert_eq!(
            client("::ffff:10.0.0.1", &["::ffff:198.51.100.7"]),
            ip("198.51.100.7")
        );
        assert_eq!(client("::ffff:203.0.113.5", &[]), ip("203.0.113.5"));
    }
}
