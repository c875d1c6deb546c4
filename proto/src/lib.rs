//! The Vantage wire protocol (`vantage.v1`) and what both ends share:
//! the signed-envelope rules, the failure vocabulary and the gRPC client that
//! trusts exactly one coordinator CA.
//!
//! This crate owns no policy: it never decides whether a result is stored or a
//! task is run.

pub mod client;
pub mod codec;
pub mod envelope;
pub mod failure;
pub mod ranges;
pub mod tls;
pub mod token;
pub mod validate;

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

/// Resolves when the process is asked to stop (SIGTERM, or Ctrl-C): the
/// graceful-shutdown signal both daemons wait on.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
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
            Some(Kind::AppStore(_)) => "app_store",
            None => "none",
        }
    }
}

/// The store an `app_store` input asks when it names none (Apple's).
pub const DEFAULT_APP_STORE_URL: &str = "https://itunes.apple.com";

impl v1::AppStoreInput {
    /// The lookup URL for one storefront, in the iTunes Search `lookup`
    /// format: `{base_url}/lookup?id=<app_id>&country=<storefront>`, or
    /// `bundleId=<bundle_id>` when `app_id` is empty. Both ends build it
    /// from a validated input (digits, a bundle id's characters, two
    /// letters), so nothing in it needs escaping.
    pub fn lookup_url(&self, storefront: &str) -> String {
        let base = if self.base_url.is_empty() {
            DEFAULT_APP_STORE_URL
        } else {
            self.base_url.trim_end_matches('/')
        };
        let (key, value) = if self.app_id.is_empty() {
            ("bundleId", &self.bundle_id)
        } else {
            ("id", &self.app_id)
        };
        format!("{base}/lookup?{key}={value}&country={storefront}")
    }
}

impl From<v1::probe_input::Kind> for v1::ProbeInput {
    fn from(k: v1::probe_input::Kind) -> Self {
        v1::ProbeInput {
            kind: Some(k),
            name: String::new(),
        }
    }
}

impl From<v1::ProbeInput> for Option<v1::probe_input::Kind> {
    fn from(p: v1::ProbeInput) -> Self {
        p.kind
    }
}

/// The serde form of `ProbeInput` (build.rs points its derive here): the
/// oneof's one key (`{"tcp": {...}}`) beside an optional `name`, so a
/// campaign spec reads `[[targets]]` / `name = "..."` / `tcp = {...}`. A
/// misspelt field inside the kind is an error that names it, an unknown
/// kind is an error listing the kinds, and two kinds in one target are an
/// error (a flattened `Option` would swallow all three).
pub mod probe_input_serde {
    use std::fmt;

    use serde::de::{self, DeserializeSeed, EnumAccess, MapAccess, VariantAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::v1::{probe_input::Kind, ProbeInput};

    /// `ProbeInput` as it is written in JSON and TOML.
    #[derive(Clone, Debug, Default)]
    pub struct Repr(pub ProbeInput);

    impl From<Repr> for ProbeInput {
        fn from(r: Repr) -> Self {
            r.0
        }
    }

    impl From<ProbeInput> for Repr {
        fn from(p: ProbeInput) -> Self {
            Repr(p)
        }
    }

    #[derive(Serialize)]
    struct Out<'a> {
        #[serde(skip_serializing_if = "str::is_empty")]
        name: &'a str,
        #[serde(flatten)]
        kind: &'a Option<Kind>,
    }

    impl Serialize for Repr {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let p = &self.0;
            if p.kind.is_none() && p.name.is_empty() {
                // As before names existed: an empty input is null.
                return s.serialize_none();
            }
            Out {
                name: &p.name,
                kind: &p.kind,
            }
            .serialize(s)
        }
    }

    impl<'de> Deserialize<'de> for Repr {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(ReprVisitor)
        }
    }

    struct ReprVisitor;

    impl<'de> Visitor<'de> for ReprVisitor {
        type Value = Repr;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(
                f,
                "a probe input: one of {} (e.g. {{\"tcp\": {{...}}}}), with an optional name",
                crate::PROBE_KINDS.join(", ")
            )
        }

        fn visit_unit<E: de::Error>(self) -> Result<Repr, E> {
            Ok(Repr::default())
        }

        fn visit_none<E: de::Error>(self) -> Result<Repr, E> {
            Ok(Repr::default())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Repr, A::Error> {
            let mut out = ProbeInput::default();
            let mut named = false;
            while let Some(key) = map.next_key::<String>()? {
                if key == "name" {
                    if named {
                        return Err(de::Error::duplicate_field("name"));
                    }
                    named = true;
                    out.name = map.next_value()?;
                    continue;
                }
                // Inside the value, so a format that knows positions (TOML)
                // points the error at this kind's line.
                let kind = map.next_value_seed(KindSeed {
                    key,
                    already: out.kind.is_some().then(|| out.kind_name()),
                })?;
                out.kind = Some(kind);
            }
            Ok(Repr(out))
        }
    }

    /// Deserializes the value under `key` as the oneof variant `key`.
    struct KindSeed {
        key: String,
        already: Option<&'static str>,
    }

    impl<'de> DeserializeSeed<'de> for KindSeed {
        type Value = Kind;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
            if let Some(first) = self.already {
                return Err(de::Error::custom(format!(
                    "a target has one probe kind, not two ({first} and {})",
                    self.key
                )));
            }
            Kind::deserialize(de::value::EnumAccessDeserializer::new(Variant {
                key: self.key,
                value: d,
            }))
        }
    }

    /// An externally tagged enum whose tag was already read as a map key.
    struct Variant<D> {
        key: String,
        value: D,
    }

    impl<'de, D: Deserializer<'de>> EnumAccess<'de> for Variant<D> {
        type Error = D::Error;
        type Variant = Value<D>;

        fn variant_seed<V: DeserializeSeed<'de>>(
            self,
            seed: V,
        ) -> Result<(V::Value, Value<D>), D::Error> {
            let tag = seed.deserialize(de::value::StringDeserializer::<D::Error>::new(self.key))?;
            Ok((tag, Value(self.value)))
        }
    }

    struct Value<D>(D);

    impl<'de, D: Deserializer<'de>> VariantAccess<'de> for Value<D> {
        type Error = D::Error;

        fn unit_variant(self) -> Result<(), D::Error> {
            <()>::deserialize(self.0)
        }

        fn newtype_variant_seed<T: DeserializeSeed<'de>>(
            self,
            seed: T,
        ) -> Result<T::Value, D::Error> {
            seed.deserialize(self.0)
        }

        fn tuple_variant<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, D::Error> {
            self.0.deserialize_tuple(len, v)
        }

        fn struct_variant<V: Visitor<'de>>(
            self,
            fields: &'static [&'static str],
            v: V,
        ) -> Result<V::Value, D::Error> {
            self.0.deserialize_struct("", fields, v)
        }
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
    "app_store",
];

#[cfg(test)]
mod tests {
    use super::v1::{probe_input::Kind, ProbeInput, TcpInput};

    /// A tcp input to 192.0.2.1:443 named `name`.
    fn tcp_443(name: &str) -> ProbeInput {
        ProbeInput {
            kind: Some(Kind::Tcp(TcpInput {
                host: "192.0.2.1".into(),
                port: 443,
            })),
            name: name.into(),
        }
    }

    #[test]
    fn probe_input_json_is_flat() {
        let i = tcp_443("");
        let j = serde_json::to_string(&i).unwrap();
        assert_eq!(j, r#"{"tcp":{"host":"192.0.2.1","port":443}}"#);
        let back: ProbeInput = serde_json::from_str(r#"{"tcp":{"host":"h"}}"#).unwrap();
        assert_eq!(back.kind_name(), "tcp");
        assert!(serde_json::from_str::<ProbeInput>(r#"{"tcp":{"hots":"h"}}"#).is_err());
    }

    #[test]
    fn probe_input_carries_a_name_beside_its_kind() {
        let i = tcp_443("Signal relay");
        let j = serde_json::to_string(&i).unwrap();
        assert_eq!(
            j,
            r#"{"name":"Signal relay","tcp":{"host":"192.0.2.1","port":443}}"#
        );
        assert_eq!(serde_json::from_str::<ProbeInput>(&j).unwrap(), i);
        // Either order (TOML specs are tested in the coordinator's spec tests).
        let back: ProbeInput = serde_json::from_str(
            r#"{"tcp":{"host":"192.0.2.1","port":443},"name":"Signal relay"}"#,
        )
        .unwrap();
        assert_eq!(back, i);
        // No name, no kind: null, as before names existed.
        assert_eq!(
            serde_json::to_string(&ProbeInput::default()).unwrap(),
            "null"
        );
        let m: super::v1::Measurement = serde_json::from_str(r#"{"input":null}"#).unwrap();
        assert_eq!(m.input, None);
    }

    #[test]
    fn probe_input_errors_name_the_problem() {
        let e = |j: &str| {
            serde_json::from_str::<ProbeInput>(j)
                .unwrap_err()
                .to_string()
        };
        let two = e(r#"{"tcp":{"host":"h","port":1},"tls":{"ip":"192.0.2.1"}}"#);
        assert!(
            two.contains("one probe kind") && two.contains("tls"),
            "{two}"
        );
        let unknown = e(r#"{"telnet":{}}"#);
        assert!(
            unknown.contains("telnet") && unknown.contains("wireguard"),
            "{unknown}"
        );
        let typo = e(r#"{"name":"x","tcp":{"hots":"h"}}"#);
        assert!(typo.contains("hots"), "{typo}");
        let twice = e(r#"{"name":"x","name":"y","tcp":{}}"#);
        assert!(twice.contains("name"), "{twice}");
        // A name alone parses (kind None): validation refuses it, naming the kinds.
        let only: ProbeInput = serde_json::from_str(r#"{"name":"x"}"#).unwrap();
        assert_eq!((only.kind, only.name.as_str()), (None, "x"));
    }
}
