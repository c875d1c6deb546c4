//! The lab's WireGuard peer: boringtun's Noise implementation (an
//! independent, deployed WireGuard stack; ring 0.17) answering handshake
//! initiations on UDP, configured with one peer, the key the agent's
//! `wireguard` probe uses for this server, exactly as an operator adds it
//! (see `agent/src/probes/wireguard.rs`: the probe's static key is
//! `BLAKE2s("vantage wireguard probe static v1" || server public key)`,
//! public knowledge, so the peer has no AllowedIPs and routes nothing; this
//! one has no tunnel device at all). Initiations from any other key, or
//! anything that is not WireGuard, get no answer, like a real server.
//!
//! Kernel WireGuard would be the first choice (`ip link add type
//! wireguard`), but kernels built without it exist (this lab's CI host is
//! one), and one kernel peer keeps one handshake state: it drops a second
//! initiation from the same peer key within 20 ms (INITIATIONS_PER_SECOND)
//! or with an older timestamp. The lab's inside and control agents probe
//! at the same moment with the same well-known key, so this peer keeps one
//! responder state per client address instead.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};

use blake2::{Blake2s256, Digest};
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};

/// Label of the probe's key derivation (agent/src/probes/wireguard.rs).
const PROBE_KEY_LABEL: &[u8] = b"vantage wireguard probe static v1";

/// Responder states kept at once; the table is cleared past this (each
/// probe uses a fresh client port, so old states are never needed again).
const MAX_CLIENTS: usize = 4096;

/// The public key of a static secret.
pub fn public_key(secret: &[u8; 32]) -> [u8; 32] {
    PublicKey::from(&StaticSecret::from(*secret)).to_bytes()
}

/// The public key the agent's `wireguard` probe initiates with toward a
/// server whose public key is `server_public`: the peer an operator adds.
pub fn probe_public_key(server_public: &[u8; 32]) -> [u8; 32] {
    let mut h = Blake2s256::new();
    h.update(PROBE_KEY_LABEL);
    h.update(server_public);
    let secret: [u8; 32] = h.finalize().into();
    public_key(&secret)
}

/// Answers WireGuard handshake initiations on `addr` until killed, as the
/// server with `secret` whose only peer is `allowed_peer`.
pub fn serve(addr: SocketAddr, secret: [u8; 32], allowed_peer: [u8; 32]) -> io::Result<()> {
    serve_on(UdpSocket::bind(addr)?, secret, allowed_peer)
}

/// [`serve`] on a bound socket.
pub fn serve_on(sock: UdpSocket, secret: [u8; 32], allowed_peer: [u8; 32]) -> io::Result<()> {
    let addr = sock.local_addr()?;
    eprintln!(
        "wireguard peer listening on {addr} (public key {})",
        hex(&public_key(&secret))
    );
    let mut clients: HashMap<SocketAddr, Tunn> = HashMap::new();
    let mut next_index: u32 = 1;
    let mut buf = [0u8; 2048];
    let mut out = [0u8; 2048];
    loop {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("recv: {e}");
                continue;
            }
        };
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&from) {
            clients.clear();
        }
        let tunn = clients.entry(from).or_insert_with(|| {
            next_index = next_index.wrapping_add(1);
            Tunn::new(
                StaticSecret::from(secret),
                PublicKey::from(allowed_peer),
                None,
                None,
                next_index,
                None,
            )
        });
        match tunn.decapsulate(Some(from.ip()), &buf[..n], &mut out) {
            TunnResult::WriteToNetwork(r) => {
                eprintln!("answered a {n}-byte datagram from {from}");
                if let Err(e) = sock.send_to(r, from) {
                    eprintln!("send to {from}: {e}");
                }
            }
            TunnResult::Err(e) => eprintln!("ignored a {n}-byte datagram from {from}: {e:?}"),
            _ => eprintln!("no answer to a {n}-byte datagram from {from}"),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_x25519_and_the_probe_key_is_derived_from_the_server_key() {
        // RFC 7748 section 6.1: Alice's private and public keys.
        let alice: [u8; 32] = [
            0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2,
            0x66, 0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5,
            0x1d, 0xb9, 0x2c, 0x2a,
        ];
        assert_eq!(
            hex(&public_key(&alice)),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        let a = probe_public_key(&public_key(&alice));
        assert_ne!(a, probe_public_key(&public_key(&[0x42; 32])));
        assert_eq!(a, probe_public_key(&public_key(&alice)));
    }

    /// A WireGuard initiator (boringtun) with the probe's key for `server`.
    fn initiation(server: &[u8; 32], as_probe: bool) -> Vec<u8> {
        let mut h = Blake2s256::new();
        h.update(if as_probe {
            PROBE_KEY_LABEL
        } else {
            b"someone else"
        });
        h.update(server);
        let secret: [u8; 32] = h.finalize().into();
        let mut t = Tunn::new(
            StaticSecret::from(secret),
            PublicKey::from(*server),
            None,
            None,
            1,
            None,
        );
        let mut out = [0u8; 256];
        match t.format_handshake_initiation(&mut out, false) {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            _ => panic!("no initiation"),
        }
    }

    #[test]
    fn answers_the_probe_key_from_several_clients_at_once_and_nobody_else() {
        let secret = [0x57; 32];
        let server = public_key(&secret);
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = sock.local_addr().expect("addr");
        std::thread::spawn(move || serve_on(sock, secret, probe_public_key(&server)));
        let client = || {
            let c = UdpSocket::bind("127.0.0.1:0").expect("bind");
            c.set_read_timeout(Some(std::time::Duration::from_millis(700)))
                .expect("timeout");
            c
        };
        // Two clients with the same key, back to back (inside and control).
        let (a, b) = (client(), client());
        let (ia, ib) = (initiation(&server, true), initiation(&server, true));
        assert_eq!(ia.len(), 148);
        a.send_to(&ia, addr).expect("send");
        b.send_to(&ib, addr).expect("send");
        let mut buf = [0u8; 256];
        for c in [&a, &b] {
            let n = c.recv(&mut buf).expect("a handshake response");
            assert_eq!((n, buf[0]), (92, 2), "response: type 2, 92 bytes");
        }
        // Another key, or garbage: silence.
        let c = client();
        c.send_to(&initiation(&server, false), addr).expect("send");
        c.send_to(&[1u8; 148], addr).expect("send");
        assert!(c.recv(&mut buf).is_err(), "no answer to a stranger");
    }
}
