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
/// group). Batch verification is all-or-nothing, so a failed group is split
/// to find the bad signatures ([`find_bad`]): one bad signature never
/// rejects its neighbours, and it costs about one more batch check of the
/// group, not a `verify_strict` of every envelope in it (which a hostile
/// agent could use to triple the cost of every batch it sends).
pub fn verify_batch(items: &[(&VerifyingKey, &SignedResult)]) -> Vec<Result<(), EnvelopeError>> {
    verify_batch_counted(items).0
}

/// What [`verify_batch`] spent: batch checks (and the signatures in them)
/// and single `verify_strict` checks. For tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerifyCost {
    pub batches: usize,
    pub batched_signatures: usize,
    pub singles: usize,
}

/// [`verify_batch`], also saying what it cost.
pub fn verify_batch_counted(
    items: &[(&VerifyingKey, &SignedResult)],
) -> (Vec<Result<(), EnvelopeError>>, VerifyCost) {
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
    let mut cost = VerifyCost::default();
    let mut rng = rand::thread_rng();
    for (key, idx) in groups {
        let group = Group {
            key,
            msgs: idx
                .iter()
                .map(|&i| items[i].1.measurement.as_ref())
                .collect(),
            sigs: idx.iter().filter_map(|&i| sigs[i]).collect(),
        };
        let mut bad = Vec::new();
        if !group.batch(0..idx.len(), &mut rng, &mut cost) {
            find_bad(&group, 0..idx.len(), &mut rng, &mut cost, &mut bad);
        }
        for j in bad {
            out[idx[j]] = Err(EnvelopeError::BadSignature);
        }
    }
    (out, cost)
}

/// One key's signatures.
struct Group<'a> {
    key: &'a VerifyingKey,
    msgs: Vec<&'a [u8]>,
    sigs: Vec<Signature>,
}

impl Group<'_> {
    fn batch(
        &self,
        r: std::ops::Range<usize>,
        rng: &mut rand::rngs::ThreadRng,
        cost: &mut VerifyCost,
    ) -> bool {
        cost.batches += 1;
        cost.batched_signatures += r.len();
        same_key::verify(
            self.key,
            MEASUREMENT_DOMAIN,
            &self.msgs[r.clone()],
            &self.sigs[r],
            rng,
        )
    }

    fn single(&self, j: usize, cost: &mut VerifyCost) -> bool {
        cost.singles += 1;
        self.key
            .verify_strict(
                &domain_message(MEASUREMENT_DOMAIN, self.msgs[j]),
                &self.sigs[j],
            )
            .is_ok()
    }
}

/// Below this many signatures a failed range is checked one by one.
const SPLIT_MIN: usize = 4;
/// Once this many bad signatures are found in a group, the rest of it is
/// checked one by one: halving pays when bad signatures are rare, and costs
/// more than single checks when they are many.
const SPLIT_MAX_BAD: usize = 2;

/// Finds the bad signatures of `r`, a range whose batch check failed, by
/// halving: the left half is batch-checked; if it passes, the bad ones are
/// all on the right, which is then split without being checked again. One
/// bad signature in 256 costs about two more batch checks of the group's
/// size in all (a third of what checking each signature alone cost,
/// `examples/verify_cost.rs`). After [`SPLIT_MAX_BAD`] bad ones the rest is
/// checked alone, so a group full of bad signatures costs about what it
/// did before; the coordinator also ends a session that sends too many.
/// Every verdict is exact: the leaves are `verify_strict`.
fn find_bad(
    g: &Group<'_>,
    r: std::ops::Range<usize>,
    rng: &mut rand::rngs::ThreadRng,
    cost: &mut VerifyCost,
    bad: &mut Vec<usize>,
) {
    if r.len() <= SPLIT_MIN || bad.len() >= SPLIT_MAX_BAD {
        bad.extend(r.filter(|&j| !g.single(j, cost)));
        return;
    }
    let mid = r.start + r.len() / 2;
    if g.batch(r.start..mid, rng, cost) {
        find_bad(g, mid..r.end, rng, cost, bad);
    } else {
        find_bad(g, r.start..mid, rng, cost, bad);
        if bad.len() >= SPLIT_MAX_BAD || !g.batch(mid..r.end, rng, cost) {
            find_bad(g, mid..r.end, rng, cost, bad);
        }
    }
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

    /// Bad signatures anywhere in a group are all found, exactly, and one
    /// bad signature in 256 costs a few batch checks (at most twice the
    /// group again in batched signatures, and 4 single checks), where
    /// re-checking the group one by one cost 256 single checks.
    #[test]
    fn bad_signatures_are_found_by_halving_at_a_bounded_cost() {
        let k = key(7);
        let vk = k.verifying_key();
        let envs: Vec<SignedResult> = (0..256).map(|_| sign(&k, &m(&new_id()))).collect();
        let spoil = |mut e: SignedResult| {
            let mut b = e.measurement.to_vec();
            b[2] ^= 1;
            e.measurement = b.into();
            e
        };
        let check = |bad_at: &[usize]| {
            let mut envs = envs.clone();
            for &i in bad_at {
                envs[i] = spoil(envs[i].clone());
            }
            let items: Vec<_> = envs.iter().map(|e| (&vk, e)).collect();
            let (out, cost) = verify_batch_counted(&items);
            for (i, r) in out.iter().enumerate() {
                assert_eq!(r.is_err(), bad_at.contains(&i), "envelope {i}");
            }
            cost
        };
        let clean = check(&[]);
        assert_eq!((clean.batches, clean.singles), (1, 0));
        for at in [0, 100, 255] {
            let one = check(&[at]);
            assert!(one.singles <= SPLIT_MIN, "{one:?}");
            assert!(one.batched_signatures <= 3 * 256, "{one:?}");
        }
        // Many bad ones: never more than one single check per envelope.
        let several = check(&[3, 4, 77, 200, 254]);
        assert!(several.singles <= 256, "{several:?}");
        let all: Vec<usize> = (0..256).collect();
        let all = check(&all);
        assert!(all.singles <= 256, "{all:?}");
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
