//! Tunnel probes (openvpn, tor, quic, encrypted, wireguard) against real
//! peers in network namespaces, with real kernel interference (iptables
//! DROP, REJECT with tcp-reset or ICMP, a length + `recent` residual-blocking
//! rule, and an NFQUEUE verdict from a QUIC SNI censor).
//!
//! Peers: a real `openvpn` server and a real `tor` relay where Debian has
//! them; the QUIC server (quinn), the TCP echo peer, and the censorship
//! lab's WireGuard peer (boringtun) and QUIC SNI censor (`vantage_lab`)
//! run in this very test binary, started
//! inside a lab namespace with `ip netns exec <ns> env VANTAGE_...=... <this
//! binary> --exact <helper>` (the `*_helper` tests return at once without
//! that variable). Each test builds its own `vp2*` namespaces on its own
//! /24s in 198.18.64.0 - 198.18.127.255.
//!
//! Needs root, iproute2, iptables and (per test) openvpn or tor; fails naming
//! what is missing unless VANTAGE_SKIP_LAB=1.

#[macro_use]
mod support;

use support::{assert_failure, lab_ready, self_signed, Lab};
use vantage_proto::v1::{EncryptedResult, OpenVpnResult, QuicResult, TorResult, WireGuardResult};

result_accessors! {
    openvpn: Openvpn => OpenVpnResult;
    tor: Tor => TorResult;
    quic: Quic => QuicResult;
    encrypted: Encrypted => EncryptedResult;
    wireguard: Wireguard => WireGuardResult;
}

/// A current-thread runtime for the in-namespace peers.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
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
    let mut lab = Lab::new("vp2a", 64);
    let srv = lab.srv_ip();
    let (cert, key, _) = self_signed(&["vantage-openvpn-lab"]);
    let d = lab.dir.path().to_path_buf();
    std::fs::write(d.join("cert.pem"), &cert).expect("cert");
    std::fs::write(d.join("key.pem"), &key).expect("key");
    let cert_p = d.join("cert.pem").display().to_string();
    let key_p = d.join("key.pem").display().to_string();
    // A generated server config per transport: TLS mode, no tls-auth, so
    // the server answers a bare P_CONTROL_HARD_RESET_CLIENT_V2.
    for (proto, port, net) in [
        ("udp", "1194", "10.98.0.0"),
        ("tcp-server", "1195", "10.99.0.0"),
    ] {
        let conf = d.join(format!("server-{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                "server {net} 255.255.255.0\ntopology subnet\ndev tun\nproto {proto}\n\
                 local {srv}\nport {port}\nca {cert_p}\ncert {cert_p}\nkey {key_p}\n\
                 dh none\nverb 3\n"
            ),
        )
        .expect("openvpn config");
        lab.spawn("srv", &["openvpn", "--config", &conf.display().to_string()]);
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
    lab.fw_flush();
    lab.fw("-A FORWARD -p udp --dport 1194 -j REJECT --reject-with icmp-port-unreachable");
    let r = openvpn(lab.probe(&udp, "5s"));
    assert!(!r.server_reset_received, "{r:?}");
    assert_failure(&r.failure, "connection_refused", "read");
    lab.fw_flush();

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

// ---------------------------------------------------------------- tor

#[test]
fn tor_real_relay_negotiates_link_versions_and_reset_and_drop_are_classified() {
    let name = "tor_real_relay_negotiates_link_versions_and_reset_and_drop_are_classified";
    if !lab_ready(name, &["tor"]) {
        return;
    }
    let mut lab = Lab::new("vp2b", 66);
    let srv = lab.srv_ip();
    let d = lab.dir.path().to_path_buf();
    let data = d.join("tor-data");
    std::fs::create_dir(&data).expect("tor data dir");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    // Never publishes, no fallback directories, and its only directory
    // authority is its own lab address (where no directory is served), so it
    // never even tries the public network; the namespace has no default
    // route anyway.
    let torrc = format!(
        "ORPort {srv}:9001\nAddress {srv}\nNickname vantagelab\nPublishServerDescriptor 0\n\
         AssumeReachable 1\nExitRelay 0\nExitPolicy reject *:*\nSocksPort 0\nDirPort 0\n\
         ClientUseIPv6 0\nUseDefaultFallbackDirs 0\n\
         DirAuthority vp2lab orport=9001 no-v2 v3ident={zero} {srv}:9030 {zero}\n\
         DataDirectory {data}\nLog notice file {log}\nRunAsDaemon 0\n",
        data = data.display(),
        log = d.join("tor-notice.log").display(),
        zero = "0".repeat(40),
    );
    let rc = d.join("torrc");
    std::fs::write(&rc, torrc).expect("torrc");
    let rc = rc.display().to_string();
    lab.spawn("srv", &["tor", "-f", &rc, "--defaults-torrc", "/dev/null"]);
    lab.wait_listen("srv", "tcp", 9001);

    let input = format!(r#"{{"tor":{{"ip":"{srv}","port":9001}}}}"#);
    let r = tor(lab.probe(&input, "10s"));
    assert!(r.failure.is_none(), "{r:?}");
    assert!(
        r.link_versions.contains(&4) || r.link_versions.contains(&5),
        "{r:?}"
    );
    let tls = r.tls.as_ref().expect("tls record");
    assert!(
        !tls.chain_sha256.is_empty() && !tls.version.is_empty(),
        "{tls:?}"
    );
    assert!(!tls.cipher.is_empty() && tls.handshake_us > 0, "{tls:?}");

    // A reset injected on the ClientHello (data segments only, so the TCP
    // handshake completes).
    lab.fw("-A FORWARD -p tcp --dport 9001 -m length --length 100:1500 -j REJECT --reject-with tcp-reset");
    let r = tor(lab.probe(&input, "5s"));
    assert!(r.link_versions.is_empty(), "{r:?}");
    assert_failure(&r.failure, "connection_reset", "tls_handshake");
    lab.fw_flush();

    lab.fw(&format!("-A FORWARD -d {srv} -j DROP"));
    let r = tor(lab.probe(&input, "3s"));
    assert!(r.link_versions.is_empty(), "{r:?}");
    assert_failure(&r.failure, "generic_timeout_error", "connect");
}

// ---------------------------------------------------------------- quic

/// QUIC peer (quinn, rcgen certificate, ALPN `vantage`/`h3`): serves on the
/// address in VANTAGE_QUIC_PEER until killed; returns at once without it.
#[test]
fn quic_peer_helper() {
    let Ok(addr) = std::env::var("VANTAGE_QUIC_PEER") else {
        return;
    };
    let addr: std::net::SocketAddr = addr.parse().expect("VANTAGE_QUIC_PEER is ip:port");
    let ck =
        rcgen::generate_simple_self_signed(vec!["quic.vantage.test".to_string()]).expect("rcgen");
    let cert = rustls::pki_types::CertificateDer::from(ck.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der())
        .expect("key der");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server cert");
    tls.alpn_protocols = vec![b"vantage".to_vec(), b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).expect("quic tls");
    let cfg = quinn::ServerConfig::with_crypto(std::sync::Arc::new(crypto));
    runtime().block_on(async move {
        let endpoint = quinn::Endpoint::server(cfg, addr).expect("bind quic");
        eprintln!("quic peer listening on {addr}");
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = incoming.await {
                    let _ = conn.closed().await;
                }
            });
        }
    });
}

/// The censorship lab's QUIC SNI censor (`vantage_lab::quic_censor`, the
/// one condition 9 of `vantage-lab` runs) serving the NFQUEUE named in
/// VANTAGE_QUIC_CENSOR=`<queue>:<keyword>[,<keyword>...]` until killed;
/// returns at once without the variable.
#[test]
fn quic_censor_helper() {
    let Ok(spec) = std::env::var("VANTAGE_QUIC_CENSOR") else {
        return;
    };
    let (queue, names) = spec.split_once(':').expect("<queue>:<keyword,...>");
    let queue: u16 = queue.parse().expect("queue number");
    let names: Vec<String> = names.split(',').map(str::to_string).collect();
    let window = std::time::Duration::from_secs(180);
    vantage_lab::quic_censor::serve(queue, &names, window).expect("quic censor");
}

#[test]
fn quic_handshake_succeeds_and_sni_censor_icmp_and_drop_are_classified() {
    let name = "quic_handshake_succeeds_and_sni_censor_icmp_and_drop_are_classified";
    if !lab_ready(name, &[]) {
        return;
    }
    let mut lab = Lab::new("vp2c", 68);
    let srv = lab.srv_ip();
    lab.spawn_helper(
        "srv",
        "quic_peer_helper",
        "VANTAGE_QUIC_PEER",
        &format!("{srv}:4433"),
    );
    lab.wait_listen("srv", "udp", 4433);
    let input = |sni: &str| {
        format!(r#"{{"quic":{{"ip":"{srv}","port":4433,"sni":"{sni}","alpn":["vantage"]}}}}"#)
    };
    let allowed = input("quic.vantage.test");
    let listed = input("blocked.vantage.test");
    let r = quic(lab.probe(&allowed, "10s"));
    assert!(r.failure.is_none(), "{r:?}");
    assert_eq!(r.alpn, "vantage", "{r:?}");
    assert!(r.handshake_us > 0, "{r:?}");

    // SNI censorship: the firewall queues client->server datagrams to the
    // censor, which decrypts each Initial and drops the flow of a listed SNI.
    lab.spawn_helper(
        "fw",
        "quic_censor_helper",
        "VANTAGE_QUIC_CENSOR",
        "7:blocked.vantage.test",
    );
    lab.wait_log("quic censor ready on queue 7");
    lab.fw("-A FORWARD -p udp --dport 4433 -j NFQUEUE --queue-num 7");
    let r = quic(lab.probe(&allowed, "10s"));
    assert!(
        r.failure.is_none(),
        "unlisted SNI through the censor: {r:?}"
    );
    assert_eq!(r.alpn, "vantage", "{r:?}");
    lab.wait_log("passing Initial with SNI quic.vantage.test");
    let r = quic(lab.probe(&listed, "3s"));
    assert!(r.alpn.is_empty(), "{r:?}");
    assert_failure(&r.failure, "generic_timeout_error", "quic_handshake");
    lab.wait_log("Initial with SNI blocked.vantage.test");
    lab.fw_flush();

    // ICMP errors from the firewall are classified, not waited out.
    lab.fw("-A FORWARD -p udp --dport 4433 -j REJECT --reject-with icmp-port-unreachable");
    let r = quic(lab.probe(&allowed, "5s"));
    assert_failure(&r.failure, "connection_refused", "quic_handshake");
    assert!(r.handshake_us < 4_000_000, "{r:?}");
    lab.fw_flush();
    lab.fw("-A FORWARD -p udp --dport 4433 -j REJECT --reject-with icmp-admin-prohibited");
    let r = quic(lab.probe(&allowed, "5s"));
    assert_failure(&r.failure, "host_unreachable", "quic_handshake");
    lab.fw_flush();

    lab.fw("-A FORWARD -p udp --dport 4433 -j DROP");
    let r = quic(lab.probe(&allowed, "3s"));
    assert!(r.alpn.is_empty(), "{r:?}");
    assert_failure(&r.failure, "generic_timeout_error", "quic_handshake");
}

// ---------------------------------------------------------------- encrypted

/// TCP echo peer on the address in VANTAGE_ECHO_PEER until killed; returns
/// at once without it.
#[test]
fn echo_peer_helper() {
    let Ok(addr) = std::env::var("VANTAGE_ECHO_PEER") else {
        return;
    };
    runtime().block_on(async move {
        let l = tokio::net::TcpListener::bind(&addr)
            .await
            .expect("bind echo");
        eprintln!("echo peer listening on {addr}");
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
}

#[test]
fn encrypted_trigger_and_residual_blocking_are_detected() {
    let name = "encrypted_trigger_and_residual_blocking_are_detected";
    if !lab_ready(name, &[]) {
        return;
    }
    let mut lab = Lab::new("vp2d", 70);
    let srv = lab.srv_ip();
    for port in [7000, 7001] {
        lab.spawn_helper(
            "srv",
            "echo_peer_helper",
            "VANTAGE_ECHO_PEER",
            &format!("{srv}:{port}"),
        );
        lab.wait_listen("srv", "tcp", port);
    }
    // Port 7001 imitates the GFW: a large first data packet marks the client
    // (`recent --set`) and is dropped; the client's SYNs to that port are
    // then dropped for 10 s (residual censorship).
    lab.fw(
        "-A FORWARD -p tcp --dport 7001 --syn -m recent --name fet --rcheck --seconds 10 -j DROP",
    );
    lab.fw("-A FORWARD -p tcp --dport 7001 -m length --length 200:1500 -m recent --name fet --set -j DROP");

    let input = |port: u16| {
        format!(
            r#"{{"encrypted":{{"ip":"{srv}","port":{port},"payload_bytes":256,"retest_count":3,"retest_interval_ms":1000}}}}"#
        )
    };
    let clean = encrypted(lab.probe(&input(7000), "15s"));
    assert!(clean.trigger.is_none(), "{clean:?}");
    assert_eq!(clean.retests.len(), 3, "{clean:?}");
    assert!(
        clean.retests.iter().all(|a| a.failure.is_none()),
        "{clean:?}"
    );
    assert!(!clean.residual_blocking, "{clean:?}");

    let blocked = encrypted(lab.probe(&input(7001), "15s"));
    assert!(
        blocked.trigger.is_none(),
        "the trigger connection itself connects: {blocked:?}"
    );
    assert_eq!(blocked.retests.len(), 3, "{blocked:?}");
    for a in &blocked.retests {
        assert_failure(&a.failure, "generic_timeout_error", "connect");
    }
    assert!(blocked.residual_blocking, "{blocked:?}");
    assert!(
        blocked.retests.windows(2).all(|w| w[1].at_us > w[0].at_us),
        "{blocked:?}"
    );
}

// ---------------------------------------------------------------- wireguard

/// The test WireGuard server's fixed private key (test only).
const WG_SERVER_SECRET: [u8; 32] = [0x42; 32];

fn wg_server_public() -> [u8; 32] {
    vantage_lab::wireguard_peer::public_key(&WG_SERVER_SECRET)
}

/// The lab derives the probe's key on its own (an operator would): it must
/// be the key the probe initiates with.
#[test]
fn the_lab_peer_allows_the_key_the_probe_uses() {
    for server in [wg_server_public(), [7u8; 32]] {
        assert_eq!(
            vantage_lab::wireguard_peer::probe_public_key(&server),
            vantage_agent::probes::wireguard::probe_public_key(&server)
        );
    }
}

/// WireGuard peer on the UDP address in VANTAGE_WG_PEER until killed: the
/// censorship lab's boringtun peer (`vantage_lab::wireguard_peer`, an
/// independent, deployed WireGuard stack) with the probe's well-known key
/// for this server as its only peer, exactly as an operator would add it.
/// Returns at once without the variable.
#[test]
fn wireguard_peer_helper() {
    let Ok(addr) = std::env::var("VANTAGE_WG_PEER") else {
        return;
    };
    let addr: std::net::SocketAddr = addr.parse().expect("VANTAGE_WG_PEER is ip:port");
    let allowed = vantage_agent::probes::wireguard::probe_public_key(&wg_server_public());
    vantage_lab::wireguard_peer::serve(addr, WG_SERVER_SECRET, allowed).expect("wireguard peer");
}

#[test]
fn wireguard_handshake_gets_a_response_and_drop_times_out() {
    let name = "wireguard_handshake_gets_a_response_and_drop_times_out";
    if !lab_ready(name, &[]) {
        return;
    }
    let mut lab = Lab::new("vp2e", 72);
    let srv = lab.srv_ip();
    lab.spawn_helper(
        "srv",
        "wireguard_peer_helper",
        "VANTAGE_WG_PEER",
        &format!("{srv}:51820"),
    );
    lab.wait_listen("srv", "udp", 51820);
    let key: Vec<String> = wg_server_public().iter().map(|b| b.to_string()).collect();
    let input = format!(
        r#"{{"wireguard":{{"ip":"{srv}","port":51820,"peer_public_key":[{}]}}}}"#,
        key.join(",")
    );
    let r = wireguard(lab.probe(&input, "10s"));
    assert!(r.response_received, "{r:?}");
    assert!(r.failure.is_none() && r.rtt_us > 0, "{r:?}");

    // A wrong peer key: valid on the wire, but MAC1 does not match this
    // responder, which stays silent like a real one.
    let wrong = input.replacen(&format!("[{}", key[0]), "[1", 1);
    let r = wireguard(lab.probe(&wrong, "2s"));
    assert!(!r.response_received, "{r:?}");
    assert_failure(&r.failure, "generic_timeout_error", "read");

    lab.fw("-A FORWARD -p udp --dport 51820 -j DROP");
    let r = wireguard(lab.probe(&input, "3s"));
    assert!(!r.response_received, "{r:?}");
    assert_failure(&r.failure, "generic_timeout_error", "read");
}
