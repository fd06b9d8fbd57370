//! `config::IpNet`: the `trusted_proxies` networks, parsed from the configuration and asked
//! for every request whose peer might be one of our proxies.
//!
//! Input format: NUL-separated fields. Field 0 is the network; field 1, if it parses, is an
//! address to test; the raw bytes of field 1 also make an IPv4 and an IPv6 address (first
//! 4 and 16 bytes, zero-padded), so the fuzzer reaches every address without spelling it.
//!
//! Checked:
//! - `parse` never panics, accepts exactly what a reference accepts (an address as `std`
//!   reads it, optionally `/` and a prefix in plain digits without sign or leading zero up
//!   to the family's width, no bits set past the prefix, IPv4-mapped networks of /96 and
//!   longer read as IPv4), and its errors are one line;
//! - an accepted network prints in a form that parses back to itself;
//! - `contains` agrees with a reference that counts the leading bits an address shares with
//!   the network (IPv4-mapped addresses count as IPv4, nothing else crosses families), and
//!   the network's first and last addresses are inside, the neighbours outside.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use oxitraffic::config::IpNet;
use oxitraffic_fuzz::fields;

/// Address bits as a left-aligned `u128` and the family's width.
fn bits(address: IpAddr) -> (u128, u32) {
    match address {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

fn unmap(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

/// The network `text` means, as (address, prefix), or `None`.
fn reference_parse(text: &str) -> Option<(IpAddr, u32)> {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let address: IpAddr = address.parse().ok()?;
    let width = bits(address).1;
    let prefix = match prefix {
        None => width,
        Some(digits) => {
            let plain = !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && (digits == "0" || !digits.starts_with('0'))
                && digits.len() <= 3;
            let value: u32 = digits.parse().ok().filter(|_| plain)?;
            (value <= width).then_some(value)?
        }
    };
    // A mapped network that covers only mapped addresses is the IPv4 network it names.
    let (address, prefix) = match address {
        IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => {
            (unmap(address), prefix - 96)
        }
        _ => (address, prefix),
    };
    let (value, _) = bits(address);
    let host_bits = value.checked_shl(prefix).unwrap_or(0);
    (host_bits == 0).then_some((address, prefix))
}

/// Leading bits `address` shares with `network`, if both are of the same family once
/// IPv4-mapped addresses are read as IPv4.
fn reference_contains(network: (IpAddr, u32), address: IpAddr) -> bool {
    let address = unmap(address);
    if address.is_ipv4() != network.0.is_ipv4() {
        return false;
    }
    let shared = (bits(address).0 ^ bits(network.0).0).leading_zeros();
    shared >= network.1
}

fn check_contains(net: &IpNet, reference: (IpAddr, u32), address: IpAddr) {
    assert_eq!(
        net.contains(address),
        reference_contains(reference, address),
        "{net} contains {address}?"
    );
}

fuzz_target!(|data: &[u8]| {
    let fields = fields(data);
    let text = fields[0];
    let parsed = IpNet::parse(text);
    let reference = reference_parse(text);
    assert_eq!(
        parsed
            .as_ref()
            .ok()
            .map(|net| (net.address(), u32::from(net.prefix()))),
        reference,
        "{text:?}: {parsed:?}"
    );
    let net = match parsed {
        Ok(net) => net,
        Err(error) => {
            // Quoted as written; the configuration escapes control characters when it
            // shows the error (the `config` target checks that).
            assert!(error.starts_with("(`"), "{error:?}");
            if !text.contains(['\n', '\r']) {
                assert!(!error.contains(['\n', '\r']), "{error:?}");
            }
            return;
        }
    };
    let reference = reference.expect("agreed above");
    assert_eq!(
        IpNet::parse(&net.to_string()),
        Ok(net),
        "{net} does not read back"
    );

    // Edges of the block.
    let (first, width) = bits(net.address());
    let size_bits = width - u32::from(net.prefix());
    let span = if size_bits == 0 {
        0
    } else {
        u128::MAX >> (128 - size_bits) << (128 - width)
    };
    let last = first | span;
    let unit = 1u128 << (128 - width);
    let from_bits = |value: u128| -> IpAddr {
        if width == 32 {
            IpAddr::V4(Ipv4Addr::from((value >> 96) as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(value))
        }
    };
    // The first address is never an IPv4-mapped one (a mapped network is stored as IPv4);
    // the last may be (`::/80` ends in `::ffff:255.255.255.255`), and then counts as IPv4.
    assert!(net.contains(from_bits(first)), "{net}");
    let edges = [Some(last), first.checked_sub(unit), last.checked_add(unit)];
    for edge in edges.into_iter().flatten() {
        check_contains(&net, reference, from_bits(edge));
    }
    if let IpAddr::V4(v4) = net.address() {
        assert!(
            net.contains(IpAddr::V6(v4.to_ipv6_mapped())),
            "{net}: mapped form"
        );
    }

    let raw = fields.get(1).map_or(&[][..], |f| f.as_bytes());
    let mut v6 = [0u8; 16];
    v6[..raw.len().min(16)].copy_from_slice(&raw[..raw.len().min(16)]);
    let mut v4 = [0u8; 4];
    v4[..raw.len().min(4)].copy_from_slice(&raw[..raw.len().min(4)]);
    let mut addresses = vec![
        IpAddr::V6(Ipv6Addr::from(v6)),
        IpAddr::V4(Ipv4Addr::from(v4)),
    ];
    addresses.push(IpAddr::V6(Ipv4Addr::from(v4).to_ipv6_mapped()));
    if let Some(Ok(address)) = fields.get(1).map(|f| f.parse::<IpAddr>()) {
        addresses.push(address);
    }
    for address in addresses {
        check_contains(&net, reference, address);
    }
});
