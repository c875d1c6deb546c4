//! The Initial parser against real Initials: one sent by quinn (the QUIC
//! stack the agent's probe uses) over loopback and captured by a plain UDP
//! socket, and hand-assembled ones around a ClientHello written by rustls
//! (CRYPTO split out of order, ACK and PING frames, coalesced packets).
//! Malformed input never panics: every truncation, byte flips of a real
//! Initial, and arbitrary bytes (proptest).

use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use rustls::quic::{Keys, Version};
use rustls::Side;

use super::*;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config() -> rustls::ClientConfig {
    let mut c = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    c.alpn_protocols = vec![b"h3".to_vec()];
    c
}

/// The first datagram quinn sends when connecting to `sni`.
fn quinn_initial(sni: &str) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let to = server.local_addr().expect("addr");
        let crypto =
            quinn::crypto::rustls::QuicClientConfig::try_from(client_config()).expect("quic tls");
        let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("ep");
        ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let _connecting = ep.connect(to, sni).expect("connect");
        let mut buf = vec![0u8; 65536];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), server.recv_from(&mut buf))
            .await
            .expect("quinn sent an Initial")
            .expect("recv");
        buf.truncate(n);
        buf
    })
}

fn real_initial() -> &'static [u8] {
    static I: OnceLock<Vec<u8>> = OnceLock::new();
    I.get_or_init(|| quinn_initial("blocked-sni.lab.example"))
}

/// A ClientHello for `sni` written by rustls' QUIC client.
fn rustls_client_hello(sni: &str) -> Vec<u8> {
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).expect("name");
    // Minimal transport parameters: initial_max_data = 0.
    let mut conn = rustls::quic::ClientConnection::new(
        Arc::new(client_config()),
        Version::V1,
        name,
        vec![0x04, 0x01, 0x00],
    )
    .expect("client");
    let mut hs = Vec::new();
    let _ = conn.write_hs(&mut hs);
    assert_eq!(hs[0], 1, "a ClientHello");
    hs
}

fn crypto_frame(off: usize, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    f.extend_from_slice(&(0x8000_0000u32 | off as u32).to_be_bytes());
    f.extend_from_slice(&(0x4000u16 | data.len() as u16).to_be_bytes());
    f.extend_from_slice(data);
    f
}

/// A client Initial (QUIC v1) carrying `frames`, padded so the packet is
/// `pad_to` bytes, protected with the keys RFC 9001 derives from `dcid`.
fn build_initial(dcid: &[u8], frames: &[u8], pad_to: usize) -> Vec<u8> {
    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .expect("suite");
    let keys = Keys::initial(
        Version::V1,
        suite,
        suite.quic.expect("quic"),
        dcid,
        Side::Client,
    );
    let pn: u32 = 0;
    let mut header = vec![0xc3, 0, 0, 0, 1, dcid.len() as u8];
    header.extend_from_slice(dcid);
    header.extend_from_slice(&[0, 0]); // SCID length 0, token length 0
    let header_len = header.len() + 2 + 4;
    let mut payload = frames.to_vec();
    let tag_len = 16;
    while header_len + payload.len() + tag_len < pad_to {
        payload.push(0); // PADDING
    }
    let length = 4 + payload.len() + tag_len;
    header.extend_from_slice(&(0x4000u16 | length as u16).to_be_bytes());
    let pn_off = header.len();
    header.extend_from_slice(&pn.to_be_bytes());
    let tag = keys
        .local
        .packet
        .encrypt_in_place(u64::from(pn), &header, &mut payload)
        .expect("seal");
    let mut pkt = header;
    pkt.extend_from_slice(&payload);
    pkt.extend_from_slice(tag.as_ref());
    let sample = pkt[pn_off + 4..pn_off + 20].to_vec();
    let (head, rest) = pkt.split_at_mut(pn_off);
    keys.local
        .header
        .encrypt_in_place(&sample, &mut head[0], &mut rest[..4])
        .expect("header protection");
    pkt
}

/// An IPv4/UDP packet around `payload` (checksums left zero: the censor
/// does not read them).
fn ip_udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

#[test]
fn reads_the_sni_of_an_initial_quinn_sent() {
    let d = real_initial();
    assert!(d.len() >= 1200, "a client Initial is padded: {}", d.len());
    assert_eq!(initial_sni(d).as_deref(), Some("blocked-sni.lab.example"));
    let other = quinn_initial("quic.lab.example");
    assert_eq!(initial_sni(&other).as_deref(), Some("quic.lab.example"));
}

#[test]
fn reads_the_sni_from_split_out_of_order_crypto_frames_after_ack_and_ping() {
    let hello = rustls_client_hello("blocked-sni.lab.example");
    let cut = hello.len() / 3;
    let mut frames = vec![0x01]; // PING
    frames.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, 0x00]); // ACK 0, no ranges
    frames.extend_from_slice(&crypto_frame(cut, &hello[cut..]));
    frames.extend_from_slice(&crypto_frame(0, &hello[..cut + 10])); // overlaps
    let dcid = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
    let d = build_initial(&dcid, &frames, 1200);
    assert_eq!(initial_sni(&d).as_deref(), Some("blocked-sni.lab.example"));

    // A second, coalesced packet after the Initial is ignored.
    let mut coalesced = build_initial(&dcid, &crypto_frame(0, &hello), 600);
    coalesced.extend_from_slice(&[0xe0; 600]);
    assert_eq!(
        initial_sni(&coalesced).as_deref(),
        Some("blocked-sni.lab.example")
    );

    // Without the start of the stream there is no ClientHello to read.
    let d = build_initial(&dcid, &crypto_frame(cut, &hello[cut..]), 1200);
    assert_eq!(initial_sni(&d), None);
}

#[test]
fn not_an_initial_or_wrong_keys_is_none() {
    let d = real_initial();
    // A Handshake packet type, another version, a short header.
    for (i, v) in [(0, d[0] | 0x20), (4, 2), (0, 0x40)] {
        let mut x = d.to_vec();
        x[i] = v;
        assert_eq!(initial_sni(&x), None, "byte {i} = {v:#x}");
    }
    // Another DCID derives other keys: authentication fails.
    let mut x = d.to_vec();
    x[6] ^= 0xff;
    assert_eq!(initial_sni(&x), None);
    assert_eq!(initial_sni(&[]), None);
    assert_eq!(initial_sni(&[0xc0]), None);
}

#[test]
fn every_truncation_of_a_real_initial_is_none() {
    let d = real_initial();
    for n in 0..d.len() {
        // Padding is not authenticated separately: any cut inside the
        // packet breaks the AEAD tag.
        assert_eq!(initial_sni(&d[..n]), None, "cut at {n}");
    }
}

#[test]
fn censor_drops_the_listed_flow_for_its_window_and_passes_others() {
    let blocked = real_initial();
    let clean = quinn_initial("quic.lab.example");
    let (client, server) = ([198, 19, 1, 10], [198, 19, 3, 19]);
    let mut c = Censor::new(&["Blocked-SNI".to_string()], Duration::from_secs(10));
    let t0 = Instant::now();
    let pkt = |sport: u16, d: &[u8]| ip_udp(client, sport, server, 443, d);

    assert_eq!(
        c.decide(&pkt(5000, &clean), t0),
        Decision::PassSni("quic.lab.example".into())
    );
    let d = c.decide(&pkt(5001, blocked), t0);
    assert_eq!(d, Decision::Trigger("blocked-sni.lab.example".into()));
    assert_eq!(d.verdict(), NF_DROP);
    // Anything later on that 5-tuple is dropped, even a clean Initial.
    let later = t0 + Duration::from_secs(3);
    assert_eq!(
        c.decide(&pkt(5001, b"short header"), later),
        Decision::Residual
    );
    assert_eq!(c.decide(&pkt(5001, &clean), later), Decision::Residual);
    // Another client port (a new connection) with a clean name passes.
    let d = c.decide(&pkt(5002, &clean), later);
    assert_eq!(d.verdict(), NF_ACCEPT);
    assert_eq!(c.decide(&pkt(5000, b"1-RTT data"), later), Decision::Pass);
    // After the window the flow is judged afresh.
    let after = t0 + Duration::from_secs(11);
    assert_eq!(
        c.decide(&pkt(5001, &clean), after),
        Decision::PassSni("quic.lab.example".into())
    );
    // Not IPv4/UDP: passed.
    assert_eq!(c.decide(&[0x60; 40], after), Decision::Pass);
    let mut tcp = pkt(5003, blocked);
    tcp[9] = 6;
    assert_eq!(c.decide(&tcp, after), Decision::Pass);
}

#[test]
fn keywords_match_as_case_insensitive_substrings() {
    let c = Censor::new(&["blocked-sni".into(), String::new()], Duration::ZERO);
    assert!(c.listed("www.BLOCKED-sni.lab.example"));
    assert!(
        !c.listed("clean.lab.example"),
        "an empty keyword lists nothing"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(d in proptest::collection::vec(any::<u8>(), 0..1500)) {
        let _ = initial_sni(&d);
        let mut c = Censor::new(&["x".into()], Duration::from_secs(1));
        let _ = c.decide(&d, Instant::now());
    }

    #[test]
    fn initial_headers_with_arbitrary_lengths_never_panic(
        dcid in proptest::collection::vec(any::<u8>(), 0..24),
        rest in proptest::collection::vec(any::<u8>(), 0..1300),
    ) {
        let mut d = vec![0xc3, 0, 0, 0, 1, dcid.len() as u8];
        d.extend_from_slice(&dcid);
        d.extend_from_slice(&rest);
        let _ = initial_sni(&d);
    }

    #[test]
    fn flipped_bytes_of_a_real_initial_never_panic(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut d = real_initial().to_vec();
        for (i, x) in flips {
            let n = d.len();
            d[i % n] ^= x | 1;
        }
        let _ = initial_sni(&d);
    }

    #[test]
    fn decrypted_payloads_and_hellos_never_panic(p in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = crypto_stream(&p);
        let _ = client_hello_sni(&p);
        let mut h = vec![1u8];
        h.extend_from_slice(&p);
        let _ = client_hello_sni(&h);
    }
}
