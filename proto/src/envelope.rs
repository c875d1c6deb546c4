//! The signed envelope: `signature = Ed25519(agent_key, DOMAIN || measurement)`
//! over the prost bytes exactly as sent. Verification always uses the bytes as
//! received, never a re-encoding, so a stored envelope can be re-verified by
//! anyone holding the agent's public key.

use std::collections::HashMap;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use prost::Message;

use crate::v1::{Measurement, SignedResult};

mod same_key;

/// Domain separation for measurement signatures.
pub const MEASUREMENT_DOMAIN: &[u8] = b"vantage/measurement/v1\0";
/// Domain separation for the enrollment proof of possession.
pub const ENROLL_DOMAIN: &[u8] = b"vantage/enroll/v1\0";

/// Why an envelope was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvelopeError {
    #[error("signature is not 64 bytes")]
    BadSignatureLength,
    #[error("signature does not verify")]
    BadSignature,
    #[error("measurement does not decode: {0}")]
    Decode(String),
}

fn domain_message(domain: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(domain.len() + body.len());
    m.extend_from_slice(domain);
    m.extend_from_slice(body);
    m
}

/// Encodes and signs a measurement.
pub fn sign(key: &SigningKey, m: &Measurement) -> SignedResult {
    let bytes = m.encode_to_vec();
    let signature = key.sign(&domain_message(MEASUREMENT_DOMAIN, &bytes));
    SignedResult {
        measurement: bytes.into(),
        signature: signature.to_bytes().to_vec().into(),
    }
}

/// Decodes the measurement inside an envelope (without verifying it).
pub fn decode(env: &SignedResult) -> Result<Measurement, EnvelopeError> {
    Measurement::decode(env.measurement.as_ref()).map_err(|e| EnvelopeError::Decode(e.to_string()))
}

fn signature_of(env: &SignedResult) -> Result<Signature, EnvelopeError> {
    let bytes: [u8; 64] = env
        .signature
        .as_ref()
        .try_into()
        .map_err(|_| EnvelopeError::BadSignatureLength)?;
    Ok(Signature::from_bytes(&bytes))
}

/// Verifies one envelope against one key (strict verification).
pub fn verify(key: &VerifyingKey, env: &SignedResult) -> Result<(), EnvelopeError> {
    let sig = signature_of(env)?;
    key.verify_strict(&domain_message(MEASUREMENT_DOMAIN, &env.measurement), &sig)
        .map_err(|_| EnvelopeError::BadSignature)
}

/// Verifies many envelopes with Ed25519 batch verification. Envelopes are
/// grouped by key and each group is checked with one multiscalar
/// multiplication of n + 2 points ([`same_key`]; an ingest batch is a single
/// group). Batch verification is all-or-nothing, so when a group fails every
/// envelope in it is re-checked alone with `verify_strict`: one bad
/// signature never rejects its neighbours.
pub fn verify_batch(items: &[(&VerifyingKey, &SignedResult)]) -> Vec<Result<(), EnvelopeError>> {
    let mut out: Vec<Result<(), EnvelopeError>> = Vec::with_capacity(items.len());
    // Groups by key, in order of first appearance; indexes into `items`.
    let mut groups: Vec<(&VerifyingKey, Vec<usize>)> = Vec::new();
    let mut group_of: HashMap<[u8; 32], usize> = HashMap::new();
    let mut sigs: Vec<Option<Signature>> = Vec::with_capacity(items.len());
    for (i, (k, env)) in items.iter().enumerate() {
        match signature_of(env) {
            Ok(s) => {
                out.push(Ok(()));
                sigs.push(Some(s));
                let g = *group_of.entry(k.to_bytes()).or_insert_with(|| {
                    groups.push((k, Vec::new()));
                    groups.len() - 1
                });
                groups[g].1.push(i);
            }
            Err(e) => {
                out.push(Err(e));
                sigs.push(None);
            }
        }
    }
    let mut rng = rand::thread_rng();
    for (key, idx) in groups {
        let msgs: Vec<&[u8]> = idx
            .iter()
            .map(|&i| items[i].1.measurement.as_ref())
            .collect();
        let group_sigs: Vec<Signature> = idx.iter().filter_map(|&i| sigs[i]).collect();
        if !same_key::verify(key, MEASUREMENT_DOMAIN, &msgs, &group_sigs, &mut rng) {
            for (j, &i) in idx.iter().enumerate() {
                out[i] = key
                    .verify_strict(&domain_message(MEASUREMENT_DOMAIN, msgs[j]), &group_sigs[j])
                    .map_err(|_| EnvelopeError::BadSignature);
            }
        }
    }
    out
}

/// The enrollment proof: the agent signs the token and its own public key.
pub fn enroll_proof(key: &SigningKey, token: &str) -> Vec<u8> {
    let msg = enroll_message(token, key.verifying_key().as_bytes());
    key.sign(&msg).to_bytes().to_vec()
}

/// Checks an enrollment proof.
pub fn verify_enroll_proof(key: &VerifyingKey, token: &str, proof: &[u8]) -> bool {
    let Ok(bytes) = <[u8; 64]>::try_from(proof) else {
        return false;
    };
    key.verify_strict(
        &enroll_message(token, key.as_bytes()),
        &Signature::from_bytes(&bytes),
    )
    .is_ok()
}

fn enroll_message(token: &str, pk: &[u8]) -> Vec<u8> {
    let mut m = domain_message(ENROLL_DOMAIN, token.as_bytes());
    m.extend_from_slice(pk);
    m
}

/// Parses a measurement id (UUID) into its 16 big-endian bytes; UUIDv7 ids
/// sort by time.
pub fn parse_id(id: &str) -> Option<[u8; 16]> {
    uuid::Uuid::parse_str(id).ok().map(|u| *u.as_bytes())
}

/// A fresh time-ordered id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn m(id: &str) -> Measurement {
        Measurement {
            id: id.into(),
            agent_id: "a".into(),
            ..Default::default()
        }
    }

    #[test]
    fn sign_then_verify_and_tamper() {
        let k = key(1);
        let env = sign(&k, &m(&new_id()));
        assert_eq!(verify(&k.verifying_key(), &env), Ok(()));
        let mut bad = env.clone();
        let mut bytes = bad.measurement.to_vec();
        bytes[3] ^= 1;
        bad.measurement = bytes.into();
        assert_eq!(
            verify(&k.verifying_key(), &bad),
            Err(EnvelopeError::BadSignature)
        );
        assert_eq!(
            verify(&key(2).verifying_key(), &env),
            Err(EnvelopeError::BadSignature)
        );
    }

    #[test]
    fn batch_isolates_the_bad_one() {
        let k = key(3);
        let vk = k.verifying_key();
        let mut envs: Vec<SignedResult> = (0..10).map(|_| sign(&k, &m(&new_id()))).collect();
        let mut s = envs[4].signature.to_vec();
        s[0] ^= 0xff;
        envs[4].signature = s.into();
        envs[7].signature = vec![1, 2, 3].into();
        let items: Vec<_> = envs.iter().map(|e| (&vk, e)).collect();
        let out = verify_batch(&items);
        for (i, r) in out.iter().enumerate() {
            match i {
                4 => assert_eq!(r, &Err(EnvelopeError::BadSignature)),
                7 => assert_eq!(r, &Err(EnvelopeError::BadSignatureLength)),
                _ => assert_eq!(r, &Ok(())),
            }
        }
    }

    #[test]
    fn batch_with_several_keys_groups_them() {
        let (k1, k2, k3) = (key(7), key(8), key(9));
        let (v1, v2, v3) = (k1.verifying_key(), k2.verifying_key(), k3.verifying_key());
        let signers = [
            (&k1, &v1),
            (&k2, &v2),
            (&k1, &v1),
            (&k3, &v3),
            (&k2, &v2),
            (&k1, &v1),
        ];
        let envs: Vec<SignedResult> = signers
            .iter()
            .map(|(k, _)| sign(k, &m(&new_id())))
            .collect();
        // Item 4 is signed by k2 but claimed under k3's key.
        let mut items: Vec<(&VerifyingKey, &SignedResult)> = Vec::new();
        for (i, ((_, v), e)) in signers.iter().zip(&envs).enumerate() {
            items.push((if i == 4 { &v3 } else { v }, e));
        }
        let out = verify_batch(&items);
        let want: Vec<_> = (0..6)
            .map(|i| {
                if i == 4 {
                    Err(EnvelopeError::BadSignature)
                } else {
                    Ok(())
                }
            })
            .collect();
        assert_eq!(out, want);
        for ((k, e), r) in items.iter().zip(&out) {
            assert_eq!(&verify(k, e), r);
        }
        assert!(verify_batch(&[]).is_empty());
    }

    #[test]
    fn enroll_proof_binds_token_and_key() {
        let k = key(5);
        let p = enroll_proof(&k, "tok");
        assert!(verify_enroll_proof(&k.verifying_key(), "tok", &p));
        assert!(!verify_enroll_proof(&k.verifying_key(), "other", &p));
        assert!(!verify_enroll_proof(&key(6).verifying_key(), "tok", &p));
    }
}
