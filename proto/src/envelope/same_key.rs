//! Ed25519 batch verification for many signatures under one key.
//!
//! ed25519-dalek's `verify_batch` checks, for random 128-bit `z_i`,
//!
//! ```text
//! [-(Σ z_i s_i)]B + Σ z_i R_i + Σ [z_i k_i] A_i == identity
//! ```
//!
//! with one copy of the key `A_i` per signature: a multiscalar
//! multiplication over `2n + 1` points. When every `A_i` is the same `A`
//! (one ingest batch comes from one agent session) the key's coefficients
//! can be summed first, `[Σ z_i k_i] A`, leaving `n + 2` points. Everything
//! else follows dalek's `batch.rs` (2.2): `k_i = SHA-512(R_i || A || M_i)`
//! reduced mod l, `s_i` must be canonical, `R_i` must decompress, the
//! equation is checked without multiplying by the cofactor, and the sum is
//! computed with `vartime_multiscalar_mul`.
//!
//! Differences from dalek's batch, all of them towards `verify_strict`, which
//! is what the one-by-one fallback uses, so that the batch does not accept
//! what the fallback would refuse:
//!
//! - the `z_i` are fresh randomness (`rand::thread_rng`, a CSPRNG seeded
//!   from the OS), not derived from a transcript of the inputs, so a signer
//!   cannot grind its inputs until the random weights suit it;
//! - `R_i` must be canonically encoded (y < p) and not of small order, and
//!   `A` must be neither of small order nor carry a torsion component, as
//!   `verify_strict` requires (dalek's batch checks none of these: it accepts
//!   `R = identity, s = k·a`, which `verify_strict` refuses; see the tests).
//!
//! What remains (documented, not closed): an `R_i` that is a valid
//! `R` plus a non-zero small-order component makes its term a torsion point.
//! `verify_strict` (cofactorless, exact) refuses it; this batch catches it
//! only when `z_i` does not kill the torsion point, i.e. with probability at
//! least 1/2 per attempt, and then the fallback refuses it. No random linear
//! combination can do better than 1/2 against an order-2 component, and a
//! per-item subgroup check costs about as much as verifying the item alone.
//! Only the holder of the secret key can make such a signature (it is the
//! agent's own key, and the channel is mTLS), and the prime-order part of
//! the equation is still checked to 2^-128, so no forgery passes.
//!
//! A `true` result means every item verifies; `false` means at least one
//! item does not, or the batch could not be checked as a whole: the caller
//! then checks each item alone with `verify_strict`.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signature, VerifyingKey};
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha512};

/// Verifies `signatures[i]` over the message `prefix || messages[i]`, every
/// one under `key`. See the module documentation for what `true` and
/// `false` mean.
pub(crate) fn verify<R: RngCore + CryptoRng>(
    key: &VerifyingKey,
    prefix: &[u8],
    messages: &[&[u8]],
    signatures: &[Signature],
    rng: &mut R,
) -> bool {
    if messages.len() != signatures.len() {
        return false;
    }
    if signatures.is_empty() {
        return true;
    }
    let a = key.to_edwards();
    // verify_strict refuses a small-order key; a key with a torsion
    // component is left to the exact one-by-one path (an honest key never
    // has one). One scalar multiplication per batch.
    if a.is_small_order() || !a.is_torsion_free() {
        return false;
    }
    let n = signatures.len();
    let mut points: Vec<EdwardsPoint> = Vec::with_capacity(n + 2);
    let mut scalars: Vec<Scalar> = Vec::with_capacity(n + 2);
    points.push(ED25519_BASEPOINT_POINT);
    points.push(a);
    scalars.push(Scalar::ZERO); // -(Σ z_i s_i), filled in below
    scalars.push(Scalar::ZERO); // Σ z_i k_i, filled in below
    let mut b_coefficient = Scalar::ZERO;
    let mut a_coefficient = Scalar::ZERO;
    for (sig, msg) in signatures.iter().zip(messages) {
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(*sig.s_bytes())) else {
            return false;
        };
        let r_bytes = sig.r_bytes();
        if !canonical_y(r_bytes) {
            return false;
        }
        let Some(r) = CompressedEdwardsY(*r_bytes).decompress() else {
            return false;
        };
        if r.is_small_order() {
            return false;
        }
        let mut h = Sha512::new();
        h.update(r_bytes);
        h.update(key.as_bytes());
        h.update(prefix);
        h.update(msg);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let z = Scalar::from(random_u128(rng));
        b_coefficient += z * s;
        a_coefficient += z * k;
        points.push(r);
        scalars.push(z);
    }
    scalars[0] = -b_coefficient;
    scalars[1] = a_coefficient;
    EdwardsPoint::vartime_multiscalar_mul(&scalars, &points).is_identity()
}

fn random_u128<R: RngCore>(rng: &mut R) -> u128 {
    let mut buf = [0u8; 16];
    rng.fill_bytes(&mut buf);
    u128::from_le_bytes(buf)
}

/// Whether the y coordinate of a compressed point is below p = 2^255 - 19.
/// `decompress` reduces it mod p, but `verify_strict` compares `R` with a
/// canonical compression, so it refuses y >= p.
fn canonical_y(bytes: &[u8; 32]) -> bool {
    // y >= p exactly when the 255-bit value is one of 2^255-19 .. 2^255-1:
    // bytes 1..=30 all 0xff, byte 31 (sign bit masked) 0x7f, byte 0 >= 0xed.
    !(bytes[31] & 0x7f == 0x7f && bytes[1..31].iter().all(|&b| b == 0xff) && bytes[0] >= 0xed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use ed25519_dalek::{Signer, SigningKey};
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const PREFIX: &[u8] = b"test/prefix\0";

    /// Whether the batch accepts `sig` as the key's one signature of "m".
    fn verifies_alone(vk: &VerifyingKey, sig: &Signature) -> bool {
        verify(vk, PREFIX, &[b"m"], &[*sig], &mut StdRng::seed_from_u64(1))
    }

    fn full(msg: &[u8]) -> Vec<u8> {
        [PREFIX, msg].concat()
    }

    fn strict(vk: &VerifyingKey, msg: &[u8], sig: &Signature) -> bool {
        vk.verify_strict(&full(msg), sig).is_ok()
    }

    /// The batch verdict with the one-by-one fallback, as `verify_batch`
    /// uses it.
    fn with_fallback(
        vk: &VerifyingKey,
        msgs: &[Vec<u8>],
        sigs: &[Signature],
        seed: u64,
    ) -> Vec<bool> {
        let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        let mut rng = StdRng::seed_from_u64(seed);
        if verify(vk, PREFIX, &refs, sigs, &mut rng) {
            vec![true; msgs.len()]
        } else {
            msgs.iter()
                .zip(sigs)
                .map(|(m, s)| strict(vk, m, s))
                .collect()
        }
    }

    /// A signature with a chosen `R = [r]B + extra` and `s = r + k·a`: valid
    /// for the equation `[s]B = R - extra + [k]A`.
    fn sign_with_r(sk: &SigningKey, msg: &[u8], r: Scalar, extra: EdwardsPoint) -> Signature {
        let big_r = (EdwardsPoint::mul_base(&r) + extra).compress();
        let vk = sk.verifying_key();
        let mut h = Sha512::new();
        h.update(big_r.as_bytes());
        h.update(vk.as_bytes());
        h.update(PREFIX);
        h.update(msg);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let s = r + k * sk.to_scalar();
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(big_r.as_bytes());
        bytes[32..].copy_from_slice(s.as_bytes());
        Signature::from_bytes(&bytes)
    }

    /// Encoding of p (y = 0 written non-canonically): decompresses to an
    /// order-4 point.
    fn p_bytes() -> [u8; 32] {
        let mut b = [0xffu8; 32];
        b[0] = 0xed;
        b[31] = 0x7f;
        b
    }

    /// Bytes that are not the y coordinate of any curve point.
    fn not_on_curve() -> [u8; 32] {
        (2u8..)
            .map(|i| {
                let mut b = [0u8; 32];
                b[0] = i;
                b
            })
            .find(|b| CompressedEdwardsY(*b).decompress().is_none())
            .unwrap()
    }

    #[derive(Debug, Clone, Copy)]
    enum Fault {
        Message,
        SignatureBit(u8),
        /// s + l: the same value mod l, not canonical.
        SPlusL,
        /// the top three bits of s set.
        SHighBits,
        ROffCurve,
        /// R written as p (a non-canonical y, an order-4 point).
        RNonCanonical,
        /// R = identity with s = k·a: the batch equation holds exactly,
        /// verify_strict refuses a small-order R.
        RIdentity,
        WrongKey,
    }

    fn fault() -> impl Strategy<Value = Fault> {
        prop_oneof![
            Just(Fault::Message),
            any::<u8>().prop_map(Fault::SignatureBit),
            Just(Fault::SPlusL),
            Just(Fault::SHighBits),
            Just(Fault::ROffCurve),
            Just(Fault::RNonCanonical),
            Just(Fault::RIdentity),
            Just(Fault::WrongKey),
        ]
    }

    fn apply(f: Fault, sk: &SigningKey, msg: &mut Vec<u8>, sig: &mut Signature) {
        let mut b = sig.to_bytes();
        match f {
            Fault::Message => msg.push(b'!'),
            Fault::SignatureBit(i) => {
                let i = usize::from(i) % 512;
                b[i / 8] ^= 1 << (i % 8);
            }
            Fault::SPlusL => {
                // l = 2^252 + 27742317777372353535851937790883648493
                let l: [u8; 32] = [
                    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde,
                    0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
                ];
                let mut carry = 0u16;
                for j in 0..32 {
                    let v = u16::from(b[32 + j]) + u16::from(l[j]) + carry;
                    b[32 + j] = v as u8;
                    carry = v >> 8;
                }
            }
            Fault::SHighBits => b[63] |= 0xe0,
            Fault::ROffCurve => b[..32].copy_from_slice(&not_on_curve()),
            Fault::RNonCanonical => b[..32].copy_from_slice(&p_bytes()),
            Fault::RIdentity => {
                b = sign_with_r(sk, msg, Scalar::ZERO, EdwardsPoint::default()).to_bytes()
            }
            Fault::WrongKey => {
                b = SigningKey::from_bytes(&[0xee; 32])
                    .sign(&full(msg))
                    .to_bytes()
            }
        }
        *sig = Signature::from_bytes(&b);
    }

    fn batch(seed: u8, n: usize) -> (SigningKey, Vec<Vec<u8>>, Vec<Signature>) {
        let sk = SigningKey::from_bytes(&[seed; 32]);
        let msgs: Vec<Vec<u8>> = (0..n)
            .map(|i| format!("measurement {seed} {i} {}", "x".repeat(i * 7)).into_bytes())
            .collect();
        let sigs = msgs.iter().map(|m| sk.sign(&full(m))).collect();
        (sk, msgs, sigs)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Every item's verdict equals verify_strict's, whatever is broken.
        #[test]
        fn agrees_with_verify_strict(
            seed in any::<u8>(),
            n in 0usize..40,
            faults in proptest::collection::vec((any::<prop::sample::Index>(), fault()), 0..4),
            rng_seed in any::<u64>(),
        ) {
            let (sk, mut msgs, mut sigs) = batch(seed, n);
            let vk = sk.verifying_key();
            if n > 0 {
                for (at, f) in &faults {
                    let i = at.index(n);
                    apply(*f, &sk, &mut msgs[i], &mut sigs[i]);
                }
            }
            let got = with_fallback(&vk, &msgs, &sigs, rng_seed);
            let want: Vec<bool> = msgs.iter().zip(&sigs).map(|(m, s)| strict(&vk, m, s)).collect();
            prop_assert_eq!(&got, &want);
            // Every fault above breaks its item (two faults on one item
            // could in principle cancel; verify_strict is the judge).
            let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
            let whole = verify(&vk, PREFIX, &refs, &sigs, &mut StdRng::seed_from_u64(rng_seed));
            prop_assert_eq!(whole, want.iter().all(|&ok| ok));
        }
    }

    #[test]
    fn empty_and_single() {
        let (sk, msgs, sigs) = batch(1, 1);
        let vk = sk.verifying_key();
        let mut rng = StdRng::seed_from_u64(1);
        assert!(verify(&vk, PREFIX, &[], &[], &mut rng));
        assert!(verify(&vk, PREFIX, &[&msgs[0]], &sigs, &mut rng));
        assert!(!verify(&vk, PREFIX, &[b"other"], &sigs, &mut rng));
        assert!(
            !verify(&vk, PREFIX, &[], &sigs, &mut rng),
            "length mismatch"
        );
    }

    #[test]
    fn crafted_signatures_are_valid_when_nothing_is_added() {
        // The helper itself is right: with no extra point it makes a
        // signature verify_strict accepts.
        let (sk, msgs, _) = batch(2, 1);
        let sig = sign_with_r(
            &sk,
            &msgs[0],
            Scalar::from(12345u64),
            EdwardsPoint::default(),
        );
        assert!(strict(&sk.verifying_key(), &msgs[0], &sig));
    }

    #[test]
    fn identity_r_passes_dalek_batch_but_not_ours() {
        // The case that shows why R's order is checked: dalek's
        // verify_batch accepts it, verify_strict does not.
        let (sk, msgs, mut sigs) = batch(3, 4);
        let vk = sk.verifying_key();
        sigs[2] = sign_with_r(&sk, &msgs[2], Scalar::ZERO, EdwardsPoint::default());
        let full_msgs: Vec<Vec<u8>> = msgs.iter().map(|m| full(m)).collect();
        let refs: Vec<&[u8]> = full_msgs.iter().map(Vec::as_slice).collect();
        assert!(ed25519_dalek::verify_batch(&refs, &sigs, &[vk; 4]).is_ok());
        assert!(!strict(&vk, &msgs[2], &sigs[2]));
        assert_eq!(
            with_fallback(&vk, &msgs, &sigs, 7),
            vec![true, true, false, true]
        );
    }

    #[test]
    fn key_with_torsion_goes_one_by_one() {
        // A + T for an order-8 T: not small order, so verify_strict would
        // still judge each signature; the batch declines.
        let sk = SigningKey::from_bytes(&[4; 32]);
        let mixed = sk.verifying_key().to_edwards() + EIGHT_TORSION[1];
        let vk = VerifyingKey::from_bytes(mixed.compress().as_bytes()).unwrap();
        let sig = sk.sign(&full(b"m"));
        assert!(!verifies_alone(&vk, &sig));
    }

    #[test]
    fn small_order_key_is_refused() {
        let vk = VerifyingKey::from_bytes(EIGHT_TORSION[0].compress().as_bytes()).unwrap();
        // R = [s]B with any s satisfies the cofactored equation for a
        // small-order key; it must not pass.
        let s = Scalar::from(99u64);
        let mut b = [0u8; 64];
        b[..32].copy_from_slice(EdwardsPoint::mul_base(&s).compress().as_bytes());
        b[32..].copy_from_slice(s.as_bytes());
        let sig = Signature::from_bytes(&b);
        assert!(!verifies_alone(&vk, &sig));
    }

    #[test]
    fn torsion_in_r_is_caught_often_and_never_wrongly_accepted_by_the_fallback() {
        // R = [r]B + T (T of order 8): verify_strict refuses. The batch
        // equation sees only [z]T, which vanishes when 8 | z (probability
        // 1/8 here): the documented residual. Over 64 fresh draws it must
        // be caught most of the time, and when caught the fallback refuses
        // exactly that item.
        let (sk, msgs, mut sigs) = batch(5, 8);
        let vk = sk.verifying_key();
        sigs[3] = sign_with_r(&sk, &msgs[3], Scalar::from(777u64), EIGHT_TORSION[1]);
        assert!(!strict(&vk, &msgs[3], &sigs[3]));
        let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        let mut rng = rand::thread_rng();
        let caught = (0..64)
            .filter(|_| !verify(&vk, PREFIX, &refs, &sigs, &mut rng))
            .count();
        assert!(caught >= 32, "caught only {caught} of 64");
        let mut want = vec![true; 8];
        want[3] = false;
        let refused = (0..16u64)
            .map(|seed| with_fallback(&vk, &msgs, &sigs, seed))
            .filter(|v| v == &want)
            .count();
        assert!(refused > 0);
    }

    #[test]
    fn canonical_y_bounds() {
        let p = p_bytes();
        assert!(!canonical_y(&p));
        let mut below = p;
        below[0] = 0xec; // p - 1
        assert!(canonical_y(&below));
        let mut top = [0xffu8; 32];
        assert!(!canonical_y(&top)); // 2^255 - 1 with the sign bit set
        top[31] = 0x7f;
        assert!(!canonical_y(&top));
        assert!(canonical_y(&[0u8; 32]));
    }
}
