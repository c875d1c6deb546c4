//! One validation of probe inputs, shared by both ends. The coordinator
//! runs it on every target when a campaign is created (and on ad-hoc
//! dispatches); every agent runs it at the top of `probes::run`. So a
//! campaign is refused at creation for exactly what its agents would refuse,
//! and both ends probe the same, normalised input.
//!
//! Normalisation (idempotent: a normalised input normalises to itself):
//! - host names (URL hosts, DNS domains, TCP hosts, TLS/QUIC SNI, HTTP
//!   `Host` headers) become lower-case ASCII, internationalized labels
//!   punycode, by IDNA (UTS 46 non-transitional processing, as browsers do):
//!   `http://Bücher.example/` -> `http://xn--bcher-kva.example/`;
//! - URL schemes are lower-cased and non-ASCII characters of the path,
//!   query and fragment percent-encoded (UTF-8), as a browser sends them;
//! - DNS `qtype` is upper-cased, transports lower-cased;
//! - surrounding blanks are trimmed, everywhere.
//!
//! Rules, per kind (ports are 1..=65535 unless 0 means a default):
//!
//! | kind | rules |
//! |---|---|
//! | `dns`, `dns_injection` | `domain` a valid (IDNA) name; `resolver` empty, an IP, or "ip:port"; `qtype` A or AAAA; `transport` udp, tcp or doh; doh needs an https `doh_url`; `dns_injection` needs a `resolver` and runs over UDP only |
//! | `tcp` | `host` an IP or a valid name; `port` required |
//! | `tls` | `ip` an IP; `port` (0: 443); `sni`, `control_sni` empty or a valid TLS server name; `alpn` entries 1-255 bytes |
//! | `http` | `url` http(s) with a host and no credentials; `ip` empty or an IP; `port` (0: the URL's); `host_header` empty or host[:port]; `sni` as for tls |
//! | `web` | `url` as for http; `resolver` as for dns |
//! | `quic` | `ip`; `port` (0: 443); `sni`; `alpn` as for tls |
//! | `openvpn` | `ip`; `port` (0: 1194); `transport` udp or tcp |
//! | `tor` | `ip`; `port` required |
//! | `encrypted` | `ip`; `port` required; `payload_bytes` 0 (256) or 16..=1400; `retest_count` at most 100 |
//! | `wireguard` | `ip`; `port` (0: 51820); `peer_public_key` 32 bytes |
//! | `app_store` | `app_id` empty or digits (a `u64`); `bundle_id` letters, digits, `.`, `-`, `_`, required when `app_id` is empty; `storefront` two letters (lower-cased); `control_storefront` empty or two letters, not the tested one; `base_url` empty or http(s) without query or fragment (a trailing `/` dropped) |
//!
//! and for every kind a `name` of at most 200 characters without control
//! characters.
//!
//! Not here: which addresses may be probed (private ranges,
//! `allow_private_targets`), which depends on configuration: see
//! [`crate::ranges`].

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

use crate::v1::probe_input::Kind;
use crate::v1::{
    AppStoreInput, DnsInput, EncryptedInput, HttpInput, OpenVpnInput, ProbeInput, QuicInput,
    TcpInput, TlsInput, TorInput, WebInput, WireGuardInput,
};

/// Longest target name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// `encrypted` payload bounds (the first-packet heuristics look at one
/// segment); 0 means the default, 256.
pub const MIN_PAYLOAD_BYTES: u32 = 16;
pub const MAX_PAYLOAD_BYTES: u32 = 1400;
/// Most `encrypted` re-tests.
pub const MAX_RETESTS: u32 = 100;
/// Longest ALPN protocol name (a one-byte length on the wire).
pub const MAX_ALPN_BYTES: usize = 255;
/// Longest `app_store` bundle id (Apple's CFBundleIdentifier is far shorter).
pub const MAX_BUNDLE_ID_BYTES: usize = 255;

/// Why a probe input is refused. `Display` is the message, starting with
/// the field's name; [`InputError::field`] names the field alone.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The input names no probe kind.
    #[error("no probe kind (one of: {})", crate::PROBE_KINDS.join(", "))]
    NoKind,
    /// A required field is empty.
    #[error("{field} must not be empty{hint}")]
    Missing {
        field: &'static str,
        hint: &'static str,
    },
    /// A port outside 1..=65535 (0 where no default applies).
    #[error("{field} {value} is not in 1..=65535")]
    Port { field: &'static str, value: u32 },
    /// Not an IP address where one is required.
    #[error("{field} {value:?} is not an IP address")]
    NotIp { field: &'static str, value: String },
    /// A resolver that is neither an IP nor "ip:port".
    #[error("{field} {value:?} is not \"ip:port\" or an IP address")]
    NotResolver { field: &'static str, value: String },
    /// A URL agents would not fetch.
    #[error("{field} {value:?} {reason}")]
    BadUrl {
        field: &'static str,
        value: String,
        reason: String,
    },
    /// A host name that is not valid (IDNA, DNS lengths, TLS server names).
    #[error("{field} {value:?} is not a valid host name: {reason}")]
    BadHost {
        field: &'static str,
        value: String,
        reason: String,
    },
    /// A value outside a closed list.
    #[error("{field} {value:?} is not one of: {}", allowed.join(", "))]
    NotAllowed {
        field: &'static str,
        value: String,
        allowed: &'static [&'static str],
    },
    /// A WireGuard public key of the wrong size.
    #[error("{field} has {len} bytes, a WireGuard key has 32")]
    KeyLength { field: &'static str, len: usize },
    /// A number outside its range.
    #[error("{field} {value} is not in {min}..={max}")]
    OutOfRange {
        field: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    /// Anything else, said in words.
    #[error("{field} {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl InputError {
    /// The refused field of the probe input (`port`, `url`, `sni`, ...);
    /// `None` when the input has no kind at all.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            InputError::NoKind => None,
            InputError::Missing { field, .. }
            | InputError::Port { field, .. }
            | InputError::NotIp { field, .. }
            | InputError::NotResolver { field, .. }
            | InputError::BadUrl { field, .. }
            | InputError::BadHost { field, .. }
            | InputError::NotAllowed { field, .. }
            | InputError::KeyLength { field, .. }
            | InputError::OutOfRange { field, .. }
            | InputError::Invalid { field, .. } => Some(field),
        }
    }
}

/// Checks `input` and returns it normalised (see the module docs), or the
/// first problem found.
pub fn validate(input: &ProbeInput) -> Result<ProbeInput, InputError> {
    let kind = match &input.kind {
        None => return Err(InputError::NoKind),
        Some(Kind::Dns(d)) => Kind::Dns(dns(d, false)?),
        Some(Kind::DnsInjection(d)) => Kind::DnsInjection(dns(d, true)?),
        Some(Kind::Tcp(t)) => Kind::Tcp(tcp(t)?),
        Some(Kind::Tls(t)) => Kind::Tls(tls(t)?),
        Some(Kind::Http(h)) => Kind::Http(http_input(h)?),
        Some(Kind::Web(w)) => Kind::Web(web(w)?),
        Some(Kind::Quic(q)) => Kind::Quic(quic(q)?),
        Some(Kind::Openvpn(o)) => Kind::Openvpn(openvpn(o)?),
        Some(Kind::Tor(t)) => Kind::Tor(tor(t)?),
        Some(Kind::Encrypted(e)) => Kind::Encrypted(encrypted(e)?),
        Some(Kind::Wireguard(w)) => Kind::Wireguard(wireguard(w)?),
        Some(Kind::AppStore(a)) => Kind::AppStore(app_store(a)?),
    };
    Ok(ProbeInput {
        kind: Some(kind),
        name: name(&input.name)?,
    })
}

/// A target's name: trimmed, at most [`MAX_NAME_CHARS`] characters, no
/// control characters.
pub fn name(s: &str) -> Result<String, InputError> {
    let t = s.trim();
    let n = t.chars().count();
    if n > MAX_NAME_CHARS {
        return Err(InputError::Invalid {
            field: "name",
            reason: format!("has {n} characters, more than the {MAX_NAME_CHARS} allowed"),
        });
    }
    if let Some(c) = t.chars().find(|c| c.is_control()) {
        return Err(InputError::Invalid {
            field: "name",
            reason: format!("contains the control character {c:?}"),
        });
    }
    Ok(t.to_string())
}

// ------------------------------------------------------------------ kinds

fn dns(d: &DnsInput, injection: bool) -> Result<DnsInput, InputError> {
    let domain = dns_name("domain", &d.domain)?;
    let resolver = if d.resolver.trim().is_empty() {
        if injection {
            return Err(InputError::Missing {
                field: "resolver",
                hint: ": dns_injection needs the address of a host that runs no DNS server",
            });
        }
        String::new()
    } else {
        resolver("resolver", &d.resolver)?
    };
    let qtype = choice("qtype", &d.qtype, &["A", "AAAA"])?;
    let transport = choice("transport", &d.transport, &["udp", "tcp", "doh"])?;
    if injection && !matches!(transport.as_str(), "" | "udp") {
        return Err(InputError::Invalid {
            field: "transport",
            reason: format!("{transport:?}: dns_injection queries over UDP only"),
        });
    }
    let doh_url = if transport == "doh" {
        if d.doh_url.trim().is_empty() {
            return Err(InputError::Missing {
                field: "doh_url",
                hint: " with transport = \"doh\"",
            });
        }
        url("doh_url", &d.doh_url, &["https"])?
    } else if d.doh_url.trim().is_empty() {
        String::new()
    } else {
        // Unused without doh, but stored and shown: keep it well-formed.
        url("doh_url", &d.doh_url, &["https"])?
    };
    Ok(DnsInput {
        domain,
        resolver,
        qtype,
        transport,
        doh_url,
        listen_ms: d.listen_ms,
    })
}

fn tcp(t: &TcpInput) -> Result<TcpInput, InputError> {
    if t.host.trim().is_empty() {
        return Err(InputError::Missing {
            field: "host",
            hint: "",
        });
    }
    Ok(TcpInput {
        host: host("host", &t.host)?,
        port: port("port", t.port, false)?,
    })
}

fn tls(t: &TlsInput) -> Result<TlsInput, InputError> {
    Ok(TlsInput {
        ip: ip("ip", &t.ip)?,
        port: port("port", t.port, true)?,
        sni: sni("sni", &t.sni)?,
        control_sni: sni("control_sni", &t.control_sni)?,
        alpn: alpn(&t.alpn)?,
    })
}

fn http_input(h: &HttpInput) -> Result<HttpInput, InputError> {
    Ok(HttpInput {
        url: url("url", &h.url, &["http", "https"])?,
        ip: optional_ip("ip", &h.ip)?,
        port: port("port", h.port, true)?,
        host_header: host_header("host_header", &h.host_header)?,
        sni: sni("sni", &h.sni)?,
        max_redirects: h.max_redirects,
        max_body_bytes: h.max_body_bytes,
    })
}

fn web(w: &WebInput) -> Result<WebInput, InputError> {
    Ok(WebInput {
        url: url("url", &w.url, &["http", "https"])?,
        resolver: if w.resolver.trim().is_empty() {
            String::new()
        } else {
            resolver("resolver", &w.resolver)?
        },
    })
}

fn quic(q: &QuicInput) -> Result<QuicInput, InputError> {
    Ok(QuicInput {
        ip: ip("ip", &q.ip)?,
        port: port("port", q.port, true)?,
        sni: sni("sni", &q.sni)?,
        alpn: alpn(&q.alpn)?,
    })
}

fn openvpn(o: &OpenVpnInput) -> Result<OpenVpnInput, InputError> {
    Ok(OpenVpnInput {
        ip: ip("ip", &o.ip)?,
        port: port("port", o.port, true)?,
        transport: choice("transport", &o.transport, &["udp", "tcp"])?,
    })
}

fn tor(t: &TorInput) -> Result<TorInput, InputError> {
    Ok(TorInput {
        ip: ip("ip", &t.ip)?,
        port: port("port", t.port, false)?,
    })
}

fn encrypted(e: &EncryptedInput) -> Result<EncryptedInput, InputError> {
    if e.payload_bytes != 0 && !(MIN_PAYLOAD_BYTES..=MAX_PAYLOAD_BYTES).contains(&e.payload_bytes) {
        return Err(InputError::OutOfRange {
            field: "payload_bytes",
            value: e.payload_bytes.into(),
            min: MIN_PAYLOAD_BYTES.into(),
            max: MAX_PAYLOAD_BYTES.into(),
        });
    }
    if e.retest_count > MAX_RETESTS {
        return Err(InputError::OutOfRange {
            field: "retest_count",
            value: e.retest_count.into(),
            min: 0,
            max: MAX_RETESTS.into(),
        });
    }
    Ok(EncryptedInput {
        ip: ip("ip", &e.ip)?,
        port: port("port", e.port, false)?,
        ..e.clone()
    })
}

fn wireguard(w: &WireGuardInput) -> Result<WireGuardInput, InputError> {
    if w.peer_public_key.len() != 32 {
        return Err(InputError::KeyLength {
            field: "peer_public_key",
            len: w.peer_public_key.len(),
        });
    }
    Ok(WireGuardInput {
        ip: ip("ip", &w.ip)?,
        port: port("port", w.port, true)?,
        peer_public_key: w.peer_public_key.clone(),
    })
}

fn app_store(a: &AppStoreInput) -> Result<AppStoreInput, InputError> {
    let app_id = a.app_id.trim();
    if !app_id.is_empty()
        && (!app_id.bytes().all(|b| b.is_ascii_digit()) || app_id.parse::<u64>().is_err())
    {
        return Err(InputError::Invalid {
            field: "app_id",
            reason: format!(
                "{app_id:?} is not the store's numeric id (digits, e.g. \"932747118\")"
            ),
        });
    }
    let bundle_id = a.bundle_id.trim();
    if app_id.is_empty() && bundle_id.is_empty() {
        return Err(InputError::Missing {
            field: "bundle_id",
            hint: " when app_id is empty (one of them names the app)",
        });
    }
    if bundle_id.len() > MAX_BUNDLE_ID_BYTES {
        return Err(InputError::Invalid {
            field: "bundle_id",
            reason: format!(
                "has {} bytes, more than {MAX_BUNDLE_ID_BYTES}",
                bundle_id.len()
            ),
        });
    }
    if let Some(c) = bundle_id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(InputError::Invalid {
            field: "bundle_id",
            reason: format!("contains {c:?} (a bundle id has letters, digits, '.', '-' and '_')"),
        });
    }
    let storefront = storefront_code("storefront", &a.storefront)?;
    let control_storefront = if a.control_storefront.trim().is_empty() {
        String::new()
    } else {
        storefront_code("control_storefront", &a.control_storefront)?
    };
    if control_storefront == storefront {
        return Err(InputError::Invalid {
            field: "control_storefront",
            reason: format!(
                "{control_storefront:?} is the storefront tested: compare with another"
            ),
        });
    }
    let base_url = if a.base_url.trim().is_empty() {
        String::new()
    } else {
        let u = url("base_url", &a.base_url, &["http", "https"])?;
        if u.contains(['?', '#']) {
            return Err(InputError::BadUrl {
                field: "base_url",
                value: a.base_url.trim().to_string(),
                reason: "must not carry a query or fragment (the probe appends /lookup?...)".into(),
            });
        }
        u.trim_end_matches('/').to_string()
    };
    Ok(AppStoreInput {
        app_id: app_id.to_string(),
        bundle_id: bundle_id.to_string(),
        storefront,
        control_storefront,
        base_url,
    })
}

// ------------------------------------------------------------------ fields

/// A storefront: an ISO 3166-1 alpha-2 code, two ASCII letters, written in
/// lower case as the lookup API's `country` takes it.
fn storefront_code(field: &'static str, s: &str) -> Result<String, InputError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(InputError::Missing {
            field,
            hint: ": a two-letter country code, e.g. \"cn\"",
        });
    }
    if t.len() != 2 || !t.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(InputError::Invalid {
            field,
            reason: format!("{t:?} is not a two-letter country code (e.g. \"cn\")"),
        });
    }
    Ok(t.to_ascii_lowercase())
}

/// 1..=65535, or 0 where the probe has a default (`zero_is_default`).
fn port(field: &'static str, p: u32, zero_is_default: bool) -> Result<u32, InputError> {
    if (1..=65535).contains(&p) || (p == 0 && zero_is_default) {
        Ok(p)
    } else {
        Err(InputError::Port { field, value: p })
    }
}

/// An IP literal (IPv6 with or without brackets), trimmed.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    let t = s.trim();
    let t = t
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(t);
    t.parse().ok()
}

fn ip(field: &'static str, s: &str) -> Result<String, InputError> {
    if s.trim().is_empty() {
        return Err(InputError::Missing { field, hint: "" });
    }
    match parse_ip(s) {
        Some(_) => Ok(s.trim().to_string()),
        None => Err(InputError::NotIp {
            field,
            value: s.to_string(),
        }),
    }
}

fn optional_ip(field: &'static str, s: &str) -> Result<String, InputError> {
    if s.trim().is_empty() {
        Ok(String::new())
    } else {
        ip(field, s)
    }
}

/// "ip:port", "[v6]:port" or a bare IP (port 53), as agents parse it.
pub fn parse_resolver(s: &str) -> Option<SocketAddr> {
    let t = s.trim();
    t.parse::<SocketAddr>()
        .ok()
        .or_else(|| parse_ip(t).map(|ip| SocketAddr::new(ip, 53)))
}

fn resolver(field: &'static str, s: &str) -> Result<String, InputError> {
    match parse_resolver(s) {
        Some(a) if a.port() == 0 => Err(InputError::Port { field, value: 0 }),
        Some(_) => Ok(s.trim().to_string()),
        None => Err(InputError::NotResolver {
            field,
            value: s.to_string(),
        }),
    }
}

/// One of `allowed`, compared without case and written as listed; empty
/// stays empty (the probe's default).
fn choice(
    field: &'static str,
    s: &str,
    allowed: &'static [&'static str],
) -> Result<String, InputError> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(String::new());
    }
    allowed
        .iter()
        .find(|a| a.eq_ignore_ascii_case(t))
        .map(|a| a.to_string())
        .ok_or_else(|| InputError::NotAllowed {
            field,
            value: s.to_string(),
            allowed,
        })
}

fn alpn(list: &[String]) -> Result<Vec<String>, InputError> {
    for a in list {
        if a.is_empty() || a.len() > MAX_ALPN_BYTES {
            return Err(InputError::Invalid {
                field: "alpn",
                reason: format!(
                    "entry {a:?} has {} bytes (a protocol name has 1..={MAX_ALPN_BYTES})",
                    a.len()
                ),
            });
        }
    }
    Ok(list.to_vec())
}

/// Characters never allowed in a host name (WHATWG's forbidden domain code
/// points besides blanks and controls).
const FORBIDDEN_IN_HOST: &str = "%#/:<>?@[\\]^|";

/// Names what is wrong with a host name IDNA refused.
fn host_problem(t: &str) -> String {
    if let Some(c) = t
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || FORBIDDEN_IN_HOST.contains(*c))
    {
        return format!("{c:?} is not allowed in a host name");
    }
    let body = t.strip_suffix('.').unwrap_or(t);
    if body.is_empty() || body.split('.').any(str::is_empty) {
        return "empty label".into();
    }
    if body.split('.').any(|l| l.len() > 63) {
        return "a label is longer than 63 bytes".into();
    }
    if body.len() > 253 {
        return "longer than 253 bytes".into();
    }
    "not valid under IDNA (UTS 46): a bad xn-- label, a disallowed character, \
     or a label longer than 63 bytes once encoded"
        .into()
}

/// A DNS name to lower-case ASCII (punycode), by UTS 46 with DNS lengths
/// checked (a trailing root dot is allowed), whose labels are what agents'
/// DNS encoder takes: letters, digits, `-` (not first) and `_`
/// (`_dmarc.example`), or a lone `*`.
pub fn to_ascii(field: &'static str, s: &str) -> Result<String, InputError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(InputError::Missing { field, hint: "" });
    }
    let bad = |reason: String| InputError::BadHost {
        field,
        value: t.to_string(),
        reason,
    };
    let ascii = Uts46::new()
        .to_ascii(
            t.as_bytes(),
            AsciiDenyList::URL,
            Hyphens::Allow,
            DnsLength::VerifyAllowRootDot,
        )
        .map(Cow::into_owned)
        .map_err(|_| bad(host_problem(t)))?;
    for label in ascii.strip_suffix('.').unwrap_or(&ascii).split('.') {
        if label == "*" {
            continue;
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(bad(format!(
                "{c:?} is not allowed in a DNS name (letters, digits, '-' and '_')"
            )));
        }
        if label.starts_with('-') {
            return Err(bad(format!("label {label:?} starts with a hyphen")));
        }
    }
    Ok(ascii)
}

fn dns_name(field: &'static str, s: &str) -> Result<String, InputError> {
    to_ascii(field, s)
}

/// A host to connect to or to name: an IP literal (kept as written) or a
/// name (to ASCII). A name whose last label is a number must be a dotted
/// IPv4 address: `0x7f.1` or `1.2.3` would be read as one by some resolvers
/// and URL parsers and as a name by others.
pub fn host(field: &'static str, s: &str) -> Result<String, InputError> {
    let t = s.trim();
    if parse_ip(t).is_some() {
        return Ok(t.to_string());
    }
    let ascii = to_ascii(field, t)?;
    let last = ascii
        .strip_suffix('.')
        .unwrap_or(&ascii)
        .rsplit('.')
        .next()
        .unwrap_or_default();
    let numeric = !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())
        || last
            .strip_prefix("0x")
            .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    if numeric && ascii.parse::<Ipv4Addr>().is_err() {
        return Err(InputError::BadHost {
            field,
            value: t.to_string(),
            reason: "ends in a number but is not an IPv4 address (write a.b.c.d)".into(),
        });
    }
    Ok(ascii)
}

/// A TLS server name (empty: none). Names go to ASCII and must be what
/// rustls sends; an IP literal sends no SNI.
fn sni(field: &'static str, s: &str) -> Result<String, InputError> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(String::new());
    }
    let h = host(field, t)?;
    if parse_ip(&h).is_some() {
        return Ok(h);
    }
    match rustls_pki_types::ServerName::try_from(h.as_str()) {
        Ok(_) => Ok(h),
        Err(_) => Err(InputError::BadHost {
            field,
            value: t.to_string(),
            reason: "not a TLS server name (SNI) rustls can send: does a label end in a hyphen?"
                .into(),
        }),
    }
}

/// "host", "host:port", "[v6]" or "[v6]:port" (empty: the URL's).
fn host_header(field: &'static str, s: &str) -> Result<String, InputError> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(String::new());
    }
    let (h, p) = split_host_port(field, t)?;
    let h = if h.starts_with('[') {
        h.to_string()
    } else {
        host(field, h)?
    };
    Ok(match p {
        Some(p) => format!("{h}:{p}"),
        None => h,
    })
}

/// Splits an authority ("host", "host:port", "[v6]:port") into the host
/// (brackets kept) and a port checked to be 1..=65535; an empty port
/// ("host:") is dropped, as browsers do.
fn split_host_port<'a>(
    field: &'static str,
    authority: &'a str,
) -> Result<(&'a str, Option<u32>), InputError> {
    let bad = |reason: String| InputError::BadUrl {
        field,
        value: authority.to_string(),
        reason,
    };
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| bad("has an unclosed '['".into()))?;
        if v6.parse::<Ipv6Addr>().is_err() {
            return Err(bad(format!("has {v6:?} in brackets, not an IPv6 address")));
        }
        let port = match after {
            "" => None,
            a => Some(
                a.strip_prefix(':')
                    .ok_or_else(|| bad("has text after the IPv6 address".into()))?,
            ),
        };
        (&authority[..v6.len() + 2], port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 10 => {
            let n: u64 = p.parse().unwrap_or(u64::MAX);
            if !(1..=65535).contains(&n) {
                return Err(bad(format!("has port {p}, not in 1..=65535")));
            }
            Some(n as u32)
        }
        Some(p) => return Err(bad(format!("has port {p:?}, not a number in 1..=65535"))),
    };
    Ok((host, port))
}

/// Percent-encodes (UTF-8) every non-ASCII character.
fn encode_non_ascii(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    Cow::Owned(out)
}

/// An absolute URL with one of `schemes`, a host and no credentials,
/// normalised (see the module docs), that agents' HTTP client parses.
pub fn url(field: &'static str, s: &str, schemes: &[&str]) -> Result<String, InputError> {
    let t = s.trim();
    let bad = |reason: String| InputError::BadUrl {
        field,
        value: t.to_string(),
        reason,
    };
    if t.is_empty() {
        return Err(InputError::Missing { field, hint: "" });
    }
    let want = || {
        schemes
            .iter()
            .map(|s| format!("{s}://"))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let (scheme, rest) = t
        .split_once("://")
        .ok_or_else(|| bad(format!("must start with {}", want())))?;
    let scheme = scheme.to_ascii_lowercase();
    if !schemes.contains(&scheme.as_str()) {
        return Err(bad(format!("must start with {}", want())));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return Err(bad(
            "must not carry a user name or password (user@host)".into()
        ));
    }
    let (h, p) = split_host_port(field, authority)?;
    if h.is_empty() {
        return Err(bad("has no host".into()));
    }
    let h = if h.starts_with('[') {
        h.to_string()
    } else {
        host(field, h).map_err(|e| match e {
            InputError::BadHost { reason, .. } => bad(format!("has an invalid host: {reason}")),
            other => other,
        })?
    };
    if let Some(c) = tail.chars().find(|c| c.is_control() || *c == ' ') {
        return Err(bad(format!(
            "contains {c:?}: percent-encode it (a space is %20)"
        )));
    }
    let port = p.map(|p| format!(":{p}")).unwrap_or_default();
    let out = format!("{scheme}://{h}{port}{}", encode_non_ascii(tail));
    // What the agents' HTTP client will make of it.
    match out.parse::<http::Uri>() {
        Ok(u) if u.host().is_some_and(|h| !h.is_empty()) => Ok(out),
        Ok(_) => Err(bad("has no host".into())),
        Err(e) => Err(bad(format!("is not a valid URL: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolver_addresses_parse() {
        let sa = |s: &str| s.parse::<SocketAddr>().ok();
        assert_eq!(parse_resolver("192.0.2.1"), sa("192.0.2.1:53"));
        assert_eq!(parse_resolver("192.0.2.1:5353"), sa("192.0.2.1:5353"));
        assert_eq!(parse_resolver("[::1]:53"), sa("[::1]:53"));
        assert_eq!(parse_resolver("::1"), sa("[::1]:53"));
        assert_eq!(parse_resolver("nope"), None);
    }

    fn input(k: Kind) -> ProbeInput {
        ProbeInput {
            kind: Some(k),
            name: String::new(),
        }
    }

    fn ok(k: Kind) -> Kind {
        match validate(&input(k.clone())) {
            Ok(p) => p.kind.expect("a kind"),
            Err(e) => panic!("{k:?} refused: {e}"),
        }
    }

    /// The normalised input of an accepted `Kind::$variant($input)`.
    macro_rules! accepted {
        ($variant:ident, $input:expr) => {
            match ok(Kind::$variant($input)) {
                Kind::$variant(i) => i,
                other => panic!("{other:?}"),
            }
        };
    }

    /// Asserts `k` is refused for `field` with a message holding `words`.
    fn refused(k: Kind, field: Option<&str>, words: &[&str]) -> InputError {
        let e = validate(&input(k.clone())).expect_err(&format!("{k:?} was accepted"));
        let msg = e.to_string();
        assert_eq!(e.field(), field, "{msg}");
        if let Some(f) = field {
            assert!(msg.starts_with(f), "starts with the field: {msg}");
        }
        for w in words {
            assert!(msg.contains(w), "{msg:?} mentions {w:?}");
        }
        e
    }

    fn web(url: &str) -> Kind {
        Kind::Web(WebInput {
            url: url.into(),
            ..Default::default()
        })
    }

    fn web_url(url: &str) -> String {
        match ok(web(url)) {
            Kind::Web(w) => w.url,
            other => panic!("{other:?}"),
        }
    }

    fn dns_in(domain: &str) -> DnsInput {
        DnsInput {
            domain: domain.into(),
            ..Default::default()
        }
    }

    #[test]
    fn no_kind_is_refused() {
        let e = validate(&ProbeInput::default()).unwrap_err();
        assert_eq!(e, InputError::NoKind);
        assert_eq!(e.field(), None);
        assert!(e.to_string().contains("wireguard"), "{e}");
    }

    #[test]
    fn urls_go_to_punycode() {
        for (given, want) in [
            ("http://bücher.example/", "http://xn--bcher-kva.example/"),
            // Mixed case, in the name and the scheme: UTS 46 maps case.
            (
                "HTTPS://BÜCHER.Example/Path",
                "https://xn--bcher-kva.example/Path",
            ),
            (
                "http://Bücher.example:8080/a?q=1",
                "http://xn--bcher-kva.example:8080/a?q=1",
            ),
            ("https://例子.测试/", "https://xn--fsqu00a.xn--0zwm56d/"),
            // Ideographic full stop, sharp s (non-transitional, as browsers).
            ("https://例子。测试/", "https://xn--fsqu00a.xn--0zwm56d/"),
            ("http://straße.de/", "http://xn--strae-oqa.de/"),
            // Already ASCII: lower-cased, else unchanged.
            ("http://Example.COM", "http://example.com"),
            (
                "http://xn--bcher-kva.example/",
                "http://xn--bcher-kva.example/",
            ),
            ("  http://example.com/  ", "http://example.com/"),
            // Non-ASCII path and query: percent-encoded UTF-8.
            (
                "http://example.com/bücher?q=ü",
                "http://example.com/b%C3%BCcher?q=%C3%BC",
            ),
            ("http://[2001:db8::1]:8443/x", "http://[2001:db8::1]:8443/x"),
            ("http://192.0.2.1/", "http://192.0.2.1/"),
            ("http://example.com:/", "http://example.com/"),
            ("http://_sip.example.com/", "http://_sip.example.com/"),
        ] {
            let got = web_url(given);
            assert_eq!(got, want, "{given}");
            // Idempotent.
            assert_eq!(web_url(&got), got);
        }
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        for (url, words) in [
            ("", &["must not be empty"][..]),
            ("ftp://example.com/", &["http:// or https://"][..]),
            ("example.com/", &["http://"][..]),
            ("http:///path", &["no host"][..]),
            (
                "http://user:pw@example.com/",
                &["user name or password"][..],
            ),
            ("http://example.com:0/", &["port 0"][..]),
            ("http://example.com:99999/", &["99999"][..]),
            ("http://example.com:http/", &["not a number"][..]),
            ("http://exa mple.com/", &["' '"][..]),
            ("http://example.com/a b", &["%20"][..]),
            ("http://a..b/", &["empty label"][..]),
            ("http://xn--zz.example/", &["IDNA"][..]),
            ("http://[::1/", &["unclosed"][..]),
            ("http://[not-v6]/", &["IPv6"][..]),
            ("http://0x7f.1/", &["IPv4"][..]),
            ("http://1.2.3/", &["IPv4"][..]),
            ("http://a\u{200d}.example/", &["IDNA"][..]),
            ("http://exa$mple.com/", &["'$'"][..]),
        ] {
            refused(web(url), Some("url"), words);
        }
    }

    #[test]
    fn dns_inputs() {
        let d = accepted!(
            Dns,
            DnsInput {
                domain: " Bücher.Example. ".into(),
                resolver: "[2001:db8::53]:5353".into(),
                qtype: "aaaa".into(),
                transport: "TCP".into(),
                ..Default::default()
            }
        );
        assert_eq!(d.domain, "xn--bcher-kva.example.");
        assert_eq!((d.qtype.as_str(), d.transport.as_str()), ("AAAA", "tcp"));
        assert_eq!(d.resolver, "[2001:db8::53]:5353");
        ok(Kind::Dns(dns_in("_dmarc.example.com")));
        ok(Kind::Dns(DnsInput {
            resolver: "9.9.9.9".into(),
            ..dns_in("example.com")
        }));
        ok(Kind::Dns(DnsInput {
            transport: "doh".into(),
            doh_url: "https://dns.example/dns-query".into(),
            ..dns_in("example.com")
        }));
        refused(Kind::Dns(dns_in("")), Some("domain"), &["empty"]);
        refused(Kind::Dns(dns_in("a..b")), Some("domain"), &["empty label"]);
        refused(
            Kind::Dns(dns_in(&format!("{}.com", "a".repeat(64)))),
            Some("domain"),
            &["63"],
        );
        refused(
            Kind::Dns(dns_in("exa mple.com")),
            Some("domain"),
            &["not allowed"],
        );
        // What the agents' DNS encoder refuses.
        refused(
            Kind::Dns(dns_in("exa!mple.com")),
            Some("domain"),
            &["'!'", "letters, digits"],
        );
        refused(
            Kind::Dns(dns_in("-lead.example")),
            Some("domain"),
            &["starts with a hyphen"],
        );
        ok(Kind::Dns(dns_in("*.example.com")));
        refused(
            Kind::Dns(DnsInput {
                resolver: "dns.google".into(),
                ..dns_in("example.com")
            }),
            Some("resolver"),
            &["ip:port"],
        );
        refused(
            Kind::Dns(DnsInput {
                resolver: "9.9.9.9:0".into(),
                ..dns_in("example.com")
            }),
            Some("resolver"),
            &["0"],
        );
        refused(
            Kind::Dns(DnsInput {
                qtype: "MX".into(),
                ..dns_in("example.com")
            }),
            Some("qtype"),
            &["MX", "AAAA"],
        );
        refused(
            Kind::Dns(DnsInput {
                transport: "quic".into(),
                ..dns_in("example.com")
            }),
            Some("transport"),
            &["quic", "doh"],
        );
        refused(
            Kind::Dns(DnsInput {
                transport: "doh".into(),
                ..dns_in("example.com")
            }),
            Some("doh_url"),
            &["empty"],
        );
        // Agents speak DoH over https only.
        refused(
            Kind::Dns(DnsInput {
                transport: "doh".into(),
                doh_url: "http://dns.example/dns-query".into(),
                ..dns_in("example.com")
            }),
            Some("doh_url"),
            &["https://"],
        );
        refused(
            Kind::DnsInjection(dns_in("example.com")),
            Some("resolver"),
            &["runs no DNS server"],
        );
        refused(
            Kind::DnsInjection(DnsInput {
                resolver: "192.0.2.9".into(),
                transport: "tcp".into(),
                ..dns_in("example.com")
            }),
            Some("transport"),
            &["UDP only"],
        );
        ok(Kind::DnsInjection(DnsInput {
            resolver: "192.0.2.9".into(),
            ..dns_in("example.com")
        }));
    }

    #[test]
    fn tcp_inputs() {
        let t = |host: &str, port| {
            Kind::Tcp(TcpInput {
                host: host.into(),
                port,
            })
        };
        assert_eq!(
            ok(t("Bücher.example", 443)),
            Kind::Tcp(TcpInput {
                host: "xn--bcher-kva.example".into(),
                port: 443
            })
        );
        ok(t("[2001:db8::1]", 80));
        ok(t("2001:db8::1", 80));
        refused(t("example.com", 0), Some("port"), &["port 0", "65535"]);
        refused(t("example.com", 65536), Some("port"), &["65536"]);
        refused(t(" ", 80), Some("host"), &["empty"]);
        refused(t("exa_mple..com", 80), Some("host"), &["empty label"]);
    }

    #[test]
    fn tls_and_quic_inputs() {
        let tls = |ip: &str, port, sni: &str| {
            Kind::Tls(TlsInput {
                ip: ip.into(),
                port,
                sni: sni.into(),
                ..Default::default()
            })
        };
        match ok(tls("192.0.2.1", 0, "BÜCHER.example")) {
            Kind::Tls(t) => {
                assert_eq!(t.sni, "xn--bcher-kva.example");
                assert_eq!(t.port, 0, "0 means 443: left to the probe");
            }
            other => panic!("{other:?}"),
        }
        ok(tls("192.0.2.1", 443, ""));
        ok(tls("192.0.2.1", 443, "192.0.2.1"));
        refused(tls("example.com", 443, "x"), Some("ip"), &["not an IP"]);
        refused(tls("", 443, "x"), Some("ip"), &["empty"]);
        refused(tls("192.0.2.1", 70000, "x"), Some("port"), &["70000"]);
        refused(tls("192.0.2.1", 443, "a..b"), Some("sni"), &["empty label"]);
        // rustls refuses a label ending in a hyphen as a server name.
        refused(tls("192.0.2.1", 443, "bad-.example"), Some("sni"), &["TLS"]);
        ok(tls("192.0.2.1", 443, "example.com."));
        refused(
            Kind::Tls(TlsInput {
                ip: "192.0.2.1".into(),
                control_sni: "ex ample.com".into(),
                ..Default::default()
            }),
            Some("control_sni"),
            &["not allowed"],
        );
        refused(
            Kind::Tls(TlsInput {
                ip: "192.0.2.1".into(),
                alpn: vec!["h2".into(), String::new()],
                ..Default::default()
            }),
            Some("alpn"),
            &["1..=255"],
        );
        let q = accepted!(
            Quic,
            QuicInput {
                ip: "2001:db8::1".into(),
                sni: "Ünï.example".into(),
                alpn: vec!["h3".into()],
                ..Default::default()
            }
        );
        assert_eq!(q.sni, "xn--n-nga1b.example");
        refused(
            Kind::Quic(QuicInput {
                ip: "quic.example".into(),
                ..Default::default()
            }),
            Some("ip"),
            &["not an IP"],
        );
    }

    #[test]
    fn http_inputs() {
        let h = accepted!(
            Http,
            HttpInput {
                url: "https://Bücher.example/".into(),
                ip: "192.0.2.1".into(),
                host_header: "BÜCHER.example:8443".into(),
                sni: "Bücher.example".into(),
                ..Default::default()
            }
        );
        assert_eq!(h.url, "https://xn--bcher-kva.example/");
        assert_eq!(h.host_header, "xn--bcher-kva.example:8443");
        assert_eq!(h.sni, "xn--bcher-kva.example");
        ok(Kind::Http(HttpInput {
            url: "http://example.com/".into(),
            host_header: "[2001:db8::1]:80".into(),
            ..Default::default()
        }));
        let base = HttpInput {
            url: "http://example.com/".into(),
            ..Default::default()
        };
        refused(
            Kind::Http(HttpInput {
                ip: "example.com".into(),
                ..base.clone()
            }),
            Some("ip"),
            &["not an IP"],
        );
        refused(
            Kind::Http(HttpInput {
                port: 65536,
                ..base.clone()
            }),
            Some("port"),
            &["65536"],
        );
        refused(
            Kind::Http(HttpInput {
                host_header: "example.com:0".into(),
                ..base.clone()
            }),
            Some("host_header"),
            &["port 0"],
        );
        refused(
            Kind::Http(HttpInput {
                host_header: "exa\nmple.com".into(),
                ..base.clone()
            }),
            Some("host_header"),
            &["not allowed"],
        );
        refused(
            Kind::Http(HttpInput {
                url: "gopher://example.com/".into(),
                ..base
            }),
            Some("url"),
            &["http://"],
        );
    }

    #[test]
    fn web_resolver() {
        ok(Kind::Web(WebInput {
            url: "http://example.com/".into(),
            resolver: "192.0.2.53:53".into(),
        }));
        refused(
            Kind::Web(WebInput {
                url: "http://example.com/".into(),
                resolver: "192.0.2.53:99999".into(),
            }),
            Some("resolver"),
            &["ip:port"],
        );
    }

    #[test]
    fn tunnel_inputs() {
        ok(Kind::Openvpn(OpenVpnInput {
            ip: "192.0.2.1".into(),
            port: 0,
            transport: "TCP".into(),
        }));
        refused(
            Kind::Openvpn(OpenVpnInput {
                ip: "192.0.2.1".into(),
                port: 1194,
                transport: "sctp".into(),
            }),
            Some("transport"),
            &["sctp", "udp, tcp"],
        );
        ok(Kind::Tor(TorInput {
            ip: "192.0.2.1".into(),
            port: 9001,
        }));
        refused(
            Kind::Tor(TorInput {
                ip: "192.0.2.1".into(),
                port: 0,
            }),
            Some("port"),
            &["port 0"],
        );
        let enc = EncryptedInput {
            ip: "192.0.2.1".into(),
            port: 443,
            ..Default::default()
        };
        ok(Kind::Encrypted(enc.clone()));
        ok(Kind::Encrypted(EncryptedInput {
            payload_bytes: 1400,
            retest_count: 100,
            ..enc.clone()
        }));
        refused(
            Kind::Encrypted(EncryptedInput {
                payload_bytes: 15,
                ..enc.clone()
            }),
            Some("payload_bytes"),
            &["15", "16..=1400"],
        );
        refused(
            Kind::Encrypted(EncryptedInput {
                payload_bytes: 5000,
                ..enc.clone()
            }),
            Some("payload_bytes"),
            &["5000"],
        );
        refused(
            Kind::Encrypted(EncryptedInput {
                retest_count: 101,
                ..enc.clone()
            }),
            Some("retest_count"),
            &["101"],
        );
        refused(
            Kind::Encrypted(EncryptedInput { port: 0, ..enc }),
            Some("port"),
            &["port 0"],
        );
        let wg = WireGuardInput {
            ip: "192.0.2.1".into(),
            port: 51820,
            peer_public_key: vec![7; 32],
        };
        ok(Kind::Wireguard(wg.clone()));
        refused(
            Kind::Wireguard(WireGuardInput {
                peer_public_key: vec![1, 2],
                ..wg.clone()
            }),
            Some("peer_public_key"),
            &["2 bytes", "32"],
        );
        refused(
            Kind::Wireguard(WireGuardInput {
                ip: "wg.example".into(),
                ..wg
            }),
            Some("ip"),
            &["not an IP"],
        );
    }

    #[test]
    fn names() {
        let mut i = input(web("http://example.com/"));
        i.name = "  BBC News (Persian)  ".into();
        assert_eq!(validate(&i).unwrap().name, "BBC News (Persian)");
        i.name = "ü".repeat(MAX_NAME_CHARS);
        assert!(validate(&i).is_ok(), "200 characters, 400 bytes");
        i.name.push('x');
        let e = validate(&i).unwrap_err();
        assert_eq!(e.field(), Some("name"));
        assert!(e.to_string().contains("201"), "{e}");
        i.name = "tab\there".into();
        let e = validate(&i).unwrap_err();
        assert!(e.to_string().contains("control"), "{e}");
    }

    #[test]
    fn validation_is_idempotent_and_never_panics_on_odd_text() {
        for s in [
            "",
            " ",
            "[",
            "]",
            "[]",
            ":",
            "::",
            "http://",
            "http://[",
            "http://[]:",
            "http://:80",
            "http://a:b:c/",
            "https://\u{0}/",
            "http://%41/",
            "http://é/",
            "http://.",
            "http://-/",
            "http://a/\u{7f}",
            "xn--",
            "\u{feff}",
            "http://\u{3002}/",
        ] {
            for k in [
                web(s),
                Kind::Dns(dns_in(s)),
                Kind::Tcp(TcpInput {
                    host: s.into(),
                    port: 1,
                }),
                Kind::Tls(TlsInput {
                    ip: "192.0.2.1".into(),
                    sni: s.into(),
                    ..Default::default()
                }),
                Kind::Http(HttpInput {
                    url: "http://example.com/".into(),
                    host_header: s.into(),
                    ..Default::default()
                }),
                Kind::AppStore(AppStoreInput {
                    app_id: s.into(),
                    bundle_id: s.into(),
                    storefront: s.into(),
                    control_storefront: s.into(),
                    base_url: s.into(),
                }),
                Kind::AppStore(AppStoreInput {
                    app_id: "1".into(),
                    storefront: "cn".into(),
                    base_url: s.into(),
                    ..Default::default()
                }),
            ] {
                if let Ok(once) = validate(&input(k)) {
                    assert_eq!(validate(&once).as_ref(), Ok(&once), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn app_store_inputs_are_checked_and_normalised() {
        let store = |app_id: &str, bundle_id: &str, sf: &str, ctl: &str, base: &str| {
            Kind::AppStore(AppStoreInput {
                app_id: app_id.into(),
                bundle_id: bundle_id.into(),
                storefront: sf.into(),
                control_storefront: ctl.into(),
                base_url: base.into(),
            })
        };
        let a = accepted!(
            AppStore,
            AppStoreInput {
                app_id: " 932747118 ".into(),
                storefront: "CN".into(),
                control_storefront: " us".into(),
                base_url: "HTTPS://Store.Example/api/".into(),
                ..Default::default()
            }
        );
        assert_eq!(
            (
                a.app_id.as_str(),
                a.storefront.as_str(),
                a.control_storefront.as_str()
            ),
            ("932747118", "cn", "us")
        );
        assert_eq!(a.base_url, "https://store.example/api");
        // By bundle id alone, no control storefront, the default store.
        let b = accepted!(
            AppStore,
            AppStoreInput {
                bundle_id: "com.example.Vpn-app_2".into(),
                storefront: "ru".into(),
                ..Default::default()
            }
        );
        assert_eq!((b.app_id.as_str(), b.base_url.as_str()), ("", ""));

        refused(
            store("", "", "cn", "us", ""),
            Some("bundle_id"),
            &["app_id"],
        );
        refused(
            store("12a", "", "cn", "", ""),
            Some("app_id"),
            &["12a", "digits"],
        );
        refused(store("-1", "", "cn", "", ""), Some("app_id"), &["-1"]);
        refused(
            store("99999999999999999999999", "", "cn", "", ""),
            Some("app_id"),
            &["digits"],
        );
        refused(
            store("", "com.x&country=us", "cn", "", ""),
            Some("bundle_id"),
            &["'&'"],
        );
        refused(
            store("", &"a".repeat(256), "cn", "", ""),
            Some("bundle_id"),
            &["256"],
        );
        refused(
            store("1", "", "", "us", ""),
            Some("storefront"),
            &["two-letter"],
        );
        refused(
            store("1", "", "chn", "us", ""),
            Some("storefront"),
            &["chn"],
        );
        refused(store("1", "", "c1", "us", ""), Some("storefront"), &["c1"]);
        refused(
            store("1", "", "cn", "é", ""),
            Some("control_storefront"),
            &["two-letter"],
        );
        refused(
            store("1", "", "cn", "CN", ""),
            Some("control_storefront"),
            &["tested"],
        );
        refused(
            store("1", "", "cn", "us", "ftp://store.example"),
            Some("base_url"),
            &["http://"],
        );
        refused(
            store("1", "", "cn", "us", "https://store.example/?a=1"),
            Some("base_url"),
            &["query"],
        );
        refused(
            store("1", "", "cn", "us", "https://u:p@store.example"),
            Some("base_url"),
            &["password"],
        );
    }
}
