//! IP networks as the config names them (`10.0.0.0/8`, `::1`): parsed here once for the
//! validator, the data plane's `ipAccess` policies and its trusted peers.

use std::{fmt, net::IpAddr, str::FromStr};

/// An IP network: an address and a prefix length. A bare address is a /32 or /128.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The network address with the host bits cleared.
    network: IpAddr,
    len: u8,
}

/// Text that is not an IP address or CIDR network.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or CIDR network (e.g. 10.0.0.0/8, 2001:db8::/32)")]
pub struct BadCidr(String);

// === impl Cidr ===

impl Cidr {
    /// Whether `ip` is inside the network. IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) count
    /// as IPv4, as dual-stack sockets report IPv4 peers that way.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => u32::from(ip) & mask32(self.len) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask128(self.len) == u128::from(net)
            }
            _ => false,
        }
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }
}

impl FromStr for Cidr {
    type Err = BadCidr;

    fn from_str(text: &str) -> Result<Self, BadCidr> {
        let bad = || BadCidr(text.to_owned());
        let (ip, len) = match text.trim().split_once('/') {
            Some((ip, len)) => {
                let ip: IpAddr = ip.parse().map_err(|_| bad())?;
                // Digits only: `u8::from_str` would take "+8".
                if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                (ip, len.parse::<u8>().map_err(|_| bad())?)
            }
            None => {
                let ip: IpAddr = text.trim().parse().map_err(|_| bad())?;
                (ip, if ip.is_ipv4() { 32 } else { 128 })
            }
        };
        let network = match canonical(ip) {
            IpAddr::V4(v4) if len <= 32 => IpAddr::V4((u32::from(v4) & mask32(len)).into()),
            IpAddr::V6(v6) if len <= 128 => IpAddr::V6((u128::from(v6) & mask128(len)).into()),
            _ => return Err(bad()),
        };
        Ok(Self { network, len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

/// An IPv4-mapped IPv6 address as IPv4; any other address as it is.
#[inline]
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_contains() {
        let net: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.1.2.3")));
        assert!(net.contains(ip("::ffff:10.0.0.1")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(!net.contains(ip("::1")));
        let host: Cidr = "192.168.1.7".parse().unwrap();
        assert!(host.contains(ip("192.168.1.7")));
        assert!(!host.contains(ip("192.168.1.8")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("1.2.3.4")));
        // Host bits are cleared, so the network prints as what it contains.
        assert_eq!(
            "10.1.2.3/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
    }

    #[test]
    fn refuses_what_is_not_a_network() {
        for text in [
            "",
            "nope",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0/8",
        ] {
            assert!(text.parse::<Cidr>().is_err(), "{text:?}");
        }
    }
}
