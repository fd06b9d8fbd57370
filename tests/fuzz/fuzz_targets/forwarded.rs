//! `forwarded::parse_entry` and `forwarded::client_ip_from`: the client address behind
//! trusted proxies, which decides whose per-client limit a registration counts against.
//!
//! Input format: NUL-separated fields. Field 0 is the peer address (default `10.0.0.1`
//! when it does not parse); field 1 the trusted networks, comma-separated `IpNet`s
//! (default `10.0.0.0/8,fd00::/8` when absent; ones that do not parse are left out);
//! fields 2.. are the `X-Forwarded-For` lines, raw bytes (a header value may hold any
//! byte but controls, and the function takes any).
//!
//! Checked:
//! - `client_ip_from` agrees with a reference that collects every entry left to right and
//!   walks them by index from the right, with an entry parser built on `std`'s address
//!   parsers (the documented forms: `a.b.c.d`, `a.b.c.d:port`, IPv6, `[IPv6]`,
//!   `[IPv6]:port`, spaces and tabs around);
//! - the result is the peer or an address that appears in the header, and with nothing
//!   trusted it is always the peer;
//! - when the answer came from an untrusted entry (or an unreadable one, or an untrusted
//!   peer), nothing a client adds further left changes it: a client cannot pick its own
//!   address;
//! - `client_ip` over a real `HeaderMap` gives the same answer;
//! - a parsed entry is canonical (never IPv4-mapped) and reads back from its own text.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hyper::header::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use oxitraffic::config::IpNet;
use oxitraffic::forwarded::{X_FORWARDED_FOR, client_ip, client_ip_from, parse_entry};
use oxitraffic_fuzz::utf8_prefix;

fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

fn reference_port(text: &str) -> bool {
    (1..=5).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_digit())
        && text.parse::<u32>().is_ok_and(|port| port <= 65_535)
}

/// One entry by the documented forms, tried one after the other.
fn reference_entry(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim_matches([' ', '\t']);
    if let Ok(address) = text.parse::<IpAddr>() {
        return Some(canonical(address));
    }
    let bracketed = |t: &str| -> Option<IpAddr> {
        let inner = t.strip_prefix('[')?.strip_suffix(']')?;
        inner
            .parse::<Ipv6Addr>()
            .ok()
            .map(|a| canonical(IpAddr::V6(a)))
    };
    if let Some(address) = bracketed(text) {
        return Some(address);
    }
    let (host, port) = text.rsplit_once(':')?;
    if !reference_port(port) {
        return None;
    }
    if host.starts_with('[') {
        return bracketed(host);
    }
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The documented walk. The flag says whether the answer was decided by an untrusted peer,
/// an untrusted entry or an unreadable one (so nothing further left can change it).
fn reference_client(
    peer: IpAddr,
    lines: &[&[u8]],
    trusted: &dyn Fn(IpAddr) -> bool,
) -> (IpAddr, bool) {
    let peer = canonical(peer);
    if !trusted(peer) {
        return (peer, true);
    }
    let entries: Vec<&[u8]> = lines
        .iter()
        .flat_map(|line| line.split(|&b| b == b','))
        .collect();
    for index in (0..entries.len()).rev() {
        match reference_entry(entries[index]) {
            None => return (peer, true),
            Some(address) if !trusted(address) => return (address, true),
            Some(_) => {}
        }
    }
    let leftmost = entries.first().and_then(|entry| reference_entry(entry));
    (leftmost.unwrap_or(peer), false)
}

fn check_entry(entry: &[u8]) {
    let parsed = parse_entry(entry);
    assert_eq!(
        parsed,
        reference_entry(entry),
        "{:?}",
        String::from_utf8_lossy(entry)
    );
    if let Some(address) = parsed {
        assert_eq!(canonical(address), address, "{address}: not canonical");
        let written = match address {
            IpAddr::V4(v4) => vec![v4.to_string(), format!("{v4}:80"), format!(" {v4}:65535\t")],
            IpAddr::V6(v6) => vec![v6.to_string(), format!("[{v6}]"), format!("[{v6}]:443")],
        };
        for text in written {
            assert_eq!(parse_entry(text.as_bytes()), Some(address), "{text:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut fields = data.split(|&b| b == 0);
    let peer = fields
        .next()
        .and_then(|f| utf8_prefix(f).parse::<IpAddr>().ok())
        .unwrap_or(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    let nets: Vec<IpNet> = match fields.next() {
        Some(field) => utf8_prefix(field)
            .split(',')
            .filter_map(|text| IpNet::parse(text.trim()).ok())
            .collect(),
        None => ["10.0.0.0/8", "fd00::/8"]
            .iter()
            .map(|text| IpNet::parse(text).expect("valid networks"))
            .collect(),
    };
    let lines: Vec<&[u8]> = fields.collect();
    let trusted = |address: IpAddr| nets.iter().any(|net| net.contains(address));

    for line in &lines {
        for entry in line.split(|&b| b == b',') {
            check_entry(entry);
        }
    }

    let client = client_ip_from(peer, lines.iter().copied(), trusted);
    let (expected, decided) = reference_client(peer, &lines, &trusted);
    assert_eq!(
        client, expected,
        "peer {peer}, trusted {nets:?}, lines {lines:?}"
    );
    let in_header = lines
        .iter()
        .flat_map(|line| line.split(|&b| b == b','))
        .any(|entry| parse_entry(entry) == Some(client));
    assert!(
        client == canonical(peer) || in_header,
        "{client} came from nowhere"
    );

    // Nothing trusted: the header is the client's own words, and ignored.
    assert_eq!(
        client_ip_from(peer, lines.iter().copied(), |_| false),
        canonical(peer)
    );

    // Whatever a client writes before what our proxies appended changes nothing.
    if decided {
        let forged: [&[u8]; 3] = [
            b"6.6.6.6, unknown",
            b"",
            lines.first().copied().unwrap_or(b""),
        ];
        for extra in forged {
            let mut longer = vec![extra];
            longer.extend(lines.iter().copied());
            assert_eq!(
                client_ip_from(peer, longer.iter().copied(), trusted),
                client,
                "a line {extra:?} in front changed the client"
            );
        }
    }

    // As the server calls it, when every line is a valid header value.
    let mut headers = HeaderMap::new();
    let mut all_valid = true;
    for line in &lines {
        match HeaderValue::from_bytes(line) {
            Ok(value) => {
                headers.append(X_FORWARDED_FOR, value);
            }
            Err(_) => all_valid = false,
        }
    }
    if all_valid {
        assert_eq!(client_ip(peer, &headers, trusted), client);
    }
});
