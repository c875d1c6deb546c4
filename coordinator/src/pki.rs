//! The coordinator's certificate authority: creates the CA, the server
//! certificate (with the addresses it listens on), the admin client
//! certificate, and signs agent client certificates for the agent's own
//! Ed25519 key. Private keys never leave the data directory; an agent's never
//! leaves the agent.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SignatureAlgorithm,
};

/// PKI failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    #[error("{0} already exists: refusing to overwrite an existing CA (use a new --data-dir, or delete it deliberately)")]
    AlreadyInitialised(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("bad subject alternative name {0:?}")]
    BadSan(String),
}

/// File names inside the coordinator data directory.
pub mod files {
    pub const CA_CERT: &str = "ca.pem";
    pub const CA_KEY: &str = "ca.key";
    pub const SERVER_CERT: &str = "server.pem";
    pub const SERVER_KEY: &str = "server.key";
    pub const ADMIN_CERT: &str = "admin.pem";
    pub const ADMIN_KEY: &str = "admin.key";
}

/// Lifetime of agent and server certificates. Revocation is by the store, so
/// a long lifetime is safe; rotation is future work.
const LEAF_DAYS: i64 = 825;

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Vantage coordinator CA");
    dn.push(DnType::OrganizationName, "Vantage");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

fn validity(p: &mut CertificateParams, days: i64) {
    // Backdated an hour for clock skew between agents and the coordinator.
    let start = time_now() - 3600;
    p.not_before = rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(start as u64);
    p.not_after = p.not_before + std::time::Duration::from_secs((days * 86400) as u64);
}

fn time_now() -> i64 {
    vantage_proto::now_us() / 1_000_000
}

/// The CA, loaded from the data directory.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    pub fingerprint: String,
}

/// What `init` produced.
#[derive(Debug)]
pub struct InitReport {
    pub fingerprint: String,
    pub sans: Vec<String>,
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 });
    let mut f = o.open(path).map_err(|source| PkiError::Io {
        path: path.into(),
        source,
    })?;
    f.write_all(contents.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|source| PkiError::Io {
            path: path.into(),
            source,
        })
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.into(),
        source,
    })
}

fn san(s: &str) -> Result<SanType, PkiError> {
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    s.try_into()
        .map(SanType::DnsName)
        .map_err(|_| PkiError::BadSan(s.into()))
}

/// Creates the CA, the server certificate for `sans` and the admin
/// credentials in `dir`. Refuses to touch a directory that already has a CA.
pub fn init(dir: &Path, sans: &[String]) -> Result<InitReport, PkiError> {
    let ca_cert_path = dir.join(files::CA_CERT);
    if ca_cert_path.exists() || dir.join(files::CA_KEY).exists() {
        return Err(PkiError::AlreadyInitialised(ca_cert_path));
    }
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        path: dir.into(),
        source,
    })?;
    let ca_key = KeyPair::generate()?;
    let mut params = ca_params();
    validity(&mut params, 3650);
    let ca_cert = params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params(), ca_key);

    let mut sp = CertificateParams::default();
    sp.distinguished_name
        .push(DnType::CommonName, "Vantage coordinator");
    sp.subject_alt_names = sans.iter().map(|s| san(s)).collect::<Result<_, _>>()?;
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut sp, LEAF_DAYS);
    let server_key = KeyPair::generate()?;
    let server = sp.signed_by(&server_key, &issuer)?;

    let mut ap = CertificateParams::default();
    ap.distinguished_name
        .push(DnType::CommonName, "vantage-admin");
    ap.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut ap, LEAF_DAYS);
    let admin_key = KeyPair::generate()?;
    let admin = ap.signed_by(&admin_key, &issuer)?;

    // Write the keys first and the CA certificate last: a crash halfway
    // leaves no ca.pem, so a rerun is not mistaken for an initialised dir.
    // (file, PEM, secret)
    let pems = [
        (files::CA_KEY, issuer_key_pem(&issuer), true),
        (files::SERVER_KEY, server_key.serialize_pem(), true),
        (files::SERVER_CERT, server.pem(), false),
        (files::ADMIN_KEY, admin_key.serialize_pem(), true),
        (files::ADMIN_CERT, admin.pem(), false),
    ];
    for (name, pem, secret) in pems {
        write(&dir.join(name), &pem, secret)?;
    }
    write(&ca_cert_path, &ca_cert.pem(), false)?;
    Ok(InitReport {
        fingerprint: vantage_proto::cert_fingerprint(ca_cert.der()),
        sans: sans.to_vec(),
    })
}

fn issuer_key_pem(issuer: &Issuer<'static, KeyPair>) -> String {
    issuer.key().serialize_pem()
}

impl Ca {
    /// Loads the CA from the data directory.
    pub fn load(dir: &Path) -> Result<Ca, PkiError> {
        let cert_pem = read(&dir.join(files::CA_CERT))?;
        let key = KeyPair::from_pem(&read(&dir.join(files::CA_KEY))?)?;
        let der = vantage_proto::client::parse_certs(&cert_pem)
            .map_err(|e| PkiError::BadSan(e.to_string()))?;
        Ok(Ca {
            issuer: Issuer::new(ca_params(), key),
            fingerprint: vantage_proto::cert_fingerprint(&der[0]),
            cert_pem,
        })
    }

    /// Signs a client certificate binding `agent_id` to the agent's Ed25519
    /// public key. Returns the PEM and the DER's SHA-256 fingerprint.
    pub fn sign_agent(
        &self,
        agent_id: &str,
        public_key: &[u8; 32],
    ) -> Result<(String, String), PkiError> {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, agent_id);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut p, LEAF_DAYS);
        let cert = p.signed_by(&Ed25519Public(*public_key), &self.issuer)?;
        Ok((cert.pem(), vantage_proto::cert_fingerprint(cert.der())))
    }
}

/// An agent's raw Ed25519 public key, as rcgen wants it.
struct Ed25519Public([u8; 32]);

impl PublicKeyData for Ed25519Public {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

/// Paths of the admin credentials in a data directory.
pub fn admin_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join(files::ADMIN_CERT), dir.join(files::ADMIN_KEY))
}

/// Fingerprint of the admin certificate (how the server recognises it).
pub fn admin_fingerprint(dir: &Path) -> Result<String, PkiError> {
    let pem = read(&dir.join(files::ADMIN_CERT))?;
    let der =
        vantage_proto::client::parse_certs(&pem).map_err(|e| PkiError::BadSan(e.to_string()))?;
    Ok(vantage_proto::cert_fingerprint(&der[0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_twice_refuses_and_keeps_the_ca() {
        let d = tempfile::tempdir().unwrap();
        let r = init(d.path(), &["127.0.0.1".into(), "localhost".into()]).unwrap();
        let before = std::fs::read(d.path().join(files::CA_CERT)).unwrap();
        let e = init(d.path(), &["127.0.0.1".into()]).unwrap_err();
        assert!(matches!(e, PkiError::AlreadyInitialised(_)), "{e}");
        assert_eq!(
            before,
            std::fs::read(d.path().join(files::CA_CERT)).unwrap()
        );
        let ca = Ca::load(d.path()).unwrap();
        assert_eq!(ca.fingerprint, r.fingerprint);
        let (pem, fp) = ca.sign_agent("agent-1", &[7u8; 32]).unwrap();
        assert!(pem.contains("BEGIN CERTIFICATE"));
        assert_eq!(fp.len(), 64);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join(files::CA_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
