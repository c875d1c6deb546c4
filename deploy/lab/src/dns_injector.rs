//! `vantage-lab dns-injector`: an on-path DNS injector fed by the firewall.
//!
//! Design (no AF_PACKET, no NFQUEUE, no unsafe code):
//!
//! * In `{prefix}-fw`, `iptables -t mangle ... -i fw-in -p udp --dport 53 -m
//!   string --hex-string <qname> -j TEE --gateway 198.19.5.2` copies every
//!   inside query for a listed name to the injector namespace `{prefix}-inj`
//!   (the kernel's port mirror), and a FORWARD rule drops the original.
//! * In `{prefix}-inj`, a policy route makes every packet arriving on `inj0`
//!   local (`ip rule iif inj0 lookup 100`, `local 0.0.0.0/0 dev lo table
//!   100`), so this process sees the mirrored query on a raw IPPROTO_UDP
//!   socket with its original addresses. ICMP errors from that namespace are
//!   dropped so the client never hears of the missing UDP listener.
//! * For a listed name it sends, through a raw IPPROTO_RAW socket (header
//!   included), a reply spoofed from the queried resolver's address: a
//!   forged A record or NXDOMAIN. For `replay` rules it then re-emits the
//!   original query unchanged after `--replay-delay-ms`, so the real resolver
//!   still answers, later: two replies, the forged one first (classic
//!   injection). Without `replay` the real resolver never sees the query
//!   (hijack / NXDOMAIN rewriting).
//!
//! Every byte from the network is parsed with bounds checks; malformed
//! packets are ignored, never a panic.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// What the injector answers for a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A forged A record.
    A(Ipv4Addr),
    /// A forged NXDOMAIN.
    NxDomain,
}

/// One injection rule: `NAME=ACTION[,replay]`, ACTION an IPv4 address or
/// `nxdomain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub action: Action,
    /// Re-emit the original query after the delay (injection rather than
    /// hijack).
    pub replay: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("bad injector rule {0:?}: expected NAME=IPV4[,replay] or NAME=nxdomain[,replay]")]
pub struct RuleError(String);

impl FromStr for Rule {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, RuleError> {
        let bad = || RuleError(s.to_string());
        let (name, rest) = s.split_once('=').ok_or_else(bad)?;
        let mut parts = rest.split(',');
        let action = match parts.next().ok_or_else(bad)? {
            a if a.eq_ignore_ascii_case("nxdomain") => Action::NxDomain,
            a => Action::A(a.parse().map_err(|_| bad())?),
        };
        let replay = match parts.next() {
            None => false,
            Some("replay") => true,
            Some(_) => return Err(bad()),
        };
        if parts.next().is_some() || name.is_empty() {
            return Err(bad());
        }
        Ok(Rule {
            name: name.trim_end_matches('.').to_ascii_lowercase(),
            action,
            replay,
        })
    }
}

/// A DNS query seen on the wire.
#[derive(Debug, PartialEq, Eq)]
pub struct Query<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub id: u16,
    /// Flags of the query (RD is echoed).
    pub flags: u16,
    /// Lower-case name without the trailing dot.
    pub name: String,
    pub qtype: u16,
    /// The question section as sent (name, type, class).
    pub question: &'a [u8],
    /// The whole DNS message (to re-emit the query with a fresh checksum).
    pub payload: &'a [u8],
}

/// Parses an IPv4/UDP packet carrying a DNS query with one question.
pub fn parse_query(pkt: &[u8]) -> Option<Query<'_>> {
    let vihl = *pkt.first()?;
    if vihl >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(vihl & 0x0f) * 4;
    if ihl < 20 || *pkt.get(9)? != 17 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*pkt.get(2)?, *pkt.get(3)?]));
    let pkt = pkt.get(..total.min(pkt.len()))?;
    if pkt.len() < ihl + 8 {
        return None;
    }
    let src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
    let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
    let udp = pkt.get(ihl..)?;
    let sport = u16::from_be_bytes([*udp.first()?, *udp.get(1)?]);
    let dport = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let dns = udp.get(8..)?;
    let payload = dns;
    let id = u16::from_be_bytes([*dns.first()?, *dns.get(1)?]);
    let flags = u16::from_be_bytes([*dns.get(2)?, *dns.get(3)?]);
    let qdcount = u16::from_be_bytes([*dns.get(4)?, *dns.get(5)?]);
    // A query (QR = 0), standard opcode, exactly one question.
    if flags & 0x8000 != 0 || (flags >> 11) & 0x0f != 0 || qdcount != 1 {
        return None;
    }
    let mut pos = 12;
    let mut labels: Vec<String> = Vec::new();
    loop {
        let len = usize::from(*dns.get(pos)?);
        pos += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // compression is not used in questions
        }
        let label = dns.get(pos..pos + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        pos += len;
        if pos > 255 + 12 {
            return None;
        }
    }
    let qtype = u16::from_be_bytes([*dns.get(pos)?, *dns.get(pos + 1)?]);
    let question = dns.get(12..pos + 4)?;
    Some(Query {
        src,
        dst,
        sport,
        dport,
        id,
        flags,
        name: labels.join("."),
        qtype,
        question,
        payload,
    })
}

fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in chunks {
        let mut it = chunk.chunks(2);
        for w in &mut it {
            let v = if w.len() == 2 {
                u16::from_be_bytes([w[0], w[1]])
            } else {
                u16::from_be_bytes([w[0], 0])
            };
            sum = sum.wrapping_add(u32::from(v));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The DNS payload of the forged reply.
pub fn forge_dns(q: &Query<'_>, action: &Action) -> Vec<u8> {
    const TYPE_A: u16 = 1;
    let rd = q.flags & 0x0100;
    let (rcode, answer) = match action {
        Action::NxDomain => (3u16, None),
        Action::A(ip) if q.qtype == TYPE_A => (0, Some(*ip)),
        Action::A(_) => (0, None), // NOERROR, no data for other types
    };
    let flags: u16 = 0x8000 | 0x0400 | rd | 0x0080 | rcode; // QR AA RD RA
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&q.id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&u16::from(answer.is_some()).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(q.question);
    if let Some(ip) = answer {
        out.extend_from_slice(&[0xc0, 0x0c]); // pointer to the question name
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes()); // IN
        out.extend_from_slice(&300u32.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    out
}

/// A whole IPv4/UDP packet from `src` to `dst` carrying `payload`.
pub fn ipv4_udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8], ttl: u8) -> Vec<u8> {
    let udp_len = (8 + payload.len()) as u16;
    let total = 20 + udp_len;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = ttl;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.ip().octets());
    ip[16..20].copy_from_slice(&dst.ip().octets());
    let c = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut udp = [0u8; 8];
    udp[0..2].copy_from_slice(&src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src.ip().octets());
    pseudo[4..8].copy_from_slice(&dst.ip().octets());
    pseudo[9] = 17;
    pseudo[10..12].copy_from_slice(&udp_len.to_be_bytes());
    let mut c = checksum(&[&pseudo, &udp, payload]);
    if c == 0 {
        c = 0xffff;
    }
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    let mut out = Vec::with_capacity(usize::from(total));
    out.extend_from_slice(&ip);
    out.extend_from_slice(&udp);
    out.extend_from_slice(payload);
    out
}

/// Finds the rule for `name`.
pub fn lookup<'r>(rules: &'r [Rule], name: &str) -> Option<&'r Rule> {
    rules.iter().find(|r| r.name == name)
}

/// Runs the injector until killed. Errors only when the sockets cannot be
/// opened.
pub fn run(rules: Vec<Rule>, replay_delay: Duration) -> std::io::Result<()> {
    let recv = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP))?;
    let send = Arc::new(Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(255)), // IPPROTO_RAW: header included
    )?);
    eprintln!(
        "dns-injector: {} rule(s), replay delay {} ms",
        rules.len(),
        replay_delay.as_millis()
    );
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match (&recv).read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let pkt = &buf[..n];
        let Some(q) = parse_query(pkt) else { continue };
        if q.dport != 53 {
            continue;
        }
        let Some(rule) = lookup(&rules, &q.name) else {
            continue;
        };
        let client = SocketAddrV4::new(q.src, q.sport);
        let server = SocketAddrV4::new(q.dst, q.dport);
        let reply = ipv4_udp(server, client, &forge_dns(&q, &rule.action), 64);
        match send.send_to(&reply, &SockAddr::from(client)) {
            Ok(_) => eprintln!(
                "dns-injector: {client} asked {server} for {} (type {}): forged {:?}",
                q.name, q.qtype, rule.action
            ),
            Err(e) => eprintln!("dns-injector: cannot send forged reply to {client}: {e}"),
        }
        if rule.replay {
            // Rebuilt rather than copied: a mirrored packet may carry a
            // partial (offloaded) UDP checksum the resolver would reject.
            let original = ipv4_udp(client, server, q.payload, 63);
            let send = Arc::clone(&send);
            std::thread::spawn(move || {
                std::thread::sleep(replay_delay);
                if let Err(e) = send.send_to(&original, &SockAddr::from(server)) {
                    eprintln!("dns-injector: cannot replay query to {server}: {e}");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query_packet(name: &str, qtype: u16) -> Vec<u8> {
        let mut dns = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        for l in name.split('.') {
            dns.push(l.len() as u8);
            dns.extend_from_slice(l.as_bytes());
        }
        dns.push(0);
        dns.extend_from_slice(&qtype.to_be_bytes());
        dns.extend_from_slice(&[0, 1]);
        // An EDNS OPT record, as real clients send.
        dns.extend_from_slice(&[0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0]);
        ipv4_udp(
            "198.19.1.10:40000".parse().unwrap(),
            "198.19.3.53:53".parse().unwrap(),
            &dns,
            64,
        )
    }

    #[test]
    fn rules_parse() {
        let r: Rule = "Injected.lab.example.=198.19.3.66,replay".parse().unwrap();
        assert_eq!(r.name, "injected.lab.example");
        assert_eq!(r.action, Action::A("198.19.3.66".parse().unwrap()));
        assert!(r.replay);
        let r: Rule = "x.example=NXDOMAIN".parse().unwrap();
        assert_eq!((r.action, r.replay), (Action::NxDomain, false));
        for bad in [
            "",
            "x",
            "=1.2.3.4",
            "x=1.2.3",
            "x=1.2.3.4,later",
            "x=nxdomain,replay,1",
        ] {
            assert!(bad.parse::<Rule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_a_query_and_forges_a_reply() {
        let pkt = query_packet("Injected.Lab.example", 1);
        let q = parse_query(&pkt).expect("query");
        assert_eq!(q.name, "injected.lab.example");
        assert_eq!((q.sport, q.dport, q.id, q.qtype), (40000, 53, 0x1234, 1));
        assert_eq!(q.dst, Ipv4Addr::new(198, 19, 3, 53));
        let dns = forge_dns(&q, &Action::A(Ipv4Addr::new(10, 10, 10, 10)));
        assert_eq!(&dns[0..2], &[0x12, 0x34]);
        assert_eq!(dns[3] & 0x0f, 0); // NOERROR
        assert_eq!(&dns[6..8], &[0, 1]); // one answer
        assert_eq!(&dns[dns.len() - 4..], &[10, 10, 10, 10]);
        let nx = forge_dns(&q, &Action::NxDomain);
        assert_eq!(nx[3] & 0x0f, 3);
        assert_eq!(&nx[6..8], &[0, 0]);
        // AAAA for a forged-A name: NOERROR without data.
        let pkt6 = query_packet("injected.lab.example", 28);
        let q6 = parse_query(&pkt6).unwrap();
        let d6 = forge_dns(&q6, &Action::A(Ipv4Addr::new(1, 2, 3, 4)));
        assert_eq!(&d6[6..8], &[0, 0]);
        // The forged packet's checksums verify.
        let full = ipv4_udp(
            "198.19.3.53:53".parse().unwrap(),
            "198.19.1.10:40000".parse().unwrap(),
            &dns,
            64,
        );
        assert_eq!(checksum(&[&full[..20]]), 0);
    }

    #[test]
    fn malformed_input_never_panics() {
        let pkt = query_packet("injected.lab.example", 1);
        for cut in 0..pkt.len() {
            let _ = parse_query(&pkt[..cut]);
        }
        let mut evil = pkt.clone();
        evil[28 + 12] = 200; // label length past the end
        assert!(parse_query(&evil).is_none());
        let mut resp = pkt.clone();
        resp[28 + 2] |= 0x80; // a response, not a query
        assert!(parse_query(&resp).is_none());
        assert!(parse_query(&[0xff; 3]).is_none());
    }
}
