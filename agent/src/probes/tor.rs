//! `tor` probe: TCP connect to an OR port, a TLS handshake (any certificate
//! is accepted: relays and bridges use self-signed link certificates; the
//! chain's SHA-256 fingerprints, version, cipher and handshake time are
//! recorded in `TorResult.tls`), then a link-protocol VERSIONS cell and the
//! relay's VERSIONS reply, whose versions land in `link_versions`.
//!
//! VERSIONS cell (tor-spec "Negotiating versions with VERSIONS cells"), always
//! with a 2-byte circuit id:
//!
//! ```text
//! u16 circ_id = 0 | u8 command = 7 | u16 length | length/2 x u16 version
//! ```
//!
//! Failures carry the operation `connect`, `tls_handshake` or `read`
//! (`write` when sending the cell fails). A reply that is not a VERSIONS cell
//! is `unknown_failure: not a tor versions cell` / `read`.
//!
//! Target policy: a forbidden `ip` in the input is a refusal (see `target.rs`).

#![allow(clippy::needless_update)]

use std::time::Instant;

use tokio::io::AsyncReadExt;
use vantage_proto::failure::{self, failure, op};
use vantage_proto::v1::{measurement, TorInput, TorResult};

use super::{measured, net, target, tls, ProbeContext, Probed, Steps};

/// The VERSIONS command.
const CMD_VERSIONS: u8 = 7;
/// Link protocol versions we offer.
const OFFERED: [u16; 3] = [3, 4, 5];

/// The VERSIONS cell a client sends first.
pub(crate) fn versions_cell() -> Vec<u8> {
    let mut c = Vec::with_capacity(5 + OFFERED.len() * 2);
    c.extend_from_slice(&0u16.to_be_bytes());
    c.push(CMD_VERSIONS);
    c.extend_from_slice(&((OFFERED.len() * 2) as u16).to_be_bytes());
    for v in OFFERED {
        c.extend_from_slice(&v.to_be_bytes());
    }
    c
}

/// Parses a VERSIONS payload into its versions (a trailing odd byte is ignored).
pub(crate) fn parse_versions(payload: &[u8]) -> Vec<u32> {
    payload
        .chunks_exact(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .collect()
}

/// Runs the `tor` probe.
pub async fn run(input: &TorInput, ctx: &ProbeContext) -> Probed {
    let mut steps = Steps::new();
    let addr = target::ip_port("tor", &input.ip, input.port, None, &ctx.policy)?;
    let ip = addr.ip();
    let mut result = TorResult {
        ip: ip.to_string(),
        port: addr.port().into(),
        ..Default::default()
    };
    let finish =
        |result: TorResult, steps: Steps| measured(measurement::Result::Tor(result), steps);

    let tcp_stream = match steps
        .run("connect", net::connect(addr, ctx.remaining()))
        .await
    {
        Ok((s, _)) => s,
        Err(f) => {
            result.failure = Some(f);
            return finish(result, steps);
        }
    };

    // No SNI (rustls cannot send Tor's random www.<x>.com names usefully and
    // relays ignore SNI); the recording verifier accepts any certificate.
    let started = Instant::now();
    let (hs, stream) = tls::handshake(tcp_stream, ip, "", &[], ctx.remaining(), false).await;
    steps.record("tls_handshake", started, hs.failure.clone());
    let hs_failure = hs.failure.clone();
    result.tls = Some(hs);
    let mut stream = match (stream, hs_failure) {
        (Some(s), None) => s,
        (_, f) => {
            result.failure = Some(
                f.unwrap_or_else(|| failure(failure::SSL_FAILED_HANDSHAKE, op::TLS_HANDSHAKE)),
            );
            return finish(result, steps);
        }
    };

    let cell = versions_cell();
    let written = net::write_all(&mut stream, &cell, ctx);
    if let Err(f) = steps.run("write", written).await {
        result.failure = Some(f);
        return finish(result, steps);
    }

    let cap = ctx.max_read_bytes as usize;
    let read = net::before_deadline(ctx, op::READ, async {
        let mut head = [0u8; 5];
        stream
            .read_exact(&mut head)
            .await
            .map_err(net::io_failure(op::READ))?;
        if head[2] != CMD_VERSIONS {
            return Err(failure(
                "unknown_failure: not a tor versions cell",
                op::READ,
            ));
        }
        let len = u16::from_be_bytes([head[3], head[4]]) as usize;
        if len > cap {
            return Err(failure(
                "unknown_failure: versions cell larger than the read cap",
                op::READ,
            ));
        }
        let mut payload = vec![0u8; len];
        stream
            .read_exact(&mut payload)
            .await
            .map_err(net::io_failure(op::READ))?;
        Ok(parse_versions(&payload))
    });
    match steps.run("read", read).await {
        Ok(v) => result.link_versions = v,
        Err(f) => result.failure = Some(f),
    }
    finish(result, steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_cell_layout_and_parse() {
        assert_eq!(versions_cell(), vec![0, 0, 7, 0, 6, 0, 3, 0, 4, 0, 5]);
        assert_eq!(parse_versions(&[0, 3, 0, 4, 0, 5, 9]), vec![3, 4, 5]);
        assert!(parse_versions(&[]).is_empty());
    }
}
