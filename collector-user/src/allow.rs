//! The exporter allow-list (`--allow`, `allow` in the config file): the source prefixes that may
//! send flow exports. In XDP mode the program gets it as LPM maps and drops other sources' frames
//! itself; the UDP sockets (all of UDP mode, and XDP mode's slow path for IP fragments and frames
//! the program passed) check each datagram's source with [`AllowList`], and count what they drop.

use std::{fmt, net::IpAddr, str::FromStr};

/// An exporter source prefix of the allow-list, e.g. `192.0.2.0/24`, `2001:db8::/32`, or a
/// plain address (a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllowPrefix {
    /// The network address (host bits cleared).
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub len: u8,
}

/// An `--allow` value that is not a prefix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not an IP prefix (ADDR or ADDR/LEN, LEN ≤ 32 for IPv4, ≤ 128 for IPv6)")]
pub struct AllowPrefixError(String);

impl FromStr for AllowPrefix {
    type Err = AllowPrefixError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || AllowPrefixError(text.to_owned());
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            Some(len) => len.parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if len > max {
            return Err(bad());
        }
        let addr = match addr {
            IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & mask_v4(len)).into()),
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & mask_v6(len)).into()),
        };
        Ok(AllowPrefix { addr, len })
    }
}

impl fmt::Display for AllowPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl AllowPrefix {
    /// Whether `ip` is inside this prefix (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask_v4(self.len) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask_v6(self.len) == u128::from(net)
            }
            _ => false,
        }
    }
}

/// The network mask of an IPv4 prefix of `len` bits (0 to 32).
fn mask_v4(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

/// The network mask of an IPv6 prefix of `len` bits (0 to 128).
fn mask_v6(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// The allow-list as a datagram source checks it. Without prefixes every source is allowed.
/// Lists are short (a few exporter networks), so a datagram's check is a scan of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    prefixes: Box<[AllowPrefix]>,
}

impl AllowList {
    pub fn new(prefixes: &[AllowPrefix]) -> AllowList {
        AllowList {
            prefixes: prefixes.into(),
        }
    }

    /// Whether datagrams from `ip` may be collected.
    #[inline]
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.prefixes.is_empty() || self.prefixes.iter().any(|p| p.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_prefixes_parse_and_clear_host_bits() {
        let prefix: AllowPrefix = "192.0.2.77/24".parse().unwrap();
        assert_eq!(prefix.to_string(), "192.0.2.0/24");
        assert_eq!("10.1.2.3".parse::<AllowPrefix>().unwrap().len, 32);
        assert_eq!(
            "0.0.0.0/0".parse::<AllowPrefix>().unwrap().to_string(),
            "0.0.0.0/0"
        );
        let v6: AllowPrefix = "2001:db8:ffff::1/32".parse().unwrap();
        assert_eq!(v6.to_string(), "2001:db8::/32");
        assert_eq!("::1".parse::<AllowPrefix>().unwrap().len, 128);
        for bad in ["192.0.2.0/33", "2001:db8::/129", "host/8", "10.0.0.0/x", ""] {
            assert!(bad.parse::<AllowPrefix>().is_err(), "{bad}");
        }
    }

    #[test]
    fn sources_are_allowed_by_prefix_and_family() {
        let list = AllowList::new(&[
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
            "192.0.2.7".parse().unwrap(),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for allowed in ["10.1.2.3", "2001:db8::1", "192.0.2.7", "::ffff:10.9.9.9"] {
            assert!(list.allows(ip(allowed)), "{allowed}");
        }
        for refused in [
            "11.0.0.1",
            "192.0.2.8",
            "2001:db9::1",
            "::ffff:11.0.0.1",
            "::a00:1",
        ] {
            assert!(!list.allows(ip(refused)), "{refused}");
        }
        assert!(AllowList::default().allows(ip("203.0.113.1")));
        let everything = AllowList::new(&["0.0.0.0/0".parse().unwrap()]);
        assert!(everything.allows(ip("203.0.113.1")));
        assert!(!everything.allows(ip("2001:db8::1")));
    }
}
