//! `wireguard` probe: send a genuine WireGuard handshake initiation (message
//! type 1, Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s, with a valid MAC1 keyed by
//! BLAKE2s("mac1----" || peer public key), no cookie so MAC2 is zero) to
//! ip:port over UDP and wait for the handshake response (type 2). A response
//! addressed to our sender index is checked cryptographically (its MAC1 and
//! its empty AEAD payload, completing the Noise handshake); one that fails
//! the check is `unknown_failure: wireguard response failed authentication`.
//!
//! Our static key: a real peer answers only initiators whose static public
//! key it knows, so the probe uses a well-known key derived from the peer's
//! key, `BLAKE2s("vantage wireguard probe static v1" || peer_public_key)`
//! (clamped by X25519). An operator who wants a server to be measurable adds
//! [`probe_public_key`] as a peer with NO AllowedIPs (the private key is
//! public knowledge, so it must never route anything). Against any other
//! server the initiation is still bit-for-bit valid on the wire, which is
//! what a censor classifies, but no response is expected.
//!
//! Failures: no response -> `generic_timeout_error` / `read`; ICMP errors
//! surfaced by the socket -> the `classify_io` mapping / `read`.
//!
//! Target policy: a forbidden `ip` in the input is a refusal (see `target.rs`).

#![allow(clippy::needless_update)]

use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use blake2::digest::consts::U16;
use blake2::digest::{Digest, KeyInit, Mac};
use blake2::{Blake2s256, Blake2sMac};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use vantage_proto::failure::{classify_io, failure, op};
use vantage_proto::v1::{measurement, Failure, WireGuardInput, WireGuardResult};
use x25519_dalek::{PublicKey, StaticSecret};

use super::{measured, net, target, ProbeContext, Probed, Steps};

const CONSTRUCTION: &[u8] = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
const IDENTIFIER: &[u8] = b"WireGuard v1 zx2c4 Jason@zx2c4.com";
const LABEL_MAC1: &[u8] = b"mac1----";
const PROBE_KEY_LABEL: &[u8] = b"vantage wireguard probe static v1";
/// Initiation and response sizes.
const INITIATION_LEN: usize = 148;
const RESPONSE_LEN: usize = 92;

fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Blake2s256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// HMAC-BLAKE2s (RFC 2104 with a 64-byte block).
fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut k = [0u8; 64];
    k[..32].copy_from_slice(key);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let mut inner = Blake2s256::new();
    inner.update(&ipad);
    for p in parts {
        inner.update(p);
    }
    let inner: [u8; 32] = inner.finalize().into();
    hash(&[&opad, &inner])
}

/// Noise KDF with up to three outputs.
fn kdf<const N: usize>(chaining: &[u8; 32], input: &[u8]) -> [[u8; 32]; N] {
    let prk = hmac(chaining, &[input]);
    let mut out = [[0u8; 32]; N];
    let mut prev: Vec<u8> = Vec::new();
    for (i, slot) in out.iter_mut().enumerate() {
        let counter = [i as u8 + 1];
        *slot = hmac(&prk, &[&prev, &counter]);
        prev = slot.to_vec();
    }
    out
}

/// Keyed BLAKE2s-128, as WireGuard's MAC.
fn mac(key: &[u8; 32], data: &[u8]) -> [u8; 16] {
    let mut m = <Blake2sMac<U16> as KeyInit>::new_from_slice(key).expect("32-byte key is valid");
    m.update(data);
    m.finalize().into_bytes().into()
}

fn aead_nonce(counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    n
}

/// The AEAD for a handshake key: ChaCha20-Poly1305 with the counter-0 nonce
/// (each handshake key seals one message).
fn aead(key: &[u8; 32]) -> (ChaCha20Poly1305, Nonce) {
    (
        ChaCha20Poly1305::new(Key::from_slice(key)),
        Nonce::from(aead_nonce(0)),
    )
}

fn seal(key: &[u8; 32], msg: &[u8], aad: &[u8]) -> Vec<u8> {
    let (c, nonce) = aead(key);
    c.encrypt(&nonce, Payload { msg, aad }).unwrap_or_default()
}

fn open(key: &[u8; 32], msg: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    let (c, nonce) = aead(key);
    c.decrypt(&nonce, Payload { msg, aad }).ok()
}

/// TAI64N of now.
fn tai64n() -> [u8; 12] {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut t = [0u8; 12];
    t[..8].copy_from_slice(&(0x4000_0000_0000_000a_u64 + now.as_secs()).to_be_bytes());
    t[8..].copy_from_slice(&now.subsec_nanos().to_be_bytes());
    t
}

/// The probe's well-known static secret for `peer` (see the module docs).
pub fn probe_static_secret(peer: &[u8; 32]) -> StaticSecret {
    StaticSecret::from(hash(&[PROBE_KEY_LABEL, peer]))
}

/// The public key an operator adds as a peer to make a server measurable.
pub fn probe_public_key(peer: &[u8; 32]) -> [u8; 32] {
    PublicKey::from(&probe_static_secret(peer)).to_bytes()
}

/// Initiator state kept to check the response.
pub(crate) struct Initiation {
    pub(crate) packet: Vec<u8>,
    sender_index: u32,
    chaining: [u8; 32],
    hash: [u8; 32],
    ephemeral: StaticSecret,
    static_secret: StaticSecret,
    static_public: [u8; 32],
}

/// Builds a handshake initiation from `static_secret` to `peer`.
pub(crate) fn build_initiation(
    static_secret: StaticSecret,
    peer: &[u8; 32],
    rng: &mut impl RngCore,
) -> Initiation {
    let peer_pub = PublicKey::from(*peer);
    let static_public = PublicKey::from(&static_secret).to_bytes();
    let mut e = [0u8; 32];
    rng.fill_bytes(&mut e);
    let ephemeral = StaticSecret::from(e);
    let e_pub = PublicKey::from(&ephemeral).to_bytes();
    let sender_index = rng.next_u32();

    let c = hash(&[CONSTRUCTION]);
    let h = hash(&[&c, IDENTIFIER]);
    let h = hash(&[&h, peer]);
    let [c] = kdf::<1>(&c, &e_pub);
    let h = hash(&[&h, &e_pub]);
    let [c, k] = kdf::<2>(&c, ephemeral.diffie_hellman(&peer_pub).as_bytes());
    let enc_static = seal(&k, &static_public, &h);
    let h = hash(&[&h, &enc_static]);
    let [c, k] = kdf::<2>(&c, static_secret.diffie_hellman(&peer_pub).as_bytes());
    let enc_time = seal(&k, &tai64n(), &h);
    let h = hash(&[&h, &enc_time]);

    let mut p = Vec::with_capacity(INITIATION_LEN);
    p.extend_from_slice(&[1, 0, 0, 0]);
    p.extend_from_slice(&sender_index.to_le_bytes());
    p.extend_from_slice(&e_pub);
    p.extend_from_slice(&enc_static);
    p.extend_from_slice(&enc_time);
    let mac1 = mac(&hash(&[LABEL_MAC1, peer]), &p);
    p.extend_from_slice(&mac1);
    p.extend_from_slice(&[0u8; 16]); // mac2: no cookie
    Initiation {
        packet: p,
        sender_index,
        chaining: c,
        hash: h,
        ephemeral,
        static_secret,
        static_public,
    }
}

/// What a datagram is, from the initiator's point of view.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Not a response to us (other type, wrong size, other index): ignore.
    Unrelated,
    /// A response to our index that authenticates.
    Valid,
    /// A response to our index that does not authenticate.
    Forged,
}

/// Checks `d` against the initiation (MAC1 and the response's empty AEAD).
pub(crate) fn check_response(init: &Initiation, d: &[u8]) -> Reply {
    if d.len() != RESPONSE_LEN || d[0] != 2 || d[1..4] != [0, 0, 0] {
        return Reply::Unrelated;
    }
    let mut idx = [0u8; 4];
    idx.copy_from_slice(&d[8..12]);
    if u32::from_le_bytes(idx) != init.sender_index {
        return Reply::Unrelated;
    }
    let expected_mac1 = mac(&hash(&[LABEL_MAC1, &init.static_public]), &d[..60]);
    if expected_mac1[..] != d[60..76] {
        return Reply::Forged;
    }
    let mut e_r = [0u8; 32];
    e_r.copy_from_slice(&d[12..44]);
    let e_r_pub = PublicKey::from(e_r);
    let [c] = kdf::<1>(&init.chaining, &e_r);
    let h = hash(&[&init.hash, &e_r]);
    let [c] = kdf::<1>(&c, init.ephemeral.diffie_hellman(&e_r_pub).as_bytes());
    let [c] = kdf::<1>(&c, init.static_secret.diffie_hellman(&e_r_pub).as_bytes());
    let [_c, tau, k] = kdf::<3>(&c, &[0u8; 32]); // psk: none configured
    let h = hash(&[&h, &tau]);
    match open(&k, &d[44..60], &h) {
        Some(plain) if plain.is_empty() => Reply::Valid,
        _ => Reply::Forged,
    }
}

/// Runs the `wireguard` probe.
pub async fn run(input: &WireGuardInput, ctx: &ProbeContext) -> Probed {
    let mut steps = Steps::new();
    let addr = target::ip_port("wireguard", &input.ip, input.port, Some(51820), &ctx.policy)?;
    let Ok(peer) = <[u8; 32]>::try_from(input.peer_public_key.as_slice()) else {
        return Err("malformed_input: wireguard peer_public_key must be 32 bytes".into());
    };
    let mut result = WireGuardResult {
        ip: addr.ip().to_string(),
        port: addr.port().into(),
        ..Default::default()
    };
    let init = build_initiation(probe_static_secret(&peer), &peer, &mut rand::thread_rng());
    match exchange(addr, &init, ctx, &mut steps).await {
        Ok(rtt) => {
            result.response_received = true;
            result.rtt_us = rtt;
        }
        Err(f) => result.failure = Some(f),
    }
    measured(measurement::Result::Wireguard(result), steps)
}

async fn exchange(
    addr: SocketAddr,
    init: &Initiation,
    ctx: &ProbeContext,
    steps: &mut Steps,
) -> Result<i64, Failure> {
    let sock = net::udp_send(addr, &init.packet, steps).await?;
    let sent = Instant::now();
    let mut buf = vec![0u8; 2048];
    let reply = async {
        loop {
            match sock.recv(&mut buf).await {
                Ok(n) => match check_response(init, &buf[..n]) {
                    Reply::Valid => return Ok(()),
                    Reply::Forged => {
                        return Err(failure(
                            "unknown_failure: wireguard response failed authentication",
                            op::READ,
                        ))
                    }
                    Reply::Unrelated => continue,
                },
                Err(e) => return Err(failure(&classify_io(&e), op::READ)),
            }
        }
    };
    net::await_reply(sent, ctx, steps, reply).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initiation_has_the_wire_layout_and_a_valid_mac1() {
        let peer_secret = StaticSecret::from([7u8; 32]);
        let peer = PublicKey::from(&peer_secret).to_bytes();
        let init = build_initiation(probe_static_secret(&peer), &peer, &mut rand::thread_rng());
        let p = &init.packet;
        assert_eq!(p.len(), INITIATION_LEN);
        assert_eq!(&p[..4], &[1, 0, 0, 0]);
        assert_eq!(&p[116..132], &mac(&hash(&[LABEL_MAC1, &peer]), &p[..116]));
        assert_eq!(&p[132..], &[0u8; 16]);
        assert_eq!(check_response(&init, &[2u8; 10]), Reply::Unrelated);
    }

    #[test]
    fn kdf_outputs_chain() {
        let [a, b] = kdf::<2>(&[1u8; 32], b"x");
        let [a1, b1, c1] = kdf::<3>(&[1u8; 32], b"x");
        assert_eq!((a, b), (a1, b1));
        assert_ne!(b1, c1);
    }
}
