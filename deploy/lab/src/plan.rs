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

use crate::censor::{
    control_dns_drop, dnat, drop_all, forward, hijack, injection, tcp_string, throttle, Needle::*,
    Rule, DROP, RESET, WIREGUARD_INITIATION_U32,
};
use crate::{quic_censor, store};
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
        fw_if: FW_OUTSIDE_IF,
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
/// The firewall's interface toward the outside (control) segment: only the
/// split-failure conditions (26, 27) match it.
pub const FW_OUTSIDE_IF: &str = "fw-out";

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
/// Condition 16: the real site the censor intercepts (TLS from inside is
/// DNATed to [`INTERCEPT_IP`]).
pub const MITM_IP: &str = "198.19.3.31";
/// Conditions 17-21: name-based virtual hosts broken for everyone (expired,
/// wrong-name and untrusted certificates, a redirect loop, a 30-hop chain).
pub const BROKEN_IP: &str = "198.19.3.32";
/// Condition 22: accepts TCP on :80 and :443 and never answers.
pub const SILENT_IP: &str = "198.19.3.33";
/// Condition 28: a real site whose HTTP the censor swaps for a look-alike.
pub const LOOKALIKE_IP: &str = "198.19.3.34";
/// Condition 29: a real site whose HTTP the censor swaps for a page
/// carrying a known block-page fingerprint.
pub const FINGERPRINT_IP: &str = "198.19.3.35";
/// Condition 30: a site the censor throttles toward the inside segment.
pub const THROTTLED_IP: &str = "198.19.3.36";
/// Condition 49: a site whose own server serves the inside segment a
/// CAPTCHA challenge (server-side discrimination, not network censorship).
pub const CAPTCHA_IP: &str = "198.19.3.37";
/// The lab's app store (nginx, iTunes Search `lookup` format, `crate::store`).
pub const STORE_IP: &str = "198.19.3.38";
pub const RESOLVER_IP: &str = "198.19.3.53";
/// The censor's TLS interception server (condition 16), in its own network:
/// terminates TLS with a certificate from the censor's CA and proxies to
/// the real site.
pub const INTERCEPT_IP: &str = "198.19.6.9";
/// The censor's look-alike block page (condition 28).
pub const LOOKALIKE_BLOCKPAGE_IP: &str = "198.19.6.10";
/// The censor's fingerprinted block page (condition 29).
pub const FINGERPRINT_BLOCKPAGE_IP: &str = "198.19.6.11";
/// The censor's transparent proxy (condition 34): nginx reverse proxy to
/// the real site on :80, and on :443 a firewall DNAT to the real site (a
/// TLS passthrough: the certificate stays the site's).
pub const PROXY_IP: &str = "198.19.6.12";
/// A censor address where nothing listens (condition 47): every connect to
/// it is refused, for anyone.
pub const REFUSING_IP: &str = "198.19.6.13";
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

/// Condition 30: the rate the firewall allows from [`THROTTLED_IP`] toward
/// the inside segment (tc htb classes on `fw-in`, one for its :80 and one
/// for its :443, so the HTTP and HTTPS fetches do not share one), and the
/// size of the file fetched through it: 512 KiB at 256 kbit/s is about
/// 17 s inside, a few milliseconds for the control.
pub const THROTTLE_RATE: &str = "256kbit";
pub const THROTTLED_BODY_BYTES: usize = 512 * 1024;
pub const THROTTLED_PATH: &str = "/big.bin";
/// The throttle condition's campaign deadline (the others use 30 s): the
/// inside fetch needs about 17 s of it.
pub const THROTTLE_DEADLINE_SECS: u64 = 60;

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
    MITM_IP,
    BROKEN_IP,
    SILENT_IP,
    LOOKALIKE_IP,
    FINGERPRINT_IP,
    THROTTLED_IP,
    CAPTCHA_IP,
    STORE_IP,
    INTERCEPT_IP,
    LOOKALIKE_BLOCKPAGE_IP,
    FINGERPRINT_BLOCKPAGE_IP,
    PROXY_IP,
    REFUSING_IP,
];

/// nginx serves HTTP and HTTPS on these (the censor's servers have their own
/// server blocks).
pub const WEB_IPS: &[&str] = &[
    SNI_IP,
    HOST_IP,
    BLACKHOLE_IP,
    REFUSED_IP,
    BLOCKPAGE_DNAT_IP,
    CLEAN_IP,
    MITM_IP,
    BROKEN_IP,
    LOOKALIKE_IP,
    FINGERPRINT_IP,
    THROTTLED_IP,
    CAPTCHA_IP,
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

// The OONI Web Connectivity QA matrix (issue 18): names of conditions 16-49.
pub const MITM_NAME: &str = "mitm.lab.example";
pub const EXPIRED_NAME: &str = "expired.lab.example";
pub const WRONG_HOST_NAME: &str = "wrong-host.lab.example";
/// The only name on the certificate `wrong-host.lab.example` presents.
pub const WRONG_HOST_CERT_NAME: &str = "another-site.example";
pub const UNTRUSTED_NAME: &str = "untrusted.lab.example";
pub const REDIRECT_LOOP_NAME: &str = "redirect-loop.lab.example";
pub const REDIRECTS_NAME: &str = "redirects.lab.example";
/// `/r/N` redirects to `/r/N-1`; `/r/0` is the page.
pub const REDIRECT_HOPS: u32 = 30;
pub const SILENT_NAME: &str = "silent.lab.example";
/// Resolves to 127.0.0.1 for everyone (the lab resolver's record).
pub const LOCALHOST_NAME: &str = "localhost.lab.example";
/// In no record: the lab resolver answers NXDOMAIN to everyone.
pub const NX_EVERYONE_NAME: &str = "nonexistent.lab.example";
/// The censor answers 127.0.0.1 for it (inside only).
pub const HIJACKED_LOCALHOST_NAME: &str = "hijacked-localhost.lab.example";
pub const LOCALHOST_IP: &str = "127.0.0.1";
/// The control's (outside's) DNS queries for these are dropped by the
/// firewall: a failure on the control side only.
pub const CONTROL_DNSFAIL_NAME: &str = "control-dnsfail.lab.example";
pub const CONTROL_DNSFAIL_BLACKHOLED_NAME: &str = "control-dnsfail-blackholed.lab.example";
pub const LOOKALIKE_NAME: &str = "lookalike.lab.example";
/// The look-alike block page's title (the real site's is its name).
pub const LOOKALIKE_BLOCKPAGE_TITLE: &str = "Notice - this content is unavailable";
pub const FINGERPRINT_NAME: &str = "fingerprint.lab.example";
/// A body string of a real block page from OONI's fingerprint list
/// (ooni/blocking-fingerprints `fingerprints_http.csv`, `ooni.ir_0`: Iran's
/// national block page, an iframe to 10.10.34.34; "body contains").
pub const BLOCKPAGE_FINGERPRINT: &str = "iframe src=\"http://10.10.34.34";
pub const THROTTLED_NAME: &str = "throttled.lab.example";
/// DNS over TCP for this name is reset by the firewall (inside only).
pub const DNS_TCP_RESET_NAME: &str = "dns-tcp-reset.lab.example";
/// An internationalised name and its A-label (what the resolver holds).
pub const IDN_NAME: &str = "bücher.lab.example";
pub const IDN_PUNYCODE: &str = "xn--bcher-kva.lab.example";
/// The same name with its first letter upper case (must be case-folded
/// before IDNA encoding).
pub const IDN_NAME_UPPER: &str = "Bücher.lab.example";
/// Ghost names (condition 32): in no record, so the lab resolver answers
/// NXDOMAIN to everyone; the censor still answers inside queries with a
/// censor address (HTTP: the block page; HTTPS: a censor host that refuses
/// :443).
pub const GHOST_NAME: &str = "ghost.lab.example";
pub const GHOST_HTTPS_NAME: &str = "ghost-https.lab.example";
/// Condition 33: the censor answers inside queries with its interception
/// server's address (a certificate no agent trusts).
pub const TLS_HIJACK_NAME: &str = "tls-hijack.lab.example";
/// Condition 34: the censor answers inside queries with its transparent
/// proxy's address; the page and the certificate are the real ones.
pub const PROXIED_NAME: &str = "proxied.lab.example";
/// Condition 35: a body larger than the agents' read cap (1 MiB).
pub const LARGE_NAME: &str = "large.lab.example";
pub const LARGE_PATH: &str = "/large.bin";
pub const LARGE_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Condition 36: `Location: http://` (and `https://`), no host.
pub const BROKEN_REDIRECT_NAME: &str = "broken-redirect.lab.example";
/// Condition 37: a port nobody listens on.
pub const CLOSED_PORT: u16 = 444;
/// Conditions 39-43 and 48: redirects (on 198.19.3.32, :80 and :443) to a name
/// the censor interferes with, each path to another: (path, target URL).
pub const REDIRECT_TO_NAME: &str = "redirect-to.lab.example";
pub const REDIRECT_TARGETS: &[(&str, &str)] = &[
    ("/host-reset", "http://blocked-site.example/"),
    ("/sni-reset", "https://blocked-sni.lab.example/"),
    ("/refused", "http://refused.lab.example/"),
    ("/nxdomain", "http://censored-nx.lab.example/"),
    ("/timeout", "http://blackholed.lab.example/"),
    // Condition 48: condition 45's SNI drop on the second hop.
    ("/sni-timeout", "https://sni-drop.lab.example/"),
];
/// Condition 38: only an AAAA record (an A query gets NOERROR, no answer).
pub const NO_ADDRS_NAME: &str = "noaddrs.lab.example";
pub const NO_ADDRS_AAAA: &str = "2001:db8::18";
/// Condition 44: an inside HTTP request whose Host header contains
/// `Host: host-drop` is dropped, and the rest of its flow with it (the
/// firewall connmarks the flow, [`STRING_DROP_MARK`]).
pub const HOST_DROP_NAME: &str = "host-drop.lab.example";
pub const HOST_DROP_KEYWORD: &str = "host-drop";
/// Condition 45: an inside TLS ClientHello whose SNI contains `sni-drop` is
/// dropped, and the rest of its flow with it.
pub const SNI_DROP_NAME: &str = "sni-drop.lab.example";
pub const SNI_DROP_KEYWORD: &str = "sni-drop";
/// Conditions 44-45: the connmark bit of a flow the firewall drops after
/// a string match (condition 11 uses bit 0x1).
pub const STRING_DROP_MARK: &str = "0x2/0x2";
/// Condition 46: the censor answers inside queries for it with its
/// transparent proxy's address ([`PROXY_IP`], whose :443 reaches the real
/// site), and resets ClientHellos whose SNI contains `spoofed-sni`.
pub const SPOOFED_SNI_NAME: &str = "spoofed-sni.lab.example";
pub const SPOOFED_SNI_KEYWORD: &str = "spoofed-sni";
/// Condition 47: the censor answers inside queries for it with
/// [`REFUSING_IP`], where every connect is refused.
pub const SPOOFED_REFUSED_NAME: &str = "spoofed-refused.lab.example";
/// Condition 49: served by [`CAPTCHA_IP`]; its nginx answers the inside
/// segment with a 403 challenge page titled [`CAPTCHA_TITLE`].
pub const CAPTCHA_NAME: &str = "captcha.lab.example";
/// The challenge page's title (Cloudflare's interstitial's).
pub const CAPTCHA_TITLE: &str = "Just a moment...";
/// The lab's app store.
pub const STORE_NAME: &str = "store.lab.example";
/// The source range the CAPTCHA server discriminates against (the inside
/// segment).
pub const CAPTCHA_SOURCE_NET: &str = "198.19.1.0/24";

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
    // Issue 18 (OONI's QA matrix), conditions 16-43.
    (MITM_NAME, MITM_IP),
    (EXPIRED_NAME, BROKEN_IP),
    (WRONG_HOST_NAME, BROKEN_IP),
    (UNTRUSTED_NAME, BROKEN_IP),
    (REDIRECT_LOOP_NAME, BROKEN_IP),
    (REDIRECTS_NAME, BROKEN_IP),
    (SILENT_NAME, SILENT_IP),
    (LOCALHOST_NAME, LOCALHOST_IP),
    (HIJACKED_LOCALHOST_NAME, CLEAN_IP),
    (CONTROL_DNSFAIL_NAME, CLEAN_IP),
    (CONTROL_DNSFAIL_BLACKHOLED_NAME, BLACKHOLE_IP),
    (LOOKALIKE_NAME, LOOKALIKE_IP),
    (FINGERPRINT_NAME, FINGERPRINT_IP),
    (THROTTLED_NAME, THROTTLED_IP),
    (DNS_TCP_RESET_NAME, CLEAN_IP),
    (IDN_PUNYCODE, CLEAN_IP),
    (TLS_HIJACK_NAME, CLEAN_IP),
    (PROXIED_NAME, CLEAN_IP),
    (LARGE_NAME, CLEAN_IP),
    (BROKEN_REDIRECT_NAME, BROKEN_IP),
    (REDIRECT_TO_NAME, BROKEN_IP),
    // Conditions 44-46.
    (HOST_DROP_NAME, CLEAN_IP),
    (SNI_DROP_NAME, CLEAN_IP),
    (SPOOFED_SNI_NAME, CLEAN_IP),
    // Conditions 47-49.
    (SPOOFED_REFUSED_NAME, CLEAN_IP),
    (CAPTCHA_NAME, CAPTCHA_IP),
    (STORE_NAME, STORE_IP),
];

/// AAAA-only records of the lab resolver (IPv6 is off in the lab: these
/// exist only to be "no A record").
pub const AAAA_RECORDS: &[(&str, &str)] = &[(NO_ADDRS_NAME, NO_ADDRS_AAAA)];

/// Namespace name for a role.
pub fn ns(prefix: &str, role: &str) -> String {
    format!("{prefix}-{role}")
}

/// One censorship condition of the catalogue.
#[derive(Clone, Debug, Serialize)]
pub struct Condition {
    /// Number in the lab's list (1..=14 are issue 5's, 15 is WireGuard,
    /// 16..=49 OONI's Web Connectivity QA matrix, issue 18, 50 the app
    /// store).
    pub number: u32,
    /// Stable name, used by tests and docs.
    pub name: &'static str,
    pub description: &'static str,
    /// The address the condition is bound to.
    pub target: &'static str,
    /// What the analysis should conclude for an inside agent:
    /// `blocked`, `down`, `ok` or (only where the control cannot be used)
    /// `inconclusive`.
    pub expected_status: &'static str,
    /// Mechanism name from DESIGN.md (`dns.injection`, `tcp.reset`, ...);
    /// empty when the status is not `blocked`.
    pub mechanism: &'static str,
    /// Probe inputs that exercise it (run them inside and outside); inside,
    /// each must come out `expected_status` with `mechanism`.
    pub inputs: Vec<ProbeInput>,
    /// Inputs on the same target that the censor lets through (it is
    /// selective, not an outage): inside, each must come out `ok`. For
    /// condition 49 (no censor) it is the site's own challenge page under
    /// its verified certificate, which Vantage, like OONI, calls `ok`.
    pub passes: Vec<ProbeInput>,
    /// What the censor does for it, installed in the firewall by
    /// [`crate::censor::apply`]. Empty where nothing is filtered (clean,
    /// broken for everyone, the site's own doing) or where another
    /// condition's rules act (a redirect to its target).
    #[serde(skip)]
    pub censor: Vec<Rule>,
}

fn input(kind: Kind) -> ProbeInput {
    ProbeInput {
        kind: Some(kind),
        ..Default::default()
    }
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

/// The `web` probe for `url`, resolving with the lab resolver.
fn web(url: &str) -> ProbeInput {
    input(Kind::Web(WebInput {
        url: url.into(),
        resolver: format!("{RESOLVER_IP}:53"),
    }))
}

/// A DNS query over TCP to the lab resolver.
fn dns_tcp(domain: &str) -> ProbeInput {
    input(Kind::Dns(DnsInput {
        domain: domain.into(),
        resolver: format!("{RESOLVER_IP}:53"),
        transport: "tcp".into(),
        ..Default::default()
    }))
}

fn tls(ip: &str, sni: &str) -> ProbeInput {
    input(Kind::Tls(TlsInput {
        ip: ip.into(),
        port: 443,
        sni: sni.into(),
        ..Default::default()
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
    // What the censor's rules need.
    let window = residual_window_secs.max(1).to_string();
    let vpn_port = OPENVPN_PORT.to_string();
    let enc_port = ENCRYPTED_PORT.to_string();
    let enc = [
        "-d",
        ENCRYPTED_IP,
        "-p",
        "tcp",
        "--dport",
        enc_port.as_str(),
    ];
    let mark = ["-j", "CONNMARK", "--set-xmark", STRING_DROP_MARK];
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
                // The web probe: the forged address answers nothing, but
                // the first interference is the injection.
                web(&format!("http://{INJECTED_NAME}/")),
            ],
            passes: Vec::new(),
            censor: vec![injection(INJECTED_NAME, FORGED_IP)],
        },
        Condition {
            number: 2,
            name: "dns-hijack-bogon",
            description: "Queries for hijacked.lab.example never reach the resolver; the censor \
                          answers 10.10.10.10 instead.",
            target: RESOLVER_IP,
            expected_status: "blocked",
            mechanism: "dns.hijack",
            // The web probe resolves the bogon and cannot connect: the
            // first interference (the hijack) names the mechanism.
            inputs: vec![
                dns(HIJACKED_NAME, RESOLVER_IP),
                web(&format!("http://{HIJACKED_NAME}/")),
            ],
            passes: Vec::new(),
            censor: vec![hijack(HIJACKED_NAME, BOGON_IP)],
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
            censor: vec![hijack(HIJACKED_BLOCKPAGE_NAME, BLOCKPAGE_IP)],
        },
        Condition {
            number: 3,
            name: "dns-nxdomain",
            description: "Queries for censored-nx.lab.example are answered NXDOMAIN by the \
                          censor; the real resolver never sees them.",
            target: RESOLVER_IP,
            expected_status: "blocked",
            mechanism: "dns.nxdomain",
            inputs: vec![
                dns(NXDOMAIN_NAME, RESOLVER_IP),
                web(&format!("http://{NXDOMAIN_NAME}/")),
            ],
            passes: Vec::new(),
            censor: vec![hijack(NXDOMAIN_NAME, "nxdomain")],
        },
        Condition {
            number: 4,
            name: "tls-sni-reset",
            description: "A TLS ClientHello to 198.19.3.14:443 whose SNI contains `blocked-sni` \
                          is answered with a TCP reset; other SNIs pass.",
            target: SNI_IP,
            expected_status: "blocked",
            mechanism: "tls.reset",
            inputs: vec![
                input(Kind::Tls(TlsInput {
                    ip: SNI_IP.into(),
                    port: 443,
                    sni: "blocked-sni.lab.example".into(),
                    control_sni: "clean.lab.example".into(),
                    ..Default::default()
                })),
                web("https://blocked-sni.lab.example/"),
            ],
            passes: vec![input(Kind::Tls(TlsInput {
                ip: SNI_IP.into(),
                port: 443,
                sni: "clean.lab.example".into(),
                ..Default::default()
            }))],
            // A TCP reset on the SNI keyword in the ClientHello.
            censor: vec![tcp_string(Some(SNI_IP), "443", Exact(SNI_KEYWORD), RESET)],
        },
        Condition {
            number: 5,
            name: "http-host-reset",
            description: "An HTTP request to 198.19.3.15:80 whose Host header contains \
                          `blocked-site` is answered with a TCP reset; other hosts pass.",
            target: HOST_IP,
            expected_status: "blocked",
            mechanism: "http.reset",
            inputs: vec![
                http(&format!("http://{BLOCKED_SITE}/"), HOST_IP),
                web(&format!("http://{BLOCKED_SITE}/")),
            ],
            passes: vec![http(&format!("http://{CLEAN_SITE}/"), HOST_IP)],
            // A TCP reset on the Host keyword.
            censor: vec![tcp_string(
                Some(HOST_IP),
                "80",
                Icase(&format!("Host: {HOST_KEYWORD}")),
                RESET,
            )],
        },
        Condition {
            number: 6,
            name: "ip-blackhole",
            description: "Every packet from inside to 198.19.3.16 is dropped.",
            target: BLACKHOLE_IP,
            expected_status: "blocked",
            mechanism: "tcp.timeout",
            inputs: vec![tcp(BLACKHOLE_IP, 80), web("http://blackholed.lab.example/")],
            passes: Vec::new(),
            censor: vec![drop_all(BLACKHOLE_IP)],
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
            censor: vec![
                forward(&["-d", REFUSED_IP, "-p", "tcp", "--dport", "80", "--syn"]).then(RESET),
                forward(&["-d", REFUSED_IP, "-p", "tcp", "--dport", "443", "-j", "REJECT"])
                    .then(&["--reject-with", "icmp-port-unreachable"]),
            ],
        },
        Condition {
            number: 8,
            name: "http-blockpage",
            description: "HTTP from inside to 198.19.3.18:80 is DNATed to the block page server \
                          (198.19.6.8, in the censor's own network).",
            target: BLOCKPAGE_DNAT_IP,
            expected_status: "blocked",
            mechanism: "http.blockpage",
            inputs: vec![
                http(&format!("http://{CLEAN_SITE}/"), BLOCKPAGE_DNAT_IP),
                web("http://blockpage-site.lab.example/"),
            ],
            passes: Vec::new(),
            censor: vec![dnat(BLOCKPAGE_DNAT_IP, "80", &format!("{BLOCKPAGE_IP}:80"))],
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
            // The SNI sits in the AEAD-protected CRYPTO frames of the Initial,
            // out of a string match's reach, so the inside clients'
            // datagrams to the QUIC target are queued to the QUIC censor
            // (started by `censor::start`), which decrypts each Initial and
            // answers drop or accept. No --queue-bypass: while the censor
            // is not running the datagrams are dropped, which the pass (a
            // clean SNI) would show.
            censor: vec![forward(&["-d", QUIC_IP, "-p", "udp", "--dport", "443"])
                .then(&["-j", "NFQUEUE", "--queue-num", &quic_censor::LAB_QUEUE.to_string()])],
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
            // UDP dropped; over TCP the segment whose payload starts with a
            // 2-byte length and opcode P_CONTROL_HARD_RESET_CLIENT_V2 (7 <<
            // 3) is answered with a reset (u32: skip the IP and TCP
            // headers, read the third payload byte, mask the key id).
            censor: vec![
                forward(&["-d", OPENVPN_IP, "-p", "udp", "--dport", &vpn_port]).then(DROP),
                forward(&["-d", OPENVPN_IP, "-p", "tcp", "--dport", &vpn_port])
                    .then(&["-m", "u32", "--u32", "0>>22&0x3C@12>>26&0x3C@0>>8&0xF8=0x38"])
                    .then(RESET),
            ],
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
            // Rule order matters:
            //  a. a client SYN to the target within the window after a
            //     trigger is dropped (`--rcheck` never refreshes the entry,
            //     so the window is exactly N seconds from the trigger);
            //  b. the rest of a triggering flow (its retransmissions too)
            //     is dropped by connmark, without touching the residual
            //     list (otherwise the kernel's retransmissions of the
            //     dropped segment would keep re-arming it for minutes);
            //  c. the trigger: the flow's first data segment (3rd packet
            //     from the client: SYN, ACK, data), 200+ bytes, neither a
            //     TLS record (first byte 0x16) nor HTTP: marks the flow and
            //     records the client. The rules are bound to one server
            //     ip:port, so the list is effectively keyed by the (client,
            //     server ip, port) 3-tuple.
            censor: vec![
                Rule::Sysctl("net.netfilter.nf_conntrack_acct=1"),
                forward(&enc)
                    .then(&["--syn", "-m", "recent", "--name", "fet", "--rsource"])
                    .then(&["--rcheck", "--seconds", &window, "-j", "DROP"]),
                forward(&enc).then(&["-m", "connmark", "--mark", "0x1/0x1", "-j", "DROP"]),
                forward(&enc)
                    .then(&["-m", "conntrack", "--ctstate", "ESTABLISHED", "-m", "connbytes"])
                    .then(&["--connbytes", "3:3", "--connbytes-dir", "original"])
                    .then(&["--connbytes-mode", "packets", "-m", "length", "--length"])
                    .then(&["200:65535", "-m", "u32", "!", "--u32"])
                    .then(&["0>>22&0x3C@12>>26&0x3C@0>>24=0x16", "-m", "string", "!"])
                    .then(&["--string", "HTTP/", "--algo", "bm", "-m", "recent", "--name"])
                    .then(&["fet", "--rsource", "--set", "-j", "CONNMARK", "--set-xmark"])
                    .then(&["0x1/0x1"]),
                forward(&enc).then(&["-m", "connmark", "--mark", "0x1/0x1", "-j", "DROP"]),
            ],
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
            censor: vec![drop_all(TOR_IP)],
        },
        Condition {
            number: 13,
            name: "down",
            description: "198.19.3.13 is routed nowhere (the firewall answers host unreachable) \
                          for inside and outside alike.",
            target: DOWN_IP,
            expected_status: "down",
            mechanism: "",
            inputs: vec![
                tcp(DOWN_IP, 80),
                http("http://down.lab.example/", DOWN_IP),
                web("http://down.lab.example/"),
            ],
            passes: Vec::new(),
            censor: Vec::new(),
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
                // HTTPS through the web probe (the agents trust the lab CA)
                // and an internationalised name (the resolver holds its
                // A-label, xn--bcher-kva.lab.example).
                web("https://clean.lab.example/"),
                web(&format!("http://{IDN_NAME}/")),
                // OONI QA idnaWithoutCensorshipWithFirstLetterUppercase.
                web(&format!("http://{IDN_NAME_UPPER}/")),
            ],
            passes: Vec::new(),
            censor: Vec::new(),
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
            // Protocol fingerprinting, on any port of the target. A handshake
            // initiation is a 148-byte UDP payload starting with message
            // type 1 and three zero bytes (WireGuard whitepaper, section
            // 5.4.2): u32 skips the IP header, checks the UDP length field
            // (8 + 148 = 156) and the payload's first 4 bytes.
            censor: vec![forward(&["-d", WIREGUARD_IP, "-p", "udp", "-m", "u32", "--u32"])
                .then(&[WIREGUARD_INITIATION_U32])
                .then(DROP)],
        },
        // ---- Issue 18: OONI's Web Connectivity QA matrix, as far as real
        // servers and the kernel can build it. ----
        Condition {
            number: 16,
            name: "tls-mitm",
            description: "TLS from inside to mitm.lab.example (198.19.3.31:443) is DNATed to the \
                          censor's interception server (198.19.6.9, nginx), which presents a \
                          certificate for the requested name issued by the censor's own CA (not \
                          the lab CA the agents trust) and proxies to the real site: same page, \
                          another certificate. Plain HTTP to the site passes.",
            target: MITM_IP,
            expected_status: "blocked",
            mechanism: "tls.mitm",
            inputs: vec![
                web(&format!("https://{MITM_NAME}/")),
                http(&format!("https://{MITM_NAME}/"), MITM_IP),
                tls(MITM_IP, MITM_NAME),
            ],
            passes: vec![web(&format!("http://{MITM_NAME}/"))],
            censor: vec![dnat(MITM_IP, "443", &format!("{INTERCEPT_IP}:443"))],
        },
        Condition {
            number: 17,
            name: "tls-expired",
            description: "Broken for everyone, nothing filtered: expired.lab.example \
                          (198.19.3.32:443) presents a lab-CA certificate that expired in 2021.",
            target: BROKEN_IP,
            expected_status: "down",
            mechanism: "",
            inputs: vec![web(&format!("https://{EXPIRED_NAME}/"))],
            passes: Vec::new(),
            censor: Vec::new(),
        },
        Condition {
            number: 18,
            name: "tls-wrong-host",
            description: "Broken for everyone, nothing filtered: wrong-host.lab.example \
                          (198.19.3.32:443) presents a lab-CA certificate for another name \
                          (another-site.example) only.",
            target: BROKEN_IP,
            expected_status: "down",
            mechanism: "",
            inputs: vec![web(&format!("https://{WRONG_HOST_NAME}/"))],
            passes: Vec::new(),
            censor: Vec::new(),
        },
        Condition {
            number: 19,
            name: "tls-untrusted-root",
            description: "Broken for everyone, nothing filtered: untrusted.lab.example \
                          (198.19.3.32:443) presents a self-signed certificate no agent trusts.",
            target: BROKEN_IP,
            expected_status: "down",
            mechanism: "",
            inputs: vec![web(&format!("https://{UNTRUSTED_NAME}/"))],
            passes: Vec::new(),
            censor: Vec::new(),
        },
        Condition {
            number: 20,
            name: "redirect-loop",
            description: "Broken for everyone, nothing filtered: redirect-loop.lab.example \
                          (198.19.3.32, :80 and :443) answers every request with a 302 to itself.",
            target: BROKEN_IP,
            expected_status: "down",
            mechanism: "",
            inputs: vec![
                web(&format!("http://{REDIRECT_LOOP_NAME}/")),
                web(&format!("https://{REDIRECT_LOOP_NAME}/")),
            ],
            passes: Vec::new(),
            censor: Vec::new(),
        },
        Condition {
            number: 21,
            name: "too-many-redirects",
            description: "Broken for everyone, nothing filtered: redirects.lab.example \
                          (198.19.3.32, :80 and :443) is a chain of 30 redirects, /r/30 -> /r/29 \
                          -> ... -> /r/0 (the page), longer than any client follows (OONI's \
                          stops after 10).",
            target: BROKEN_IP,
            expected_status: "down",
            mechanism: "",
            inputs: vec![
                web(&format!("http://{REDIRECTS_NAME}/r/{REDIRECT_HOPS}")),
                web(&format!("https://{REDIRECTS_NAME}/r/{REDIRECT_HOPS}")),
            ],
            passes: Vec::new(),
            censor: Vec::new(),
        },
        Condition {
            number: 22,
            name: "tcp-silent",
            description: "Broken for everyone, nothing filtered: silent.lab.example \
                          (198.19.3.33) accepts TCP on :80 and :443 (`vantage-lab silent-server`) \
                          and never sends a byte: HTTP and the TLS handshake time out.",
            target: SILENT_IP,
            expected_status: "down",
            mechanism: "",
            inputs: vec![
                web(&format!("http://{SILENT_NAME}/")),
                web(&format!("https://{SILENT_NAME}/")),
            ],
            passes: Vec::new(),
            censor: Vec::new(),
        },
        Condition {
            number: 23,
            name: "localhost-for-everyone",
            description: "Broken for everyone, nothing filtered: the lab resolver itself answers \
                          127.0.0.1 for localhost.lab.example, to inside and control alike \
                          (HTTP and HTTPS).",
            target: RESOLVER_IP,
            expected_status: "down",
            mechanism: "",
            inputs: vec![
                web(&format!("http://{LOCALHOST_NAME}/")),
                web(&format!("https://{LOCALHOST_NAME}/")),
            ],
            passes: Vec::new(),
            censor: Vec::new(),
        },
        Condition {
            number: 24,
            name: "nxdomain-for-everyone",
            description: "Broken for everyone, nothing filtered: nonexistent.lab.example has no \
                          record; the lab resolver answers NXDOMAIN to inside and control alike.",
            target: RESOLVER_IP,
            expected_status: "down",
            mechanism: "",
            inputs: vec![web(&format!("http://{NX_EVERYONE_NAME}/"))],
            passes: Vec::new(),
            censor: Vec::new(),
        },
        Condition {
            number: 25,
            name: "dns-hijack-localhost",
            description: "The censor answers inside queries for hijacked-localhost.lab.example \
                          with 127.0.0.1 (the genuine answer is 198.19.3.30); the web probe then \
                          connects to its own loopback and fails, but the first interference is \
                          the hijack.",
            target: RESOLVER_IP,
            expected_status: "blocked",
            mechanism: "dns.hijack",
            inputs: vec![
                dns(HIJACKED_LOCALHOST_NAME, RESOLVER_IP),
                web(&format!("http://{HIJACKED_LOCALHOST_NAME}/")),
                web(&format!("https://{HIJACKED_LOCALHOST_NAME}/")),
            ],
            passes: Vec::new(),
            censor: vec![hijack(HIJACKED_LOCALHOST_NAME, LOCALHOST_IP)],
        },
        Condition {
            number: 26,
            name: "control-dns-fail-https",
            description: "SPLIT FAILURE, control side only (not censorship): the firewall drops \
                          the control's (outside segment's) DNS queries for \
                          control-dnsfail.lab.example; inside resolves it and fetches the page \
                          over HTTPS with a certificate valid for the name (the lab CA). A \
                          TLS-authenticated final page needs no control: ok (OONI QA \
                          controlFailureWithSuccessfulHTTPSWebsite; a DNS inconsistency never \
                          overrides an ok final response).",
            target: CLEAN_IP,
            expected_status: "ok",
            mechanism: "",
            inputs: vec![web(&format!("https://{CONTROL_DNSFAIL_NAME}/"))],
            passes: Vec::new(),
            censor: vec![control_dns_drop(CONTROL_DNSFAIL_NAME)],
        },
        Condition {
            number: 27,
            name: "control-dns-fail-no-control",
            description: "SPLIT FAILURE, no usable control: the firewall drops the control's DNS \
                          queries for control-dnsfail.lab.example and \
                          control-dnsfail-blackholed.lab.example. Inside, the first is fetched \
                          over plain HTTP (a page no control can vouch for: OONI QA \
                          controlFailureWithSuccessfulHTTPWebsite gives null/null); the second \
                          resolves to 198.19.3.16, whose connect is blackholed. Inconclusive, \
                          never down: the control's failure is not the inside's.",
            target: CLEAN_IP,
            expected_status: "inconclusive",
            mechanism: "",
            inputs: vec![
                web(&format!("http://{CONTROL_DNSFAIL_NAME}/")),
                web(&format!("http://{CONTROL_DNSFAIL_BLACKHOLED_NAME}/")),
            ],
            passes: Vec::new(),
            censor: vec![
                control_dns_drop(CONTROL_DNSFAIL_NAME),
                control_dns_drop(CONTROL_DNSFAIL_BLACKHOLED_NAME),
            ],
        },
        Condition {
            number: 28,
            name: "http-blockpage-lookalike",
            description: "HTTP from inside to lookalike.lab.example (198.19.3.34:80) is DNATed to \
                          a censor page (198.19.6.10) with status 200 and a body length within \
                          10 % of the real page's, but another <title>. HTTPS to the site passes.",
            target: LOOKALIKE_IP,
            expected_status: "blocked",
            mechanism: "http.blockpage",
            inputs: vec![
                web(&format!("http://{LOOKALIKE_NAME}/")),
                http(&format!("http://{LOOKALIKE_NAME}/"), LOOKALIKE_IP),
            ],
            passes: vec![web(&format!("https://{LOOKALIKE_NAME}/"))],
            censor: vec![dnat(LOOKALIKE_IP, "80", &format!("{LOOKALIKE_BLOCKPAGE_IP}:80"))],
        },
        Condition {
            number: 29,
            name: "http-blockpage-fingerprint",
            description: "HTTP from inside to fingerprint.lab.example (198.19.3.35:80) is DNATed \
                          to a censor page (198.19.6.11) with status 200, the real page's \
                          <title> and a body length within 10 % of it, carrying Iran's block \
                          page iframe (`iframe src=\"http://10.10.34.34`, OONI fingerprint \
                          ooni.ir_0): only the fingerprint gives it away. HTTPS passes.",
            target: FINGERPRINT_IP,
            expected_status: "blocked",
            mechanism: "http.blockpage",
            inputs: vec![
                web(&format!("http://{FINGERPRINT_NAME}/")),
                http(&format!("http://{FINGERPRINT_NAME}/"), FINGERPRINT_IP),
            ],
            passes: vec![web(&format!("https://{FINGERPRINT_NAME}/"))],
            censor: vec![dnat(FINGERPRINT_IP, "80", &format!("{FINGERPRINT_BLOCKPAGE_IP}:80"))],
        },
        Condition {
            number: 30,
            name: "http-throttle",
            description: "Traffic from throttled.lab.example (198.19.3.36) toward the inside \
                          segment is shaped to 256 kbit/s (tc htb classes on the firewall's \
                          fw-in, u32 filters on the source address and port, one class for :80 \
                          and one for :443); the control is not. The 512 KiB /big.bin takes \
                          about 17 s inside, over HTTP and over HTTPS (OONI QA \
                          throttlingWithHTTPS), milliseconds outside.",
            target: THROTTLED_IP,
            expected_status: "blocked",
            mechanism: "http.throttle",
            inputs: vec![
                web(&format!("http://{THROTTLED_NAME}{THROTTLED_PATH}")),
                web(&format!("https://{THROTTLED_NAME}{THROTTLED_PATH}")),
            ],
            passes: Vec::new(),
            censor: throttle(THROTTLED_IP, &["80", "443"], THROTTLE_RATE),
        },
        Condition {
            number: 31,
            name: "dns-tcp-reset",
            description: "DNS over TCP from inside to the lab resolver asking for \
                          dns-tcp-reset.lab.example is answered with a TCP reset (iptables \
                          string match on the name's wire form, REJECT --reject-with \
                          tcp-reset); the same name over UDP and other names over TCP pass.",
            target: RESOLVER_IP,
            expected_status: "blocked",
            mechanism: "dns.reset",
            inputs: vec![dns_tcp(DNS_TCP_RESET_NAME)],
            passes: vec![
                dns(DNS_TCP_RESET_NAME, RESOLVER_IP),
                dns_tcp("clean.lab.example"),
            ],
            // A segment to the resolver's TCP 53 carrying the name (wire
            // form) is answered with a reset.
            censor: vec![tcp_string(Some(RESOLVER_IP), "53", Qname(DNS_TCP_RESET_NAME), RESET)],
        },
        // ---- More rows of OONI's QA matrix that the lab can build. ----
        Condition {
            number: 32,
            name: "dns-ghost",
            description:
                "Ghost DNS (OONI QA ghostDNSBlockingWithHTTP/HTTPS): ghost.lab.example and \
                          ghost-https.lab.example exist nowhere (the lab resolver answers NXDOMAIN \
                          to the control), but the censor still answers inside queries with its \
                          block page's address (HTTP: 198.19.6.8) or a censor host that refuses \
                          :443 (198.19.6.10). The control's failure must not make it down.",
            target: RESOLVER_IP,
            expected_status: "blocked",
            mechanism: "dns.hijack",
            inputs: vec![
                web(&format!("http://{GHOST_NAME}/")),
                web(&format!("https://{GHOST_HTTPS_NAME}/")),
            ],
            passes: Vec::new(),
            censor: vec![
                hijack(GHOST_NAME, BLOCKPAGE_IP),
                hijack(GHOST_HTTPS_NAME, LOOKALIKE_BLOCKPAGE_IP),
            ],
        },
        Condition {
            number: 33,
            name: "dns-hijack-untrusted-tls",
            description:
                "OONI QA badSSLWithUnknownAuthorityWithInconsistentDNS: the censor answers \
                          inside queries for tls-hijack.lab.example with its interception server \
                          (198.19.6.9), whose certificate no agent trusts; the control resolves \
                          198.19.3.30 and gets a valid one. The first interference is DNS.",
            target: RESOLVER_IP,
            expected_status: "blocked",
            mechanism: "dns.hijack",
            inputs: vec![web(&format!("https://{TLS_HIJACK_NAME}/"))],
            passes: Vec::new(),
            censor: vec![hijack(TLS_HIJACK_NAME, INTERCEPT_IP)],
        },
        Condition {
            number: 34,
            name: "dns-hijack-transparent-proxy",
            description: "OONI QA dnsHijackingToProxyWithHTTP(S)URL: the censor answers inside \
                          queries for proxied.lab.example with its transparent proxy \
                          (198.19.6.12), which fetches the real page over HTTP (nginx \
                          proxy_pass) and passes HTTPS through to the real site (DNAT), \
                          certificate included. The page is the real one: ok.",
            target: PROXY_IP,
            expected_status: "ok",
            mechanism: "",
            inputs: vec![
                web(&format!("http://{PROXIED_NAME}/")),
                web(&format!("https://{PROXIED_NAME}/")),
            ],
            passes: Vec::new(),
            // The proxy passes TLS through to the real site.
            censor: vec![
                hijack(PROXIED_NAME, PROXY_IP),
                dnat(PROXY_IP, "443", &format!("{CLEAN_IP}:443")),
            ],
        },
        Condition {
            number: 35,
            name: "large-body",
            description:
                "OONI QA largeFileWithHTTP(S): large.lab.example/large.bin is 2 MiB, more \
                          than the agents read (1 MiB): both bodies are truncated, nothing is \
                          filtered.",
            target: CLEAN_IP,
            expected_status: "ok",
            mechanism: "",
            inputs: vec![
                web(&format!("http://{LARGE_NAME}{LARGE_PATH}")),
                web(&format!("https://{LARGE_NAME}{LARGE_PATH}")),
            ],
            passes: Vec::new(),
            censor: Vec::new(),
        },
        Condition {
            number: 36,
            name: "redirect-broken-location",
            description: "Broken for everyone (OONI QA redirectWithBrokenLocationForHTTP(S)): \
                          broken-redirect.lab.example (198.19.3.32) answers 302 with \
                          `Location: http://` (`https://` over TLS), no host.",
            target: BROKEN_IP,
            expected_status: "down",
            mechanism: "",
            inputs: vec![
                web(&format!("http://{BROKEN_REDIRECT_NAME}/")),
                web(&format!("https://{BROKEN_REDIRECT_NAME}/")),
            ],
            passes: Vec::new(),
            censor: Vec::new(),
        },
        Condition {
            number: 37,
            name: "closed-port",
            description: "Broken for everyone (OONI QA websiteDownTCPConnect): nothing listens on \
                          198.19.3.30:444, so the targets host refuses the connection for \
                          inside and control alike.",
            target: CLEAN_IP,
            expected_status: "down",
            mechanism: "",
            inputs: vec![web(&format!("http://clean.lab.example:{CLOSED_PORT}/"))],
            passes: Vec::new(),
            censor: Vec::new(),
        },
        Condition {
            number: 38,
            name: "no-addrs",
            description:
                "Broken for everyone (OONI QA websiteDownNoAddrs): noaddrs.lab.example has \
                          only an AAAA record, so every A query gets NOERROR with no answer.",
            target: RESOLVER_IP,
            expected_status: "down",
            mechanism: "",
            inputs: vec![web(&format!("http://{NO_ADDRS_NAME}/"))],
            passes: Vec::new(),
            censor: Vec::new(),
        },
        Condition {
            number: 39,
            name: "redirect-then-http-reset",
            description: "A redirect, then interference on the next hop (OONI QA \
                          redirectWithConsistentDNSAndThenConnectionResetForHTTP): \
                          https://redirect-to.lab.example/host-reset (198.19.3.32, nothing filtered) \
                          answers 302 to HTTP to blocked-site.example, whose Host header the censor \
                          resets (condition 5). The first hop works; the interference is on the second.",
            target: BROKEN_IP,
            expected_status: "blocked",
            mechanism: "http.reset",
            inputs: vec![web(&format!("https://{REDIRECT_TO_NAME}/host-reset"))],
            passes: Vec::new(),
            censor: Vec::new(),
        },
        Condition {
            number: 40,
            name: "redirect-then-tls-reset",
            description: "A redirect, then interference on the next hop (OONI QA \
                          redirectWithConsistentDNSAndThenConnectionResetForHTTPS): \
                          https://redirect-to.lab.example/sni-reset (198.19.3.32, nothing filtered) \
                          answers 302 to HTTPS to blocked-sni.lab.example, whose SNI the censor resets \
                          (condition 4). The first hop works; the interference is on the second.",
            target: BROKEN_IP,
            expected_status: "blocked",
            mechanism: "tls.reset",
            inputs: vec![web(&format!("https://{REDIRECT_TO_NAME}/sni-reset"))],
            passes: Vec::new(),
            censor: Vec::new(),
        },
        Condition {
            number: 41,
            name: "redirect-then-refused",
            description: "A redirect, then interference on the next hop (OONI QA \
                          redirectWithConsistentDNSAndThenConnectionRefusedForHTTP): \
                          https://redirect-to.lab.example/refused (198.19.3.32, nothing filtered) \
                          answers 302 to HTTP to refused.lab.example, whose SYNs the censor answers with \
                          a reset (condition 7). The first hop works; the interference is on the second.",
            target: BROKEN_IP,
            expected_status: "blocked",
            mechanism: "tcp.refused",
            inputs: vec![web(&format!("https://{REDIRECT_TO_NAME}/refused"))],
            passes: Vec::new(),
            censor: Vec::new(),
        },
        Condition {
            number: 42,
            name: "redirect-then-nxdomain",
            description: "A redirect, then interference on the next hop (OONI QA \
                          redirectWithConsistentDNSAndThenNXDOMAIN): \
                          https://redirect-to.lab.example/nxdomain (198.19.3.32, nothing filtered) \
                          answers 302 to HTTP to censored-nx.lab.example, which the censor answers \
                          NXDOMAIN (condition 3; the hop resolves with the system resolver, the lab \
                          resolver). The first hop works; the interference is on the second.",
            target: BROKEN_IP,
            expected_status: "blocked",
            mechanism: "dns.nxdomain",
            inputs: vec![web(&format!("https://{REDIRECT_TO_NAME}/nxdomain"))],
            passes: Vec::new(),
            censor: Vec::new(),
        },
        Condition {
            number: 43,
            name: "redirect-then-timeout",
            description: "A redirect, then interference on the next hop (OONI QA \
                          redirectWithConsistentDNSAndThenTimeoutForHTTP, with an IP blackhole): \
                          https://redirect-to.lab.example/timeout (198.19.3.32, nothing filtered) \
                          answers 302 to HTTP to blackholed.lab.example, whose address the censor drops \
                          (condition 6). The first hop works; the interference is on the second.",
            target: BROKEN_IP,
            expected_status: "blocked",
            mechanism: "tcp.timeout",
            inputs: vec![web(&format!("https://{REDIRECT_TO_NAME}/timeout"))],
            passes: Vec::new(),
            censor: Vec::new(),
        },
        Condition {
            number: 44,
            name: "http-host-timeout",
            description: "OONI QA redirectWithConsistentDNSAndThenTimeoutForHTTP, direct form: \
                          an HTTP request from inside whose Host header contains `host-drop` \
                          is dropped by the firewall (string match, then a connmark drops the \
                          rest of the flow, retransmissions included); the connect works, the \
                          request never gets an answer. Other Hosts to the same address pass. \
                          The vocabulary has no http.timeout: a timeout at http_round_trip is \
                          tcp.timeout.",
            target: CLEAN_IP,
            expected_status: "blocked",
            mechanism: "tcp.timeout",
            inputs: vec![
                web(&format!("http://{HOST_DROP_NAME}/")),
                http(&format!("http://{HOST_DROP_NAME}/"), CLEAN_IP),
            ],
            passes: vec![http("http://clean.lab.example/", CLEAN_IP)],
            // A segment carrying the Host header marks its flow, and every
            // packet of a marked flow from inside is dropped, the
            // triggering segment and its retransmissions first. Bound to
            // the name, not an address.
            censor: vec![
                tcp_string(None, "80", Icase(&format!("Host: {HOST_DROP_KEYWORD}")), &mark),
                forward(&["-p", "tcp", "-m", "connmark", "--mark", STRING_DROP_MARK]).then(DROP),
            ],
        },
        Condition {
            number: 45,
            name: "tls-sni-timeout",
            description: "OONI QA redirectWithConsistentDNSAndThenTimeoutForHTTPS, direct form: \
                          a TLS ClientHello from inside whose SNI contains `sni-drop` is \
                          dropped by the firewall (string match on :443, then a connmark drops \
                          the rest of the flow); the handshake times out. Other SNIs to the \
                          same address pass.",
            target: CLEAN_IP,
            expected_status: "blocked",
            mechanism: "tls.timeout",
            inputs: vec![
                web(&format!("https://{SNI_DROP_NAME}/")),
                input(Kind::Tls(TlsInput {
                    ip: CLEAN_IP.into(),
                    port: 443,
                    sni: SNI_DROP_NAME.into(),
                    control_sni: "clean.lab.example".into(),
                    ..Default::default()
                })),
            ],
            passes: vec![tls(CLEAN_IP, "clean.lab.example")],
            // As 44, on the SNI.
            censor: vec![
                tcp_string(None, "443", Icase(SNI_DROP_KEYWORD), &mark),
                forward(&["-p", "tcp", "-m", "connmark", "--mark", STRING_DROP_MARK]).then(DROP),
            ],
        },
        Condition {
            number: 46,
            name: "dns-hijack-sni-reset",
            description: "OONI QA tlsBlockingConnectionResetWithInconsistentDNS: the censor \
                          answers inside queries for spoofed-sni.lab.example with its \
                          transparent proxy (198.19.6.12, whose :443 reaches the real site), \
                          and resets ClientHellos whose SNI contains `spoofed-sni`. The control \
                          resolves 198.19.3.30 and gets the page. The first interference is \
                          DNS (OONI's DNS override).",
            target: RESOLVER_IP,
            expected_status: "blocked",
            mechanism: "dns.hijack",
            inputs: vec![web(&format!("https://{SPOOFED_SNI_NAME}/"))],
            passes: Vec::new(),
            // The proxy's :443 is DNATed to the real site (as in 34); the
            // ClientHello naming the site is reset after the DNAT, so not
            // bound to an address (the reset is un-NATed by conntrack).
            censor: vec![
                hijack(SPOOFED_SNI_NAME, PROXY_IP),
                dnat(PROXY_IP, "443", &format!("{CLEAN_IP}:443")),
                tcp_string(None, "443", Icase(SPOOFED_SNI_KEYWORD), RESET),
            ],
        },
        Condition {
            number: 47,
            name: "dns-hijack-refused",
            description: "OONI QA tcpBlockingConnectionRefusedWithInconsistentDNS: the censor \
                          answers inside queries for spoofed-refused.lab.example with a censor \
                          address (198.19.6.13) where nothing listens, so the connect to :80 \
                          is refused. The control resolves 198.19.3.30 and gets the page. The \
                          first interference is DNS (OONI's DNS override).",
            target: RESOLVER_IP,
            expected_status: "blocked",
            mechanism: "dns.hijack",
            inputs: vec![web(&format!("http://{SPOOFED_REFUSED_NAME}/"))],
            passes: Vec::new(),
            censor: vec![hijack(SPOOFED_REFUSED_NAME, REFUSING_IP)],
        },
        Condition {
            number: 48,
            name: "redirect-then-sni-timeout",
            description: "A redirect, then interference on the next hop (OONI QA \
                          redirectWithConsistentDNSAndThenTimeoutForHTTPS): \
                          https://redirect-to.lab.example/sni-timeout (198.19.3.32, nothing \
                          filtered) answers 302 to HTTPS to sni-drop.lab.example, whose \
                          ClientHello the censor drops (condition 45). The first hop works; \
                          the handshake of the second times out.",
            target: BROKEN_IP,
            expected_status: "blocked",
            mechanism: "tls.timeout",
            inputs: vec![web(&format!("https://{REDIRECT_TO_NAME}/sni-timeout"))],
            passes: Vec::new(),
            censor: Vec::new(),
        },
        Condition {
            number: 49,
            name: "captcha",
            description: "OONI QA cloudflareCAPTCHAWithHTTP(S): NOT network censorship but \
                          server-side discrimination. captcha.lab.example's own server \
                          (198.19.3.37, nginx geo on the client address) answers the inside \
                          segment (198.19.1.0/24) with a 403 challenge page (\"Just a \
                          moment...\") and everyone else with the site's page; the firewall \
                          does nothing. Over plain HTTP nobody can tell who served it, so \
                          Vantage calls a page with another title under an error status a \
                          block page (OONI: http-diff); over HTTPS the certificate proves the \
                          page is the site's own: ok (OONI: accessible), the pass.",
            target: CAPTCHA_IP,
            expected_status: "blocked",
            mechanism: "http.blockpage",
            inputs: vec![web(&format!("http://{CAPTCHA_NAME}/"))],
            passes: vec![web(&format!("https://{CAPTCHA_NAME}/"))],
            censor: Vec::new(),
        },
        Condition {
            number: 50,
            name: "app-store-removed",
            description: "An app removed from one storefront of an app store, like the 2017 \
                          removal of VPN apps from Apple's China store: the lab store \
                          (store.lab.example, nginx, iTunes Search lookup format) lists Lab \
                          News in us but not in cn, for everyone; the firewall does nothing. \
                          The app_store probe looks it up in cn against us over HTTPS. Pass: \
                          Lab VPN, listed in both.",
            target: STORE_IP,
            expected_status: "blocked",
            mechanism: "store.removed",
            inputs: vec![store::probe_input(&store::news_app())],
            passes: vec![store::probe_input(&store::vpn_app())],
            censor: Vec::new(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_in_the_lab_range_and_round_trips() {
        let c = catalogue(30);
        assert_eq!(c.iter().map(|c| c.number).max(), Some(50));
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
