//! Which addresses a probe may touch. Enforced in the agent, not on trust of
//! the coordinator: loopback, private, link-local, CGNAT, multicast and other
//! special-purpose ranges are refused unless the volunteer's config sets
//! `allow_private_targets = true` (lab use).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The volunteer's target policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    pub allow_private_targets: bool,
}

impl TargetPolicy {
    /// `Err(reason)` when `ip` may not be probed.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        if self.allow_private_targets {
            return Ok(());
        }
        match special_range(ip) {
            Some(range) => Err(format!(
                "forbidden_target: {ip} is in a {range} range (set allow_private_targets = true for lab use)"
            )),
            None => Ok(()),
        }
    }
}

/// Names the special-purpose range `ip` falls in, if any.
pub fn special_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return special_v4(v4);
            }
            special_v6(v6)
        }
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(match o {
        [0, ..] => "this-network",
        [10, ..] => "private",
        [100, b, ..] if (64..128).contains(&b) => "CGNAT",
        [127, ..] => "loopback",
        [169, 254, ..] => "link-local",
        [172, b, ..] if (16..32).contains(&b) => "private",
        [192, 0, 0, _] => "IETF protocol assignment",
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "documentation",
        [192, 168, ..] => "private",
        [198, b, ..] if b == 18 || b == 19 => "benchmarking",
        [a, ..] if a >= 224 && a < 240 => "multicast",
        [a, ..] if a >= 240 => "reserved",
        _ => return None,
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() {
        "unspecified"
    } else if s[0] & 0xfe00 == 0xfc00 {
        "unique-local"
    } else if s[0] & 0xffc0 == 0xfe80 {
        "link-local"
    } else if s[0] & 0xff00 == 0xff00 {
        "multicast"
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        "documentation"
    } else if s[0] == 0x0064 && s[1] == 0xff9b {
        "NAT64"
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_special_ranges_by_default() {
        let p = TargetPolicy::default();
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "224.0.0.1",
            "198.18.0.5",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = bad.parse().unwrap();
            let e = p.check(ip).unwrap_err();
            assert!(e.starts_with("forbidden_target: "), "{bad}: {e}");
        }
        for good in ["1.1.1.1", "8.8.8.8", "2606:4700::1111", "172.32.0.1"] {
            assert_eq!(p.check(good.parse().unwrap()), Ok(()), "{good}");
        }
        let lab = TargetPolicy {
            allow_private_targets: true,
        };
        assert_eq!(lab.check("127.0.0.1".parse().unwrap()), Ok(()));
    }
}
