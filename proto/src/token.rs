//! Enrollment tokens: `vantage1.<base64url(JSON)>` carrying the coordinator
//! address(es), the SHA-256 fingerprint of its CA and a random secret. The
//! coordinator stores only SHA-256(secret).

use base64::Engine;
use serde::{Deserialize, Serialize};

const PREFIX: &str = "vantage1.";

/// A decoded enrollment token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollToken {
    /// Coordinator addresses, "host:port", tried in order.
    pub addrs: Vec<String>,
    /// Lower-case hex SHA-256 of the CA certificate (DER).
    pub ca: String,
    /// Random secret, hex (32 bytes).
    pub secret: String,
}

/// Why a token string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    #[error("not a Vantage enrollment token (it should start with {PREFIX:?})")]
    Prefix,
    #[error("token is not valid base64url")]
    Base64,
    #[error("token content is malformed: {0}")]
    Json(String),
    #[error("token carries no coordinator address")]
    NoAddress,
    #[error("token's CA fingerprint is not 64 hex characters")]
    BadFingerprint,
    #[error("token's secret is not 64 hex characters")]
    BadSecret,
    #[error("token is too long")]
    TooLong,
}

impl EnrollToken {
    /// Encodes the token for printing.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
        )
    }

    /// Parses and checks a token string (untrusted input).
    pub fn decode(s: &str) -> Result<EnrollToken, TokenError> {
        let s = s.trim();
        if s.len() > 4096 {
            return Err(TokenError::TooLong);
        }
        let body = s.strip_prefix(PREFIX).ok_or(TokenError::Prefix)?;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| TokenError::Base64)?;
        let t: EnrollToken =
            serde_json::from_slice(&json).map_err(|e| TokenError::Json(e.to_string()))?;
        if t.addrs.is_empty() || t.addrs.iter().any(|a| a.is_empty()) {
            return Err(TokenError::NoAddress);
        }
        let hex64 = |x: &str| x.len() == 64 && x.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex64(&t.ca) {
            return Err(TokenError::BadFingerprint);
        }
        if !hex64(&t.secret) {
            return Err(TokenError::BadSecret);
        }
        Ok(t)
    }

    /// SHA-256 of the secret: the key under which the coordinator stores it.
    pub fn secret_hash(secret: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(secret.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let t = EnrollToken {
            addrs: vec!["127.0.0.1:7443".into()],
            ca: "ab".repeat(32),
            secret: "cd".repeat(32),
        };
        let s = t.encode();
        assert_eq!(EnrollToken::decode(&s), Ok(t.clone()));
        assert_eq!(EnrollToken::decode("hello"), Err(TokenError::Prefix));
        assert_eq!(EnrollToken::decode("vantage1.!!"), Err(TokenError::Base64));
        let mut bad = t.clone();
        bad.ca = "zz".into();
        assert_eq!(
            EnrollToken::decode(&bad.encode()),
            Err(TokenError::BadFingerprint)
        );
        bad = t;
        bad.addrs.clear();
        assert_eq!(
            EnrollToken::decode(&bad.encode()),
            Err(TokenError::NoAddress)
        );
    }
}
