//! What a probe targets and whether it may: the one place every probe parses
//! its target (an IP and port, a host, a URL) and applies the volunteer's
//! [`TargetPolicy`](super::TargetPolicy).
//!
//! The rule (see the module docs of [`super`]): an address written literally
//! in the input that the policy forbids is a refusal (`Err(reason)` here,
//! [`ProbeOutput::refused`](super::ProbeOutput::refused) in the probe) before
//! any packet is sent; an address found while probing (a resolved name, a
//! redirect target) that the policy forbids is the failure [`forbidden`]
//! with the operation `connect`, and the probe keeps what it gathered.
//!
//! The syntax checks themselves are `vantage_proto::validate`'s (the
//! coordinator's), which `probes::run` applies first; the checks here are the
//! probes' second line and name the probe kind (`malformed_input: tls ip is
//! not an IP address`).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use hyper::Uri;
use tokio::net::TcpStream;
use vantage_proto::failure::{failure, op};
use vantage_proto::v1::Failure;
pub(crate) use vantage_proto::validate::{parse_ip, parse_resolver};

use super::{net, ProbeContext, Steps, TargetPolicy};

/// The failure for an address the policy refused while probing.
pub(crate) fn forbidden(reason: &str) -> Failure {
    failure(&format!("unknown_failure: {reason}"), op::CONNECT)
}

/// `port` as a `u16`: 1..=65535, or `default` when it is 0 and the probe
/// has one. `Err` is the refusal `malformed_input: <kind> port must be 1-65535`.
pub(crate) fn port(kind: &str, port: u32, default: Option<u16>) -> Result<u16, String> {
    match (port, default) {
        (0, Some(d)) => Ok(d),
        (p, _) => u16::try_from(p)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("malformed_input: {kind} port must be 1-65535")),
    }
}

/// An IP literal written in the input, if `host` is one, after the policy
/// allowed it (`Err` is the refusal reason); `None` for a name.
pub(crate) fn literal(host: &str, policy: &TargetPolicy) -> Result<Option<IpAddr>, String> {
    match parse_ip(host) {
        Some(ip) => policy.check(ip).map(|()| Some(ip)),
        None => Ok(None),
    }
}

/// The address of a probe that takes an `ip` and a `port` (tls, quic,
/// openvpn, tor, encrypted, wireguard): the IP must be a literal the policy
/// allows, the port 1..=65535 (0: `default`, when the probe has one). `Err`
/// is the refusal reason.
pub(crate) fn ip_port(
    kind: &str,
    ip: &str,
    port_number: u32,
    default: Option<u16>,
    policy: &TargetPolicy,
) -> Result<SocketAddr, String> {
    let ip = literal(ip, policy)?
        .ok_or_else(|| format!("malformed_input: {kind} ip is not an IP address"))?;
    Ok(SocketAddr::new(ip, port(kind, port_number, default)?))
}

/// A URL's target: scheme, host (without IPv6 brackets), port and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlTarget {
    pub(crate) https: bool,
    /// The URL host without IPv6 brackets.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Path and query, at least "/".
    pub(crate) path: String,
    pub(crate) url: String,
}

/// The host of a parsed URI without IPv6 brackets, when it has one.
pub(crate) fn uri_host(uri: &Uri) -> Option<String> {
    uri.host()
        .filter(|h| !h.is_empty())
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
}

impl UrlTarget {
    /// Parses an http(s) URL. `Err` is the refusal reason.
    pub(crate) fn parse(url: &str) -> Result<UrlTarget, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("malformed_input: bad url {url:?}: {e}"))?;
        let https = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            _ => return Err(format!("malformed_input: url {url:?} is not http(s)")),
        };
        let host =
            uri_host(&uri).ok_or_else(|| format!("malformed_input: url {url:?} has no host"))?;
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into());
        Ok(UrlTarget {
            https,
            host,
            port,
            path,
            url: url.to_string(),
        })
    }

    fn default_port(&self) -> bool {
        self.port == if self.https { 443 } else { 80 }
    }

    /// The Host header value for this target.
    pub(crate) fn authority(&self) -> String {
        let h = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.default_port() {
            h
        } else {
            format!("{h}:{}", self.port)
        }
    }

    fn origin(&self) -> String {
        format!(
            "{}://{}",
            if self.https { "https" } else { "http" },
            self.authority()
        )
    }

    /// Resolves a `Location` header against this target.
    pub(crate) fn redirect(&self, location: &str) -> Result<UrlTarget, String> {
        let loc = location.trim();
        let lower = loc.to_ascii_lowercase();
        let abs = if lower.starts_with("http://") || lower.starts_with("https://") {
            loc.to_string()
        } else if let Some(rest) = loc.strip_prefix("//") {
            format!("{}://{rest}", if self.https { "https" } else { "http" })
        } else if loc.starts_with('/') {
            format!("{}{loc}", self.origin())
        } else {
            let path_only = self.path.split('?').next().unwrap_or("/");
            let dir = match path_only.rfind('/') {
                Some(i) => &path_only[..=i],
                None => "/",
            };
            format!("{}{dir}{loc}", self.origin())
        };
        UrlTarget::parse(&abs)
    }
}

/// Resolves `host` with the system resolver, recorded as the step `resolve`.
pub(crate) async fn resolve(
    host: &str,
    ctx: &ProbeContext,
    steps: &mut Steps,
) -> Result<Vec<IpAddr>, Failure> {
    let started = Instant::now();
    let r = net::resolve_system(host, ctx).await;
    steps.record("resolve", started, r.as_ref().err().cloned());
    r
}

/// One address [`connect_first`] tried: the connect time in µs, or why not.
#[derive(Debug)]
pub(crate) struct Attempt {
    pub(crate) ip: IpAddr,
    pub(crate) outcome: Result<i64, Failure>,
}

/// Connects to the first of `addrs` (on `port`) that answers, in order,
/// each attempt a step `connect`: an address the policy forbids is the
/// failure [`forbidden`] without a packet sent. Stops at the first
/// connection, or when the deadline has passed. Returns every attempt and
/// the connected stream.
pub(crate) async fn connect_first(
    addrs: &[IpAddr],
    port: u16,
    ctx: &ProbeContext,
    steps: &mut Steps,
) -> (Vec<Attempt>, Option<(IpAddr, TcpStream)>) {
    let mut attempts = Vec::new();
    for &ip in addrs {
        let started = Instant::now();
        if let Err(reason) = ctx.policy.check(ip) {
            let f = forbidden(&reason);
            steps.record("connect", started, Some(f.clone()));
            attempts.push(Attempt {
                ip,
                outcome: Err(f),
            });
            continue;
        }
        match net::connect(SocketAddr::new(ip, port), ctx.remaining()).await {
            Ok((s, us)) => {
                steps.record("connect", started, None);
                attempts.push(Attempt {
                    ip,
                    outcome: Ok(us),
                });
                return (attempts, Some((ip, s)));
            }
            Err(f) => {
                steps.record("connect", started, Some(f.clone()));
                attempts.push(Attempt {
                    ip,
                    outcome: Err(f),
                });
            }
        }
        if ctx.remaining().is_zero() {
            break;
        }
    }
    (attempts, None)
}

/// The failure of a [`connect_first`] that connected nowhere: the last
/// attempt's, or a connect timeout when there was none.
pub(crate) fn last_failure(attempts: &[Attempt]) -> Failure {
    attempts
        .last()
        .and_then(|a| a.outcome.clone().err())
        .unwrap_or_else(|| failure(vantage_proto::failure::GENERIC_TIMEOUT, op::CONNECT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_default_or_are_refused_with_the_kind() {
        assert_eq!(port("tls", 0, Some(443)), Ok(443));
        assert_eq!(port("tls", 8443, Some(443)), Ok(8443));
        assert_eq!(
            port("tor", 0, None),
            Err("malformed_input: tor port must be 1-65535".into())
        );
        assert_eq!(
            port("tls", 70000, Some(443)),
            Err("malformed_input: tls port must be 1-65535".into())
        );
    }

    #[test]
    fn ip_targets_are_literals_the_policy_allows() {
        let strict = TargetPolicy::default();
        let lab = TargetPolicy {
            allow_private_targets: true,
        };
        assert_eq!(
            ip_port("quic", "example.org", 443, Some(443), &lab),
            Err("malformed_input: quic ip is not an IP address".into())
        );
        let e = ip_port("quic", "127.0.0.1", 443, Some(443), &strict).unwrap_err();
        assert!(e.starts_with("forbidden_target: 127.0.0.1"), "{e}");
        assert_eq!(
            ip_port("wireguard", "[::1]", 0, Some(51820), &lab),
            Ok("[::1]:51820".parse().unwrap())
        );
        assert_eq!(literal("example.org", &strict), Ok(None));
    }

    #[test]
    fn redirects_resolve_against_the_current_url() {
        let t = UrlTarget::parse("http://example.org/a/b?x=1").unwrap();
        assert_eq!(t.redirect("/c").unwrap().url, "http://example.org/c");
        assert_eq!(t.redirect("d").unwrap().url, "http://example.org/a/d");
        assert_eq!(
            t.redirect("//other.org/e").unwrap().url,
            "http://other.org/e"
        );
        let abs = t.redirect("https://x.org:8443/").unwrap();
        assert!(abs.https);
        assert_eq!(abs.port, 8443);
        assert_eq!(abs.authority(), "x.org:8443");
    }
}
