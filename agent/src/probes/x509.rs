//! Just enough DER to read two things from a leaf certificate: its
//! issuer (as "CN=..., O=...") and the SHA-256 of its SubjectPublicKeyInfo.
//! Interception shows another key than the control sees, and usually
//! another issuer. A full X.509 parser would cost the agent's binary size
//! for two fields; anything unexpected here yields `None`, never a panic.

use sha2::{Digest, Sha256};

/// One DER element: (tag, whole element bytes, contents, what follows).
type Element<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// Reads the first DER element of `input`.
fn element(input: &[u8]) -> Option<Element<'_>> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in input.get(2..2 + n)? {
            len = (len << 8) | *b as usize;
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    let whole = input.get(..end)?;
    let contents = input.get(header..end)?;
    Some((tag, whole, contents, input.get(end..)?))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const VERSION: u8 = 0xa0;

/// The fields of the TBSCertificate up to the SubjectPublicKeyInfo:
/// (issuer element, SPKI element).
fn issuer_and_spki(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (tag, _, cert, _) = element(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, _, tbs, _) = element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    let mut fields = Vec::with_capacity(7);
    while fields.len() < 7 {
        let (tag, whole, _, next) = element(rest)?;
        if !(fields.is_empty() && tag == VERSION) {
            fields.push(whole);
        }
        rest = next;
        if rest.is_empty() {
            break;
        }
    }
    // serial, signature algorithm, issuer, validity, subject, SPKI
    Some((fields.get(2)?, fields.get(5)?))
}

/// Hex SHA-256 of the certificate's SubjectPublicKeyInfo.
pub(crate) fn spki_sha256(der: &[u8]) -> Option<String> {
    let (_, spki) = issuer_and_spki(der)?;
    Some(hex::encode(Sha256::digest(spki)))
}

/// The short name of a common attribute type (id-at arc 2.5.4.x).
fn attribute_name(oid: &[u8]) -> Option<&'static str> {
    match oid {
        [0x55, 0x04, 0x03] => Some("CN"),
        [0x55, 0x04, 0x06] => Some("C"),
        [0x55, 0x04, 0x07] => Some("L"),
        [0x55, 0x04, 0x08] => Some("ST"),
        [0x55, 0x04, 0x0a] => Some("O"),
        [0x55, 0x04, 0x0b] => Some("OU"),
        _ => None,
    }
}

/// The issuer as "CN=..., O=..." (common attributes, certificate order).
pub(crate) fn issuer(der: &[u8]) -> Option<String> {
    let (issuer, _) = issuer_and_spki(der)?;
    let (tag, _, mut rdns, _) = element(issuer)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut parts = Vec::new();
    while !rdns.is_empty() {
        let (tag, _, mut set, next) = element(rdns)?;
        rdns = next;
        if tag != SET {
            return None;
        }
        while !set.is_empty() {
            let (_, _, atv, next) = element(set)?;
            set = next;
            let (tag, _, oid, value) = element(atv)?;
            if tag != OID {
                return None;
            }
            let (_, _, text, _) = element(value)?;
            if let Some(name) = attribute_name(oid) {
                let text: String = String::from_utf8_lossy(text)
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(128)
                    .collect();
                parts.push(format!("{name}={text}"));
            }
        }
    }
    Some(parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(ca_name: &str, key: &rcgen::KeyPair) -> Vec<u8> {
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, ca_name);
        ca.distinguished_name
            .push(rcgen::DnType::OrganizationName, "Lab");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().expect("ca key");
        let issuer = rcgen::CertifiedIssuer::self_signed(ca, ca_key).expect("ca");
        let leaf =
            rcgen::CertificateParams::new(vec!["site.example".to_string()]).expect("leaf params");
        leaf.signed_by(key, &issuer).expect("leaf").der().to_vec()
    }

    #[test]
    fn issuer_and_key_are_read_from_a_real_certificate() {
        let key = rcgen::KeyPair::generate().expect("key");
        let a = cert("Genuine CA", &key);
        assert_eq!(issuer(&a).as_deref(), Some("CN=Genuine CA, O=Lab"));
        let b = cert("Censor CA", &key);
        assert_eq!(issuer(&b).as_deref(), Some("CN=Censor CA, O=Lab"));
        // Same key, different certificates: the same SPKI hash.
        assert_eq!(spki_sha256(&a), spki_sha256(&b));
        let other = cert("Genuine CA", &rcgen::KeyPair::generate().expect("key"));
        assert_ne!(spki_sha256(&a), spki_sha256(&other));
        assert_eq!(spki_sha256(&a).map(|h| h.len()), Some(64));
    }

    #[test]
    fn garbage_is_none_never_a_panic() {
        for bad in [
            &b""[..],
            b"\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x30\x03\x30\x01",
        ] {
            assert_eq!(issuer(bad), None);
            assert_eq!(spki_sha256(bad), None);
        }
        // Every truncation of a real certificate.
        let der = cert("CA", &rcgen::KeyPair::generate().expect("key"));
        for n in 0..der.len() {
            let _ = issuer(&der[..n]);
            let _ = spki_sha256(&der[..n]);
        }
    }
}
