//! The lab's address plan and its catalogue of censorship conditions.
//!
//! Everything lives in 198.19.0.0/16 (the upper half of the benchmarking
//! range 198.18.0.0/15; other labs of the project use 198.18.x). Addresses
//! are the same for every prefix: each lab is its own set of namespaces, so
//! two labs never see each other.
//!
//! | segment | namespace            | leaf address       | firewall side |
//! |---------|----------------------|--------------------|---------------|
//! | inside  | `{prefix}-inside`    | 198.19.1.10/24     | 198.19.1.1    |
//! | outside | `{prefix}-outside`   | 198.19.2.10/24     | 198.19.2.1    |
//! | targets | `{prefix}-targets`   | 198.19.3.2/24 + /32s | 198.19.3.1  |
//! | core    | `{prefix}-core`      | 198.19.4.10/24     | 198.19.4.1    |
//! | injector| `{prefix}-inj`       | 198.19.5.2/24      | 198.19.5.1    |
//!
//! The censor's block-page server is 198.19.6.8 (198.19.6.0/24 is routed
//! by the firewall to the targets namespace).

use serde::Serialize;
use vantage_proto::v1::{
    probe_input::Kind, DnsInput, EncryptedInput, HttpInput, OpenVpnInput, ProbeInput, QuicInput,
    TcpInput, TlsInput, TorInput, WebInput, WireGuardInput,
};

/// Namespace roles, in build order.
pub const ROLES: &[&str] = &["inside", "outside", "targets", "core", "inj", "fw"];

/// One leaf segment: (role, leaf interface, leaf address, fw interface, fw address, /24).
pub struct Segment {
    pub role: &'static str,
    pub leaf_if: &'static str,
    pub leaf_ip: &'static str,
    pub fw_if: &'static str,
    pub fw_ip: &'static str,
}

pub const SEGMENTS: &[Segment] = &[
    Segment {
        role: "inside",
        leaf_if: "in0",
        leaf_ip: INSIDE_IP,
        fw_if: FW_INSIDE_IF,
        fw_ip: "198.19.1.1",
    },
    Segment {
        role: "outside",
        leaf_if: "out0",
        leaf_ip: OUTSIDE_IP,
        fw_if: "fw-out",
        fw_ip: "198.19.2.1",
    },
    Segment {
        role: "targets",
        leaf_if: "tg0",
        leaf_ip: "198.19.3.2",
        fw_if: "fw-tg",
        fw_ip: "198.19.3.1",
    },
    Segment {
        role: "core",
        leaf_if: "core0",
        leaf_ip: CORE_IP,
        fw_if: "fw-core",
        fw_ip: "198.19.4.1",
    },
    Segment {
        role: "inj",
        leaf_if: "inj0",
        leaf_ip: INJECTOR_IP,
        fw_if: "fw-inj",
        fw_ip: "198.19.5.1",
    },
];

/// The whole lab range: the only route any namespace has.
pub const LAB_NET: &str = "198.19.0.0/16";
pub const INSIDE_IP: &str = "198.19.1.10";
pub const OUTSIDE_IP: &str = "198.19.2.10";
pub const CORE_IP: &str = "198.19.4.10";
pub const INJECTOR_IP: &str = "198.19.5.2";
/// The firewall's interface toward the inside segment: every censorship rule
/// matches `-i` this interface only.
pub const FW_INSIDE_IF: &str = "fw-in";

/// The censor's own network (routed by the firewall to the targets
/// namespace): where its block-page server lives.
pub const CENSOR_NET: &str = "198.19.6.0/24";
pub const BLOCKPAGE_IP: &str = "198.19.6.8";
pub const DOWN_IP: &str = "198.19.3.13";
pub const SNI_IP: &str = "198.19.3.14";
pub const HOST_IP: &str = "198.19.3.15";
pub const BLACKHOLE_IP: &str = "198.19.3.16";
pub const REFUSED_IP: &str = "198.19.3.17";
pub const BLOCKPAGE_DNAT_IP: &str = "198.19.3.18";
pub const QUIC_IP: &str = "198.19.3.19";
pub const OPENVPN_IP: &str = "198.19.3.21";
pub const ENCRYPTED_IP: &str = "198.19.3.22";
pub const TOR_IP: &str = "198.19.3.23";
pub const WIREGUARD_IP: &str = "198.19.3.24";
pub const CLEAN_IP: &str = "198.19.3.30";
pub const RESOLVER_IP: &str = "198.19.3.53";
/// Runs no DNS server (the firewall blackholes it): any DNS answer from it
/// is injected.
pub const SILENT_DNS_IP: &str = "198.19.3.199";
/// What the injector forges for `injected.lab.example`.
pub const FORGED_IP: &str = "198.19.3.66";
/// What the hijack forges for `hijacked.lab.example`.
pub const BOGON_IP: &str = "10.10.10.10";

pub const ENCRYPTED_PORT: u32 = 8443;
pub const TOR_PORT: u32 = 9001;
pub const OPENVPN_PORT: u32 = 1194;
pub const WIREGUARD_PORT: u32 = 51820;

/// The lab WireGuard peer's private key (lab only: it is in the source, and
/// the peer routes nothing). Its public key is in the probe inputs.
pub const WIREGUARD_SECRET: [u8; 32] = [0x57; 32];

/// Addresses the targets namespace carries besides its segment address.
pub const TARGET_IPS: &[&str] = &[
    BLOCKPAGE_IP,
    SNI_IP,
    HOST_IP,
    BLACKHOLE_IP,
    REFUSED_IP,
    BLOCKPAGE_DNAT_IP,
    QUIC_IP,
    OPENVPN_IP,
    ENCRYPTED_IP,
    TOR_IP,
    WIREGUARD_IP,
    CLEAN_IP,
    RESOLVER_IP,
];

/// nginx serves HTTP and HTTPS on these (the block page has its own server).
pub const WEB_IPS: &[&str] = &[
    SNI_IP,
    HOST_IP,
    BLACKHOLE_IP,
    REFUSED_IP,
    BLOCKPAGE_DNAT_IP,
    CLEAN_IP,
];

pub const INJECTED_NAME: &str = "injected.lab.example";
pub const HIJACKED_NAME: &str = "hijacked.lab.example";
pub const HIJACKED_BLOCKPAGE_NAME: &str = "hijacked-blockpage.lab.example";
pub const NXDOMAIN_NAME: &str = "censored-nx.lab.example";
pub const SNI_KEYWORD: &str = "blocked-sni";
pub const HOST_KEYWORD: &str = "blocked-site";
pub const BLOCKED_SITE: &str = "blocked-site.example";
pub const CLEAN_SITE: &str = "clean-site.example";
/// The `<title>` of the block page.
pub const BLOCKPAGE_TITLE: &str = "Access Denied - Vantage lab censor";

/// A records the lab resolver serves (zone `lab.example` plus the two
/// example sites).
pub const DNS_RECORDS: &[(&str, &str)] = &[
    ("ns.lab.example", RESOLVER_IP),
    ("blockpage.lab.example", BLOCKPAGE_IP),
    ("down.lab.example", DOWN_IP),
    ("blocked-sni.lab.example", SNI_IP),
    ("blocked-host.lab.example", HOST_IP),
    ("blackholed.lab.example", BLACKHOLE_IP),
    ("refused.lab.example", REFUSED_IP),
    ("blockpage-site.lab.example", BLOCKPAGE_DNAT_IP),
    ("quic.lab.example", QUIC_IP),
    ("vpn.lab.example", OPENVPN_IP),
    ("encrypted.lab.example", ENCRYPTED_IP),
    ("tor.lab.example", TOR_IP),
    ("wireguard.lab.example", WIREGUARD_IP),
    ("clean.lab.example", CLEAN_IP),
    (INJECTED_NAME, CLEAN_IP),
    (HIJACKED_NAME, CLEAN_IP),
    (HIJACKED_BLOCKPAGE_NAME, CLEAN_IP),
    (NXDOMAIN_NAME, CLEAN_IP),
    ("core.lab.example", CORE_IP),
    // Many paths of one clean name: `vantage-lab demo --bench-web N`.
    ("bench.lab.example", CLEAN_IP),
    (BLOCKED_SITE, HOST_IP),
    (CLEAN_SITE, CLEAN_IP),
];

/// Namespace name for a role.
pub fn ns(prefix: &str, role: &str) -> String {
    format!("{prefix}-{role}")
}

/// One censorship condition of the catalogue.
#[derive(Clone, Debug, Serialize)]
pub struct Condition {
    /// Number in the lab's list (1..=14 are issue 5's, 15 is WireGuard).
    pub number: u32,
    /// Stable name, used by tests and docs.
    pub name: &'static str,
    pub description: &'static str,
    /// The address the condition is bound to.
    pub target: &'static str,
    /// What the analysis should conclude for an inside agent:
    /// `blocked`, `down` or `ok`.
    pub expected_status: &'static str,
    /// Mechanism name from DESIGN.md (`dns.injection`, `tcp.reset`, ...);
    /// empty when the status is not `blocked`.
    pub mechanism: &'static str,
    /// Probe inputs that exercise it (run them inside and outside); inside,
    /// each must come out `expected_status` with `mechanism`.
    pub inputs: Vec<ProbeInput>,
    /// Inputs on the same target that the censor lets through (it is
    /// selective, not an outage): inside, each must come out `ok`.
    pub passes: Vec<ProbeInput>,
}

fn input(kind: Kind) -> ProbeInput {
    ProbeInput { kind: Some(kind) }
}

fn dns(domain: &str, resolver: &str) -> ProbeInput {
    input(Kind::Dns(DnsInput {
        domain: domain.into(),
        resolver: format!("{resolver}:53"),
        ..Default::default()
    }))
}

fn http(url: &str, ip: &str) -> ProbeInput {
    input(Kind::Http(HttpInput {
        url: url.into(),
        ip: ip.into(),
        max_redirects: 0,
        ..Default::default()
    }))
}

fn quic(ip: &str, sni: &str) -> ProbeInput {
    input(Kind::Quic(QuicInput {
        ip: ip.into(),
        port: 443,
        sni: sni.into(),
        alpn: vec!["h3".into()],
    }))
}

fn wireguard(ip: &str) -> ProbeInput {
    input(Kind::Wireguard(WireGuardInput {
        ip: ip.into(),
        port: WIREGUARD_PORT,
        peer_public_key: crate::wireguard_peer::public_key(&WIREGUARD_SECRET).to_vec(),
    }))
}

fn tcp(host: &str, port: u32) -> ProbeInput {
    input(Kind::Tcp(TcpInput {
        host: host.into(),
        port,
    }))
}

/// The catalogue. `residual_window_secs` is the residual-blocking window the
/// lab was (or will be) built with; the encrypted probe's retests are spread
/// inside it.
pub fn catalogue(residual_window_secs: u32) -> Vec<Condition> {
    // Retests at 1/4, 2/4 and 3/4 of the window: all inside it.
    let retest_interval_ms = residual_window_secs.max(1).saturating_mul(1000) / 4;
    vec![
        Condition {
            number: 1,
            name: "dns-injection",
            description: "An on-path injector answers queries for injected.lab.example with a \
                          forged A record before the real resolver does; it also answers queries \
                          sent to an address that runs no DNS server.",
            target: RESOLVER_IP,
            expected_status: "blocked",
            mechanism: "dns.injection",
            inputs: vec![
                dns(INJECTED_NAME, RESOLVER_IP),
                input(Kind::DnsInjection(DnsInput {
                    domain: INJECTED_NAME.into(),
                    resolver: format!("{SILENT_DNS_IP}:53"),
                    ..Default::default()
                })),
            ],
            passes: Vec::new(),
        },
        Condition {
            number: 2,
            name: "dns-hijack-bogon",
            description: "Queries for hijacked.lab.example never reach the resolver; the censor \
                          answers 10.10.10.10 instead.",
            target: RESOLVER_IP,
            expected_status: "blocked",
            mechanism: "dns.hijack",
            inputs: vec![dns(HIJACKED_NAME, RESOLVER_IP)],
            passes: Vec::new(),
        },
        Condition {
            number: 2,
            name: "dns-hijack-blockpage",
            description: "Queries for hijacked-blockpage.lab.example are answered with the block \
                          page server's address; the web probe then fetches the block page.",
            target: RESOLVER_IP,
            expected_status: "blocked",
            mechanism: "dns.hijack",
            inputs: vec![
                dns(HIJACKED_BLOCKPAGE_NAME, RESOLVER_IP),
                input(Kind::Web(WebInput {
                    url: format!("http://{HIJACKED_BLOCKPAGE_NAME}/"),
                    resolver: format!("{RESOLVER_IP}:53"),
                })),
            ],
            passes: Vec::new(),
        },
        Condition {
            number: 3,
            name: "dns-nxdomain",
            description: "Queries for censored-nx.lab.example are answered NXDOMAIN by the \
                          censor; the real resolver never sees them.",
            target: RESOLVER_IP,
            expected_status: "blocked",
            mechanism: "dns.nxdomain",
            inputs: vec![dns(NXDOMAIN_NAME, RESOLVER_IP)],
            passes: Vec::new(),
        },
        Condition {
            number: 4,
            name: "tls-sni-reset",
            description: "A TLS ClientHello to 198.19.3.14:443 whose SNI contains `blocked-sni` \
                          is answered with a TCP reset; other SNIs pass.",
            target: SNI_IP,
            expected_status: "blocked",
            mechanism: "tls.reset",
            inputs: vec![input(Kind::Tls(TlsInput {
                ip: SNI_IP.into(),
                port: 443,
                sni: "blocked-sni.lab.example".into(),
                control_sni: "clean.lab.example".into(),
                ..Default::default()
            }))],
            passes: vec![input(Kind::Tls(TlsInput {
                ip: SNI_IP.into(),
                port: 443,
                sni: "clean.lab.example".into(),
                ..Default::default()
            }))],
        },
        Condition {
            number: 5,
            name: "http-host-reset",
            description: "An HTTP request to 198.19.3.15:80 whose Host header contains \
                          `blocked-site` is answered with a TCP reset; other hosts pass.",
            target: HOST_IP,
            expected_status: "blocked",
            mechanism: "http.reset",
            inputs: vec![http(&format!("http://{BLOCKED_SITE}/"), HOST_IP)],
            passes: vec![http(&format!("http://{CLEAN_SITE}/"), HOST_IP)],
        },
        Condition {
            number: 6,
            name: "ip-blackhole",
            description: "Every packet from inside to 198.19.3.16 is dropped.",
            target: BLACKHOLE_IP,
            expected_status: "blocked",
            mechanism: "tcp.timeout",
            inputs: vec![tcp(BLACKHOLE_IP, 80)],
            passes: Vec::new(),
        },
        Condition {
            number: 7,
            name: "tcp-refused",
            description: "SYNs from inside to 198.19.3.17:80 get a TCP reset, to :443 an ICMP \
                          port unreachable.",
            target: REFUSED_IP,
            expected_status: "blocked",
            mechanism: "tcp.refused",
            inputs: vec![tcp(REFUSED_IP, 80), tcp(REFUSED_IP, 443)],
            passes: Vec::new(),
        },
        Condition {
            number: 8,
            name: "http-blockpage",
            description: "HTTP from inside to 198.19.3.18:80 is DNATed to the block page server \
                          (198.19.6.8, in the censor's own network).",
            target: BLOCKPAGE_DNAT_IP,
            expected_status: "blocked",
            mechanism: "http.blockpage",
            inputs: vec![http(&format!("http://{CLEAN_SITE}/"), BLOCKPAGE_DNAT_IP)],
            passes: Vec::new(),
        },
        Condition {
            number: 9,
            name: "quic-sni-drop",
            description: "QUIC to 198.19.3.19:443: an NFQUEUE censor on the firewall decrypts \
                          each Initial (RFC 9001 initial keys), reads the ClientHello's SNI and, \
                          when it contains `blocked-sni`, drops it and the rest of that flow \
                          (its 5-tuple) for the residual window; other SNIs pass.",
            target: QUIC_IP,
            expected_status: "blocked",
            mechanism: "quic.timeout",
            inputs: vec![quic(QUIC_IP, "blocked-sni.lab.example")],
            passes: vec![quic(QUIC_IP, "quic.lab.example")],
        },
        Condition {
            number: 10,
            name: "openvpn-blocked",
            description: "OpenVPN to 198.19.3.21:1194: UDP dropped; over TCP, the segment \
                          carrying P_CONTROL_HARD_RESET_CLIENT_V2 is answered with a reset.",
            target: OPENVPN_IP,
            expected_status: "blocked",
            mechanism: "vpn.blocked",
            inputs: vec![
                input(Kind::Openvpn(OpenVpnInput {
                    ip: OPENVPN_IP.into(),
                    port: OPENVPN_PORT,
                    transport: "udp".into(),
                })),
                input(Kind::Openvpn(OpenVpnInput {
                    ip: OPENVPN_IP.into(),
                    port: OPENVPN_PORT,
                    transport: "tcp".into(),
                })),
            ],
            passes: Vec::new(),
        },
        Condition {
            number: 11,
            name: "encrypted-residual",
            description: "A first data segment of 200+ bytes that is neither TLS nor HTTP to \
                          198.19.3.22:8443 is dropped and puts the client on a residual list: \
                          its SYNs to that ip:port are dropped for the residual window.",
            target: ENCRYPTED_IP,
            expected_status: "blocked",
            mechanism: "residual",
            inputs: vec![input(Kind::Encrypted(EncryptedInput {
                ip: ENCRYPTED_IP.into(),
                port: ENCRYPTED_PORT,
                payload_bytes: 256,
                retest_count: 3,
                retest_interval_ms,
            }))],
            passes: Vec::new(),
        },
        Condition {
            number: 12,
            name: "tor-blocked",
            description: "The Tor relay's address 198.19.3.23 is dropped from inside.",
            target: TOR_IP,
            expected_status: "blocked",
            mechanism: "tcp.timeout",
            inputs: vec![input(Kind::Tor(TorInput {
                ip: TOR_IP.into(),
                port: TOR_PORT,
            }))],
            passes: Vec::new(),
        },
        Condition {
            number: 13,
            name: "down",
            description: "198.19.3.13 is routed nowhere (the firewall answers host unreachable) \
                          for inside and outside alike.",
            target: DOWN_IP,
            expected_status: "down",
            mechanism: "",
            inputs: vec![tcp(DOWN_IP, 80), http("http://down.lab.example/", DOWN_IP)],
            passes: Vec::new(),
        },
        Condition {
            number: 14,
            name: "clean",
            description: "198.19.3.30: nothing touches it (HTTP, HTTPS, QUIC, DNS, TCP echo, \
                          WireGuard).",
            target: CLEAN_IP,
            expected_status: "ok",
            mechanism: "",
            inputs: vec![
                dns("clean.lab.example", RESOLVER_IP),
                tcp(CLEAN_IP, 80),
                input(Kind::Tls(TlsInput {
                    ip: CLEAN_IP.into(),
                    port: 443,
                    sni: "clean.lab.example".into(),
                    ..Default::default()
                })),
                http(&format!("https://{CLEAN_SITE}/"), CLEAN_IP),
                input(Kind::Web(WebInput {
                    url: "http://clean.lab.example/".into(),
                    resolver: format!("{RESOLVER_IP}:53"),
                })),
                quic(CLEAN_IP, "clean.lab.example"),
                wireguard(CLEAN_IP),
            ],
            passes: Vec::new(),
        },
        Condition {
            number: 15,
            name: "wireguard-blocked",
            description: "WireGuard to 198.19.3.24:51820: UDP datagrams shaped like a handshake \
                          initiation (148 bytes, starting 01 00 00 00) are dropped (iptables \
                          u32 fingerprint, any port); other UDP to the address passes.",
            target: WIREGUARD_IP,
            expected_status: "blocked",
            mechanism: "vpn.blocked",
            inputs: vec![wireguard(WIREGUARD_IP)],
            passes: vec![quic(WIREGUARD_IP, "wireguard.lab.example")],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_in_the_lab_range_and_round_trips() {
        let c = catalogue(30);
        assert_eq!(c.iter().map(|c| c.number).max(), Some(15));
        for cond in &c {
            assert!(cond.target.starts_with("198.19."), "{}", cond.name);
            assert!(!cond.inputs.is_empty(), "{}", cond.name);
            for i in &cond.inputs {
                let j = serde_json::to_string(i).expect("json");
                let back: ProbeInput = serde_json::from_str(&j).expect("round trip");
                assert_eq!(&back, i);
            }
        }
        for s in SEGMENTS {
            assert!(s.leaf_if.len() <= 15 && s.fw_if.len() <= 15);
        }
    }
}
