//! `tcp` probe: connect to host:port and record how long the handshake took
//! or how it failed (refused, reset, blackholed, unreachable). A name is
//! resolved by the system resolver, and its addresses are tried in order.
//!
//! Target policy (see `target.rs`): a forbidden literal `host` is a
//! refusal; a forbidden resolved address is the failure
//! `unknown_failure: forbidden_target: ...` / `connect`.

use vantage_proto::v1::{measurement, TcpInput, TcpResult};

use super::{measured, target, ProbeContext, Probed, Steps};

/// Runs the `tcp` probe.
pub async fn run(input: &TcpInput, ctx: &ProbeContext) -> Probed {
    let mut steps = Steps::new();
    let port = match target::port("tcp", input.port, None) {
        Ok(p) => p,
        Err(reason) => return Err(reason),
    };
    let host = input.host.trim();
    if host.is_empty() {
        return Err("malformed_input: tcp host is empty".into());
    }
    let mut result = TcpResult {
        port: input.port,
        ..Default::default()
    };
    let addrs = match target::literal(host, &ctx.policy)? {
        Some(ip) => vec![ip],
        None => match target::resolve(host, ctx, &mut steps).await {
            Ok(list) => {
                result.resolved = list.iter().map(|a| a.to_string()).collect();
                list
            }
            Err(f) => {
                result.failure = Some(f);
                return measured(measurement::Result::Tcp(result), steps);
            }
        },
    };
    let (attempts, _stream) = target::connect_first(&addrs, port, ctx, &mut steps).await;
    if let Some(last) = attempts.last() {
        result.ip = last.ip.to_string();
        match &last.outcome {
            Ok(us) => result.connect_us = *us,
            Err(f) => result.failure = Some(f.clone()),
        }
    }
    measured(measurement::Result::Tcp(result), steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probes::test_support::{assert_forbidden_refusal, lab_ctx, strict_ctx};
    use std::time::Duration;

    fn tcp_input(host: &str, port: u16) -> TcpInput {
        TcpInput {
            host: host.into(),
            port: port.into(),
        }
    }

    #[tokio::test]
    async fn literal_forbidden_target_is_refused() {
        let ctx = strict_ctx(Duration::from_secs(2));
        assert_forbidden_refusal(&run(&tcp_input("127.0.0.1", 80), &ctx).await);
    }

    #[tokio::test]
    async fn loopback_connect_refused_is_classified() {
        // Bind then drop to find a port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let out = run(
            &tcp_input("127.0.0.1", port),
            &lab_ctx(Duration::from_secs(2)),
        )
        .await;
        match out.expect("measured").result {
            measurement::Result::Tcp(t) => {
                let f = t.failure.expect("a failure");
                assert_eq!(f.failure, "connection_refused");
                assert_eq!(f.operation, "connect");
            }
            other => panic!("expected tcp, got {other:?}"),
        }
    }
}
