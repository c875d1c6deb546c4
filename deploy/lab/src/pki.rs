//! The lab's own CA and the server certificate every TLS target uses
//! (nginx, openvpn, the QUIC server), written as PEM under the state dir.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::plan;
use crate::sys::{self, LabError, Result};

/// Where the PEM files are.
#[derive(Clone, Debug)]
pub struct Pki {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

fn pki_err(e: rcgen::Error) -> LabError {
    LabError::Pki(e.to_string())
}

/// Creates the CA and a server certificate for every lab name and target
/// address under `dir`.
pub fn generate(dir: &Path) -> Result<Pki> {
    sys::mkdir(dir)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(pki_err)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Vantage lab CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(pki_err)?;
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(pki_err)?;

    let mut names: Vec<String> = vec!["*.lab.example".into(), "lab.example".into()];
    names.extend(plan::DNS_RECORDS.iter().map(|(n, _)| n.to_string()));
    names.extend(plan::TARGET_IPS.iter().map(|ip| ip.to_string()));
    names.sort();
    names.dedup();
    let mut params = CertificateParams::new(names).map_err(pki_err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "vantage-lab-server");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let key = KeyPair::generate().map_err(pki_err)?;
    let cert = params.signed_by(&key, &ca).map_err(pki_err)?;

    let pki = Pki {
        ca_cert: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    };
    sys::write(&pki.ca_cert, ca.pem())?;
    // The chain nginx and the QUIC server present: leaf then CA.
    sys::write(&pki.server_cert, format!("{}{}", cert.pem(), ca.pem()))?;
    sys::write(&pki.server_key, key.serialize_pem())?;
    Ok(pki)
}
