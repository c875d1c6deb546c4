//! The agent's identity on disk: its Ed25519 key (generated here, never
//! sent anywhere, mode 0600) and what enrollment returned (agent id, client
//! certificate, coordinator addresses, the pinned CA fingerprint).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

pub const KEY_FILE: &str = "agent.key";
pub const IDENTITY_FILE: &str = "identity.json";

/// Identity errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}: {1}")]
    Format(String, String),
    #[error("this agent is not enrolled yet: run `vantage-agent enroll --token ...` first ({0} is missing)")]
    NotEnrolled(String),
}

/// What enrollment produced.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub agent_id: String,
    pub coordinators: Vec<String>,
    pub ca_sha256: String,
    pub client_cert_pem: String,
    pub ca_cert_pem: String,
    pub country: String,
    pub asn: u32,
    pub tags: Vec<String>,
    pub enrolled_us: i64,
}

fn write_private(path: &Path, bytes: &[u8], mode: u32) -> Result<(), IdentityError> {
    let tmp = path.with_extension("tmp");
    let io = |e| IdentityError::Io(path.display().to_string(), e);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Loads the agent key, creating it (mode 0600) if there is none.
pub fn load_or_create_key(dir: &Path) -> Result<SigningKey, IdentityError> {
    let path = dir.join(KEY_FILE);
    if path.exists() {
        return load_key(dir);
    }
    std::fs::create_dir_all(dir).map_err(|e| IdentityError::Io(dir.display().to_string(), e))?;
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| IdentityError::Format(path.display().to_string(), e.to_string()))?;
    write_private(&path, pem.as_bytes(), 0o600)?;
    Ok(key)
}

pub fn load_key(dir: &Path) -> Result<SigningKey, IdentityError> {
    let (path, pem) = read_enrolled(dir, KEY_FILE)?;
    SigningKey::from_pkcs8_pem(&pem)
        .map_err(|e| IdentityError::Format(path.display().to_string(), e.to_string()))
}

/// Reads `name` in `dir`: a file enrollment writes, so a missing one means
/// the agent is not enrolled.
fn read_enrolled(dir: &Path, name: &str) -> Result<(std::path::PathBuf, String), IdentityError> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((path, text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(IdentityError::NotEnrolled(path.display().to_string()))
        }
        Err(e) => Err(IdentityError::Io(path.display().to_string(), e)),
    }
}

/// PKCS#8 PEM of the key, for the TLS client certificate.
pub fn key_pem(key: &SigningKey) -> String {
    key.to_pkcs8_pem(Default::default())
        .map(|p| p.to_string())
        .unwrap_or_default()
}

impl Identity {
    pub fn load(dir: &Path) -> Result<Identity, IdentityError> {
        let (path, text) = read_enrolled(dir, IDENTITY_FILE)?;
        serde_json::from_str(&text)
            .map_err(|e| IdentityError::Format(path.display().to_string(), e.to_string()))
    }

    pub fn save(&self, dir: &Path) -> Result<(), IdentityError> {
        let json = serde_json::to_vec_pretty(self).unwrap_or_default();
        write_private(&dir.join(IDENTITY_FILE), &json, 0o600)
    }
}
