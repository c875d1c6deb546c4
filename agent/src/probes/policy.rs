//! Which addresses a probe may touch. Enforced in the agent, not on trust of
//! the coordinator: loopback, private, link-local, CGNAT, multicast and other
//! special-purpose ranges are refused unless the volunteer's config sets
//! `allow_private_targets = true` (lab use).

use std::net::IpAddr;

use vantage_proto::ranges::special_range;

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
