//! Tunnel probes (openvpn, tor, quic, encrypted, wireguard) against real
//! peers in network namespaces, with real kernel interference (iptables
//! DROP / REJECT tcp-reset, a length + `recent` residual-blocking rule).
//!
//! Peers: a real `openvpn` server and a real `tor` relay where Debian has
//! them; the QUIC server, the TCP echo peer and the WireGuard responder run
//! in this very test binary, started inside the server namespace with
//! `ip netns exec <ns> env VANTAGE_..._PEER=... <this binary> --exact
//! <helper>` (the `*_peer_helper` tests return at once without that
//! variable). Each test builds its own `vp3*` namespaces on its own /24s in
//! 198.18.128.0 - 198.18.191.255.
//!
//! Needs root, iproute2, iptables and (per test) openvpn or tor; fails naming
//! what is missing unless VANTAGE_SKIP_LAB=1.

mod support_tunnels;

use support_tunnels::{lab_ready, self_signed, Lab};
use vantage_proto::v1::{measurement, Failure, Measurement, OpenVpnResult};

fn openvpn(m: Measurement) -> OpenVpnResult {
    match m.result {
        Some(measurement::Result::Openvpn(r)) => r,
        other => panic!("expected an openvpn result, got {other:?}"),
    }
}

fn assert_failure(f: &Option<Failure>, failure: &str, operation: &str) {
    let f = f
        .as_ref()
        .unwrap_or_else(|| panic!("expected {failure}/{operation}, got success"));
    assert_eq!(
        (f.failure.as_str(), f.operation.as_str()),
        (failure, operation)
    );
}

fn assert_failure_in(f: &Option<Failure>, failures: &[&str], operation: &str) {
    let f = f
        .as_ref()
        .unwrap_or_else(|| panic!("expected one of {failures:?}/{operation}, got success"));
    assert!(
        failures.contains(&f.failure.as_str()) && f.operation == operation,
        "expected one of {failures:?}/{operation}, got {f:?}"
    );
}

// ---------------------------------------------------------------- openvpn

#[test]
fn openvpn_real_server_answers_reset_and_interference_is_classified() {
    let name = "openvpn_real_server_answers_reset_and_interference_is_classified";
    if !lab_ready(name, &["openvpn"]) {
        return;
    }
    assert!(
        std::path::Path::new("/dev/net/tun").exists(),
        "{name}: the openvpn server needs /dev/net/tun"
    );
    let mut lab = Lab::new("vp3a", 128);
    let srv = lab.srv_ip();
    let (cert, key, _) = self_signed(&["vantage-openvpn-lab"]);
    let d = lab.dir.path().to_path_buf();
    std::fs::write(d.join("cert.pem"), &cert).expect("cert");
    std::fs::write(d.join("key.pem"), &key).expect("key");
    let cert_p = d.join("cert.pem").display().to_string();
    let key_p = d.join("key.pem").display().to_string();
    for (proto, port, net) in [
        ("udp", "1194", "10.98.0.0"),
        ("tcp-server", "1195", "10.99.0.0"),
    ] {
        lab.spawn(
            "srv",
            &[
                "openvpn",
                "--server",
                net,
                "255.255.255.0",
                "--topology",
                "subnet",
                "--dev",
                "tun",
                "--proto",
                proto,
                "--local",
                &srv,
                "--port",
                port,
                "--ca",
                &cert_p,
                "--cert",
                &cert_p,
                "--key",
                &key_p,
                "--dh",
                "none",
                "--verb",
                "3",
            ],
        );
    }
    lab.wait_listen("srv", "udp", 1194);
    lab.wait_listen("srv", "tcp", 1195);

    let udp = format!(r#"{{"openvpn":{{"ip":"{srv}","port":1194,"transport":"udp"}}}}"#);
    let tcp = format!(r#"{{"openvpn":{{"ip":"{srv}","port":1195,"transport":"tcp"}}}}"#);

    let r = openvpn(lab.probe(&udp, "10s"));
    assert!(r.server_reset_received, "udp: {r:?}");
    assert!(r.failure.is_none() && r.rtt_us > 0, "udp: {r:?}");
    let r = openvpn(lab.probe(&tcp, "10s"));
    assert!(r.server_reset_received, "tcp: {r:?}");
    assert!(r.failure.is_none(), "tcp: {r:?}");

    // Interference: UDP blackhole -> timeout on read.
    lab.fw("-A FORWARD -p udp --dport 1194 -j DROP");
    let r = openvpn(lab.probe(&udp, "3s"));
    assert!(!r.server_reset_received, "{r:?}");
    assert_failure(&r.failure, "generic_timeout_error", "read");

    // TCP: reset the connection once the reset is on the wire (the data
    // segment, not the SYN), and refuse outright with a SYN reset.
    lab.fw("-A FORWARD -p tcp --dport 1195 -m length --length 64:1500 -j REJECT --reject-with tcp-reset");
    let r = openvpn(lab.probe(&tcp, "5s"));
    assert!(!r.server_reset_received, "{r:?}");
    assert_failure(&r.failure, "connection_reset", "read");
    lab.fw_flush();
    lab.fw("-A FORWARD -p tcp --dport 1195 -j REJECT --reject-with tcp-reset");
    let r = openvpn(lab.probe(&tcp, "5s"));
    assert_failure(&r.failure, "connection_refused", "connect");
    drop(lab);
}
