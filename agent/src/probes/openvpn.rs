//! `openvpn` probe: send a genuine `P_CONTROL_HARD_RESET_CLIENT_V2` over UDP
//! (or over TCP with OpenVPN's 2-byte length prefix) and wait for the
//! server's `P_CONTROL_HARD_RESET_SERVER_V2`.
//!
//! Wire format of the reset we send (no tls-auth / tls-crypt, so a server
//! configured with either ignores it, which is indistinguishable from a
//! blackhole and documented as such):
//!
//! ```text
//! u8  opcode << 3 | key_id      (7 << 3 | 0 = 0x38)
//! u64 own session id            (random)
//! u8  ack packet-id array len   (0, so no remote session id follows)
//! u32 message packet-id         (0)
//! ```
//!
//! The server's reset is parsed defensively (see [`parse_server_reset`]):
//! opcode 8, its own 8-byte session id, an ACK array of at most 8 packet
//! ids, and, when that array is non-empty, the remote session id, which must
//! be ours (a reset acknowledging another session is skipped). Other packets
//! (P_ACK_V1 and the like) are skipped until the deadline. Over UDP the reset
//! is re-sent every [`UDP_RESEND`] as OpenVPN clients do, so one lost
//! datagram is not reported as blocking.
//!
//! Failures: no reply -> `generic_timeout_error` / `read`; a TCP reset ->
//! `connection_reset`; connect errors use the `connect` operation.
//!
//! Target policy: a forbidden `ip` in the input is a refusal (see `target.rs`).

#![allow(clippy::needless_update)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::RngCore;
use tokio::io::AsyncReadExt;
use vantage_proto::failure::{classify_io, failure, op};
use vantage_proto::v1::{measurement, Failure, OpenVpnInput, OpenVpnResult};

use super::{measured, net, target, ProbeContext, Probed, Steps};

/// `P_CONTROL_HARD_RESET_CLIENT_V2`.
const OP_HARD_RESET_CLIENT_V2: u8 = 7;
/// `P_CONTROL_HARD_RESET_SERVER_V2`.
const OP_HARD_RESET_SERVER_V2: u8 = 8;
/// Largest control packet we bother to read.
const MAX_PACKET: usize = 2048;
/// Re-send interval for the UDP reset (OpenVPN's initial retransmit timeout).
const UDP_RESEND: Duration = Duration::from_secs(2);
/// Largest ACK array OpenVPN sends (`RELIABLE_ACK_SIZE`).
const MAX_ACKS: usize = 8;

/// Builds a client hard reset with session id `session`.
pub(crate) fn client_reset(session: [u8; 8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(14);
    p.push(OP_HARD_RESET_CLIENT_V2 << 3);
    p.extend_from_slice(&session);
    p.push(0); // ack array length
    p.extend_from_slice(&0u32.to_be_bytes()); // message packet-id
    p
}

/// What a server reset says, parsed without trusting any length in it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ServerReset {
    pub(crate) key_id: u8,
    pub(crate) session: [u8; 8],
    /// The session id the server acknowledges (ours), when it sent ACKs.
    pub(crate) acked_session: Option<[u8; 8]>,
}

/// Parses `packet` (without the TCP length prefix) as a server hard reset
/// (no tls-auth: no HMAC or replay fields before the ACK array).
pub(crate) fn parse_server_reset(packet: &[u8]) -> Option<ServerReset> {
    let (&first, rest) = packet.split_first()?;
    if first >> 3 != OP_HARD_RESET_SERVER_V2 {
        return None;
    }
    let session: [u8; 8] = rest.get(..8)?.try_into().ok()?;
    let acks = usize::from(*rest.get(8)?);
    if acks > MAX_ACKS {
        return None;
    }
    let mut at = 9 + acks * 4;
    let acked_session = if acks > 0 {
        let s: [u8; 8] = rest.get(at..at + 8)?.try_into().ok()?;
        at += 8;
        Some(s)
    } else {
        None
    };
    // The reset's own message packet-id must be there too.
    rest.get(at..at + 4)?;
    Some(ServerReset {
        key_id: first & 0x07,
        session,
        acked_session,
    })
}

/// Whether `packet` is a server hard reset answering our `session`.
pub(crate) fn is_server_reset(packet: &[u8], session: &[u8; 8]) -> bool {
    parse_server_reset(packet).is_some_and(|r| r.acked_session.is_none_or(|s| &s == session))
}

/// Runs the `openvpn` probe.
pub async fn run(input: &OpenVpnInput, ctx: &ProbeContext) -> Probed {
    let mut steps = Steps::new();
    let addr = target::ip_port("openvpn", &input.ip, input.port, Some(1194), &ctx.policy)?;
    let transport = match input.transport.to_ascii_lowercase().as_str() {
        "" | "udp" => "udp",
        "tcp" => "tcp",
        _ => return Err("malformed_input: openvpn transport is udp or tcp".into()),
    };
    let mut session = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut session);
    let packet = client_reset(session);
    let mut result = OpenVpnResult {
        ip: addr.ip().to_string(),
        port: addr.port().into(),
        transport: transport.to_string(),
        ..Default::default()
    };
    let outcome = if transport == "udp" {
        udp_exchange(addr, &packet, &session, ctx, &mut steps).await
    } else {
        tcp_exchange(addr, &packet, &session, ctx, &mut steps).await
    };
    match outcome {
        Ok(rtt) => {
            result.server_reset_received = true;
            result.rtt_us = rtt;
        }
        Err(f) => result.failure = Some(f),
    }
    measured(measurement::Result::Openvpn(result), steps)
}

/// Sends the reset over UDP and waits for a server reset; returns the RTT.
async fn udp_exchange(
    addr: SocketAddr,
    packet: &[u8],
    session: &[u8; 8],
    ctx: &ProbeContext,
    steps: &mut Steps,
) -> Result<i64, Failure> {
    let sock = net::udp_send(addr, packet, steps).await?;
    let sent = Instant::now();
    let cap = (ctx.max_read_bytes as usize).clamp(64, MAX_PACKET);
    let mut buf = vec![0u8; cap];
    let reply = async {
        let mut resend =
            tokio::time::interval_at(tokio::time::Instant::now() + UDP_RESEND, UDP_RESEND);
        loop {
            tokio::select! {
                r = sock.recv(&mut buf) => match r {
                    Ok(n) if is_server_reset(&buf[..n], session) => return Ok(()),
                    Ok(_) => continue,
                    Err(e) => return Err(failure(&classify_io(&e), op::READ)),
                },
                _ = resend.tick() => {
                    if let Err(e) = sock.send(packet).await {
                        return Err(failure(&classify_io(&e), op::WRITE));
                    }
                }
            }
        }
    };
    net::await_reply(sent, ctx, steps, reply).await
}

/// Sends the length-prefixed reset over TCP and waits for a server reset.
async fn tcp_exchange(
    addr: SocketAddr,
    packet: &[u8],
    session: &[u8; 8],
    ctx: &ProbeContext,
    steps: &mut Steps,
) -> Result<i64, Failure> {
    let (mut stream, _) = steps
        .run("connect", net::connect(addr, ctx.remaining()))
        .await?;
    let mut framed = Vec::with_capacity(packet.len() + 2);
    framed.extend_from_slice(&(packet.len() as u16).to_be_bytes());
    framed.extend_from_slice(packet);
    steps
        .run("write", net::write_all(&mut stream, &framed, ctx))
        .await?;
    let sent = Instant::now();
    let cap = ctx.max_read_bytes as usize;
    let read_failure = |e: std::io::Error| failure(&classify_io(&e), op::READ);
    let reply = async {
        let mut total = 0usize;
        loop {
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await.map_err(read_failure)?;
            let n = u16::from_be_bytes(len) as usize;
            let mut body = vec![0u8; n];
            stream.read_exact(&mut body).await.map_err(read_failure)?;
            total += n + 2;
            if is_server_reset(&body, session) {
                return Ok(());
            }
            if total >= cap {
                return Err(read_failure(std::io::Error::other(
                    "read cap reached without a server reset",
                )));
            }
        }
    };
    net::await_reply(sent, ctx, steps, reply).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_reset_has_the_wire_layout() {
        let p = client_reset([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(p, vec![0x38, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0]);
        assert!(parse_server_reset(&p).is_none());
    }

    #[test]
    fn server_resets_are_parsed_defensively() {
        let ours = [1, 2, 3, 4, 5, 6, 7, 8];
        // opcode 8 key 0, server session, 1 ack (id 0), our session, pid 0.
        let mut s = vec![8 << 3];
        s.extend_from_slice(&[9; 8]);
        s.push(1);
        s.extend_from_slice(&[0; 4]);
        s.extend_from_slice(&ours);
        s.extend_from_slice(&[0; 4]);
        let r = parse_server_reset(&s).expect("valid reset");
        assert_eq!(
            (r.key_id, r.session, r.acked_session),
            (0, [9; 8], Some(ours))
        );
        assert!(is_server_reset(&s, &ours));
        assert!(!is_server_reset(&s, &[0; 8]), "acks another session");
        // Every truncation is rejected, never a panic.
        for n in 0..s.len() {
            assert!(parse_server_reset(&s[..n]).is_none(), "len {n}");
        }
        // No ACKs: no remote session id follows.
        let mut bare = vec![8 << 3];
        bare.extend_from_slice(&[9; 8]);
        bare.push(0);
        bare.extend_from_slice(&[0; 4]);
        assert!(is_server_reset(&bare, &ours));
        // An absurd ACK count, and other opcodes.
        let mut absurd = bare.clone();
        absurd[9] = 200;
        assert!(parse_server_reset(&absurd).is_none());
        assert!(parse_server_reset(&[0x40; 40]).is_none());
        assert!(parse_server_reset(&[]).is_none());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = is_server_reset(&data, &[0; 8]);
        }
    }
}
