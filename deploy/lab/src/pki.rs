//! The lab's own CA and the server certificate every TLS target uses
//! (nginx, openvpn, the QUIC server), written as PEM under the state dir;
//! plus the certificates of the conditions that need other ones: the
//! censor's own CA and its interception certificate (condition 16), and the
//! broken-for-everyone certificates (17-19: expired, another name,
//! self-signed). Agents trust the lab CA only.

use std::path::{Path, PathBuf};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::plan;
use crate::sys::{self, LabError, Result};

/// A certificate chain and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Where the PEM files are.
#[derive(Clone, Debug)]
pub struct Pki {
    /// The lab CA: what agents trust (`extra_ca_files`, `--ca-file`).
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// The censor's CA (condition 16): nobody trusts it.
    pub censor_ca_cert: PathBuf,
    /// The interception server's certificate, issued by the censor's CA for
    /// the intercepted name (and `*.lab.example`).
    pub censor: CertFiles,
    /// Lab-CA certificate for `expired.lab.example`, valid 2020-2021 only.
    pub expired: CertFiles,
    /// Lab-CA certificate for `another-site.example` only, presented for
    /// `wrong-host.lab.example`.
    pub wrong_host: CertFiles,
    /// Self-signed certificate for `untrusted.lab.example`.
    pub untrusted: CertFiles,
}

fn pki_err(e: rcgen::Error) -> LabError {
    LabError::Pki(e.to_string())
}

fn new_ca(cn: &str) -> Result<CertifiedIssuer<'static, KeyPair>> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(pki_err)?;
    ca_params.distinguished_name.push(DnType::CommonName, cn);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(pki_err)?;
    CertifiedIssuer::self_signed(ca_params, ca_key).map_err(pki_err)
}

fn leaf_params(names: Vec<String>, cn: &str) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(names).map_err(pki_err)?;
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    Ok(params)
}

/// Signs `params` with `issuer` and writes leaf + issuer chain and key.
fn write_leaf(
    dir: &Path,
    stem: &str,
    params: CertificateParams,
    issuer: Option<&CertifiedIssuer<'static, KeyPair>>,
) -> Result<CertFiles> {
    let key = KeyPair::generate().map_err(pki_err)?;
    let pem = match issuer {
        Some(ca) => {
            let cert = params.signed_by(&key, ca).map_err(pki_err)?;
            format!("{}{}", cert.pem(), ca.pem())
        }
        None => params.self_signed(&key).map_err(pki_err)?.pem(),
    };
    let files = CertFiles {
        cert: dir.join(format!("{stem}.pem")),
        key: dir.join(format!("{stem}.key")),
    };
    sys::write(&files.cert, pem)?;
    sys::write(&files.key, key.serialize_pem())?;
    Ok(files)
}

/// Creates the CAs, a server certificate for every lab name and target
/// address, and the conditions' own certificates under `dir`.
pub fn generate(dir: &Path) -> Result<Pki> {
    sys::mkdir(dir)?;
    let ca = new_ca("Vantage lab CA")?;

    let mut names: Vec<String> = vec!["*.lab.example".into(), "lab.example".into()];
    names.extend(plan::DNS_RECORDS.iter().map(|(n, _)| n.to_string()));
    names.extend(plan::TARGET_IPS.iter().map(|ip| ip.to_string()));
    names.sort();
    names.dedup();
    let params = leaf_params(names, "vantage-lab-server")?;
    let key = KeyPair::generate().map_err(pki_err)?;
    let cert = params.signed_by(&key, &ca).map_err(pki_err)?;

    // Condition 16: the censor's CA and the certificate its interception
    // server presents for the intercepted name.
    let censor_ca = new_ca("Vantage lab censor CA")?;
    let censor = write_leaf(
        dir,
        "censor",
        leaf_params(
            vec![plan::MITM_NAME.into(), "*.lab.example".into()],
            plan::MITM_NAME,
        )?,
        Some(&censor_ca),
    )?;

    // 17: expired (issued by the lab CA, so only the dates are wrong).
    let mut expired = leaf_params(vec![plan::EXPIRED_NAME.into()], plan::EXPIRED_NAME)?;
    expired.not_before = date_time_ymd(2020, 1, 1);
    expired.not_after = date_time_ymd(2021, 1, 1);
    let expired = write_leaf(dir, "expired", expired, Some(&ca))?;
    // 18: valid and trusted, for another name.
    let wrong_host = write_leaf(
        dir,
        "wrong-host",
        leaf_params(
            vec![plan::WRONG_HOST_CERT_NAME.into()],
            plan::WRONG_HOST_CERT_NAME,
        )?,
        Some(&ca),
    )?;
    // 19: self-signed.
    let untrusted = write_leaf(
        dir,
        "untrusted",
        leaf_params(vec![plan::UNTRUSTED_NAME.into()], plan::UNTRUSTED_NAME)?,
        None,
    )?;

    let pki = Pki {
        ca_cert: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        censor_ca_cert: dir.join("censor-ca.pem"),
        censor,
        expired,
        wrong_host,
        untrusted,
    };
    sys::write(&pki.ca_cert, ca.pem())?;
    sys::write(&pki.censor_ca_cert, censor_ca.pem())?;
    // The chain nginx and the QUIC server present: leaf then CA.
    sys::write(&pki.server_cert, format!("{}{}", cert.pem(), ca.pem()))?;
    sys::write(&pki.server_key, key.serialize_pem())?;
    Ok(pki)
}

/// Where `generate` puts the lab CA for a lab whose state dir is `state_dir`
/// (what agents are told to trust).
pub fn ca_path(state_dir: &Path) -> PathBuf {
    state_dir.join("pki").join("ca.pem")
}
