//! The Vantage wire protocol (`vantage.v1`) and what both ends share:
//! the signed-envelope rules, the failure vocabulary and the gRPC client that
//! trusts exactly one coordinator CA.
//!
//! This crate owns no policy: it never decides whether a result is stored or a
//! task is run.

pub mod client;
pub mod envelope;
pub mod failure;
pub mod ranges;
pub mod token;

/// Generated prost/tonic code for `package vantage.v1`.
#[allow(unreachable_pub, clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("vantage.v1");
}

/// The encoded `FileDescriptorSet` of `vantage.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/vantage_descriptor.bin"));

/// Version string carried in hellos and measurements.
pub const SOFTWARE_VERSION: &str = concat!("vantage/", env!("CARGO_PKG_VERSION"));

/// Wall-clock time in Unix microseconds.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Lower-case hex SHA-256 of a DER certificate: how CAs are pinned and how
/// the coordinator recognises an agent's client certificate.
pub fn cert_fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}

/// Installs ring as the process-wide rustls crypto provider. Call at the top
/// of every `main` and in test setup; calling it twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl v1::ProbeInput {
    /// The probe kind name used in consent lists, specs and verdicts.
    pub fn kind_name(&self) -> &'static str {
        use v1::probe_input::Kind;
        match &self.kind {
            Some(Kind::Dns(_)) => "dns",
            Some(Kind::DnsInjection(_)) => "dns_injection",
            Some(Kind::Tcp(_)) => "tcp",
            Some(Kind::Tls(_)) => "tls",
            Some(Kind::Http(_)) => "http",
            Some(Kind::Web(_)) => "web",
            Some(Kind::Quic(_)) => "quic",
            Some(Kind::Openvpn(_)) => "openvpn",
            Some(Kind::Tor(_)) => "tor",
            Some(Kind::Encrypted(_)) => "encrypted",
            Some(Kind::Wireguard(_)) => "wireguard",
            None => "none",
        }
    }
}

impl From<v1::probe_input::Kind> for v1::ProbeInput {
    fn from(k: v1::probe_input::Kind) -> Self {
        v1::ProbeInput { kind: Some(k) }
    }
}

impl From<v1::ProbeInput> for Option<v1::probe_input::Kind> {
    fn from(p: v1::ProbeInput) -> Self {
        p.kind
    }
}

/// Every probe kind, in the order of DESIGN.md's table.
pub const PROBE_KINDS: &[&str] = &[
    "dns",
    "dns_injection",
    "tcp",
    "tls",
    "http",
    "web",
    "quic",
    "openvpn",
    "tor",
    "encrypted",
    "wireguard",
];

#[cfg(test)]
mod tests {
    use super::v1::{probe_input::Kind, ProbeInput, TcpInput};

    #[test]
    fn probe_input_json_is_flat() {
        let i = ProbeInput {
            kind: Some(Kind::Tcp(TcpInput {
                host: "192.0.2.1".into(),
                port: 443,
            })),
        };
        let j = serde_json::to_string(&i).unwrap();
        assert_eq!(j, r#"{"tcp":{"host":"192.0.2.1","port":443}}"#);
        let back: ProbeInput = serde_json::from_str(r#"{"tcp":{"host":"h"}}"#).unwrap();
        assert_eq!(back.kind_name(), "tcp");
        assert!(serde_json::from_str::<ProbeInput>(r#"{"tcp":{"hots":"h"}}"#).is_err());
    }
}
