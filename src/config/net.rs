//! IP networks, for `trusted_proxies`: an address (`127.0.0.1`, `::1`) or a CIDR block
//! (`10.0.0.0/8`, `fd00::/8`).
//!
//! Invariants: the stored address has no bits set beyond the prefix (a block written with
//! host bits is refused: `10.0.0.1/8` is more likely a typo than a wish), and an IPv4-mapped
//! IPv6 network (`::ffff:10.0.0.0/104`) is stored as the IPv4 network it means, so that
//! [`IpNet::contains`], which maps addresses the same way, matches a proxy whether the
//! socket reports it as `10.1.2.3` or as `::ffff:10.1.2.3` (a dual-stack listener does).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    address: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// The error is the end of a sentence starting with the setting's name.
    pub fn parse(text: &str) -> Result<IpNet, String> {
        let (address_text, prefix_text) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address_text.parse().map_err(|_| {
            format!(
                "(`{text}`) must be an IP address or a CIDR block such as 10.0.0.0/8 or fd00::/8"
            )
        })?;
        let max = max_prefix(address);
        let prefix = match prefix_text {
            None => max,
            Some(digits) => parse_prefix(digits, max)
                .ok_or_else(|| format!("(`{text}`) has an invalid prefix length: 0 to {max}"))?,
        };
        let net = IpNet { address, prefix }.unmapped();
        let masked = mask(net.address, net.prefix);
        if masked != net.address {
            let suggestion = IpNet {
                address: masked,
                prefix: net.prefix,
            };
            return Err(format!(
                "(`{text}`) has bits set after its /{} prefix: write {suggestion} for the block, \
                 or the address alone",
                net.prefix
            ));
        }
        Ok(net)
    }

    /// Whether `address` is in this network; IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = unmap(address);
        match (self.address, address) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(address, self.prefix) == self.address
            }
            _ => false,
        }
    }

    pub fn address(&self) -> IpAddr {
        self.address
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn unmapped(self) -> IpNet {
        match self.address {
            IpAddr::V6(v6) if self.prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => IpNet {
                    address: IpAddr::V4(v4),
                    prefix: self.prefix - 96,
                },
                None => self,
            },
            _ => self,
        }
    }
}

/// Plain digits without a sign or leading zeros (`u8::from_str` takes `+8` and `008`), so a
/// block reads one way only.
fn parse_prefix(digits: &str, max: u8) -> Option<u8> {
    let canonical = !digits.is_empty()
        && digits.len() <= 3
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    digits.parse().ok().filter(|&p| canonical && p <= max)
}

fn max_prefix(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn unmap(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

fn mask(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & mask))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & mask))
        }
    }
}

/// The canonical form: `10.0.0.0/8`, `fd00::/8`, and a single address without a prefix.
impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix == max_prefix(self.address) {
            write!(f, "{}", self.address)
        } else {
            write!(f, "{}/{}", self.address, self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        IpNet::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn blocks_contain_their_addresses_only() {
        let private = net("10.0.0.0/8");
        assert!(private.contains(ip("10.0.0.1")) && private.contains(ip("10.255.255.255")));
        assert!(!private.contains(ip("11.0.0.0")) && !private.contains(ip("9.255.255.255")));
        let ula = net("fd00::/8");
        assert!(ula.contains(ip("fd12:3456::1")) && !ula.contains(ip("fe80::1")));
        assert!(!ula.contains(ip("10.0.0.1")) && !private.contains(ip("fd00::1")));
        let single = net("127.0.0.1");
        assert!(single.contains(ip("127.0.0.1")) && !single.contains(ip("127.0.0.2")));
        let everything = net("0.0.0.0/0");
        assert!(everything.contains(ip("203.0.113.9")) && !everything.contains(ip("::1")));
        assert!(net("::/0").contains(ip("2001:db8::1")));
        assert!(net("::1").contains(ip("::1")));
    }

    #[test]
    fn ipv4_mapped_addresses_match_as_ipv4() {
        assert!(net("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(net("127.0.0.1").contains(ip("::ffff:127.0.0.1")));
        assert!(!net("10.0.0.0/8").contains(ip("::ffff:11.1.2.3")));
        let mapped = net("::ffff:10.0.0.0/104");
        assert_eq!(mapped, net("10.0.0.0/8"));
        assert!(mapped.contains(ip("10.9.9.9")));
        assert_eq!(net("::ffff:1.2.3.4").to_string(), "1.2.3.4");
    }

    #[test]
    fn displays_canonically() {
        assert_eq!(net("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(net("127.0.0.1/32").to_string(), "127.0.0.1");
        assert_eq!(net("FD00:0::/8").to_string(), "fd00::/8");
        assert_eq!(net("2001:db8:0:0::/64").to_string(), "2001:db8::/64");
        assert_eq!(
            (net("fd00::/8").address(), net("fd00::/8").prefix()),
            (ip("fd00::"), 8)
        );
    }

    #[test]
    fn malformed_blocks_are_refused_with_a_reason() {
        for bad in [
            "",
            "localhost",
            "10.0.0",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/+8",
            "10.0.0.0/08",
            "10.0.0.0/8/8",
            " 10.0.0.1",
            "fe80::1%eth0",
            "10.0.0.0/-1",
        ] {
            assert!(IpNet::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            IpNet::parse("10.0.0.1/8").unwrap_err(),
            "(`10.0.0.1/8`) has bits set after its /8 prefix: write 10.0.0.0/8 for the block, or the address alone"
        );
        assert!(
            IpNet::parse("fd00::1/8")
                .unwrap_err()
                .contains("write fd00::/8")
        );
        assert!(IpNet::parse("10.0.0.0/33").unwrap_err().contains("0 to 32"));
    }
}
