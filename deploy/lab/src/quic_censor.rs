//! Condition 9: a QUIC SNI censor in the style the GFW has used since 2024
//! (Zohaib et al., "Exposing and Circumventing SNI-based QUIC Censorship of
//! the Great Firewall of China", USENIX Security 2025): decrypt the client's
//! Initial packet (its keys derive from the public Destination Connection ID,
//! RFC 9001 section 5.2), read the SNI from the ClientHello in its CRYPTO
//! frames, and when the name contains a listed keyword drop that datagram
//! and every later one of the flow for a residual window.
//!
//! `iptables -m string` cannot do this: the ClientHello inside a QUIC
//! Initial is AEAD-protected, so the SNI never appears in clear on the wire.
//! The kernel still makes every decision effective: the firewall queues the
//! inside clients' UDP datagrams to the QUIC target with `-j NFQUEUE`, and
//! [`serve`], running in the firewall namespace, answers each with an
//! `NF_ACCEPT` / `NF_DROP` verdict ([`crate::nfqueue`]).
//!
//! The residual block is keyed by the flow's 5-tuple (client IP and port,
//! server IP and port, UDP), not the GFW's wider 3-tuple: a later handshake
//! from a fresh client port with an unlisted name passes, which is how the
//! lab shows the verdict depends on the SNI and not on the address.
//!
//! Only a ClientHello whose SNI sits in the first Initial of the connection
//! is seen (no reassembly across datagrams); every parse step is bounds
//! checked, and anything that does not parse is passed untouched.

use std::collections::HashMap;
use std::io;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use rustls::quic::{Keys, Version};
use rustls::Side;

use crate::nfqueue::{Queue, NF_ACCEPT, NF_DROP};

/// The queue number the lab's firewall uses for condition 9.
pub const LAB_QUEUE: u16 = 9;

/// At most this many flows are remembered; expired ones are purged first,
/// and when every entry is live the table is cleared (a lab never gets near).
const MAX_FLOWS: usize = 65_536;

/// (client IP, client port, server IP, server port) of a UDP flow.
pub type Flow = (Ipv4Addr, u16, Ipv4Addr, u16);

/// A QUIC variable-length integer (RFC 9000 section 16): (value, bytes used).
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let len = 1usize << (first >> 6);
    let bytes = b.get(..len)?;
    let mut v = u64::from(first & 0x3f);
    for &x in &bytes[1..] {
        v = (v << 8) | u64::from(x);
    }
    Some((v, len))
}

/// A varint as a length or offset that fits in usize.
fn varint_usize(b: &[u8]) -> Option<(usize, usize)> {
    let (v, n) = varint(b)?;
    Some((usize::try_from(v).ok()?, n))
}

/// The SNI in a QUIC v1 client Initial datagram, if it carries one.
pub fn initial_sni(d: &[u8]) -> Option<String> {
    let first = *d.first()?;
    // Long header, fixed bit, packet type Initial (0).
    if first & 0xc0 != 0xc0 || first & 0x30 != 0 {
        return None;
    }
    if d.get(1..5)? != [0, 0, 0, 1] {
        return None;
    }
    let mut i = 5usize;
    let dcid_len = usize::from(*d.get(i)?);
    i += 1;
    // RFC 9000 section 17.2: connection IDs are at most 20 bytes in v1.
    if dcid_len > 20 {
        return None;
    }
    let dcid = d.get(i..i.checked_add(dcid_len)?)?;
    i += dcid_len;
    let scid_len = usize::from(*d.get(i)?);
    i = i.checked_add(1 + scid_len)?;
    let (token_len, n) = varint_usize(d.get(i..)?)?;
    i = i.checked_add(n)?.checked_add(token_len)?;
    let (length, n) = varint_usize(d.get(i..)?)?;
    i = i.checked_add(n)?;
    let pn_off = i;
    let end = pn_off.checked_add(length)?;
    // The header-protection sample starts 4 bytes after the packet number.
    if end > d.len() || pn_off.checked_add(20)? > end {
        return None;
    }
    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256.tls13()?;
    let keys = Keys::initial(Version::V1, suite, suite.quic?, dcid, Side::Server);
    let mut pkt = d[..end].to_vec();
    let sample = pkt[pn_off + 4..pn_off + 20].to_vec();
    let mut first = pkt[0];
    let mut pn = [0u8; 4];
    pn.copy_from_slice(&pkt[pn_off..pn_off + 4]);
    keys.remote
        .header
        .decrypt_in_place(&sample, &mut first, &mut pn)
        .ok()?;
    let pn_len = usize::from(first & 0x03) + 1;
    pkt[0] = first;
    pkt[pn_off..pn_off + pn_len].copy_from_slice(&pn[..pn_len]);
    let number = pn[..pn_len]
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    let (header, payload) = pkt.split_at_mut(pn_off + pn_len);
    let plain = keys
        .remote
        .packet
        .decrypt_in_place(number, header, payload)
        .ok()?;
    let hello = crypto_stream(plain)?;
    client_hello_sni(&hello)
}

/// The contiguous CRYPTO stream from offset 0 in a decrypted Initial
/// payload (PADDING, PING and ACK frames skipped; any other frame ends it).
fn crypto_stream(p: &[u8]) -> Option<Vec<u8>> {
    let mut parts: Vec<(usize, &[u8])> = Vec::new();
    let mut j = 0usize;
    let skip = |j: &mut usize| -> Option<()> {
        *j = j.checked_add(varint(p.get(*j..)?)?.1)?;
        Some(())
    };
    while j < p.len() {
        match p[j] {
            0x00 | 0x01 => j += 1,
            0x06 => {
                j += 1;
                let (off, n) = varint_usize(p.get(j..)?)?;
                j += n;
                let (len, n) = varint_usize(p.get(j..)?)?;
                j += n;
                parts.push((off, p.get(j..j.checked_add(len)?)?));
                j += len;
            }
            0x02 | 0x03 => {
                let ecn = p[j] == 0x03;
                j += 1;
                // Largest acknowledged, ACK delay.
                skip(&mut j)?;
                skip(&mut j)?;
                let (ranges, n) = varint(p.get(j..)?)?;
                j += n;
                // First range, then (gap, range) pairs: each at least a
                // byte, so a huge count runs out of input, not of time.
                skip(&mut j)?;
                for _ in 0..ranges.saturating_mul(2) {
                    skip(&mut j)?;
                }
                if ecn {
                    for _ in 0..3 {
                        skip(&mut j)?;
                    }
                }
            }
            _ => break,
        }
    }
    parts.sort_by_key(|(o, _)| *o);
    let mut out: Vec<u8> = Vec::new();
    for (off, data) in parts {
        if off > out.len() {
            break;
        }
        let have = out.len() - off;
        if data.len() > have {
            out.extend_from_slice(&data[have..]);
        }
    }
    Some(out)
}

/// The server_name in a TLS ClientHello handshake message (RFC 8446
/// section 4.1.2, RFC 6066 section 3).
fn client_hello_sni(h: &[u8]) -> Option<String> {
    if *h.first()? != 1 {
        return None;
    }
    let be16 = |i: usize| -> Option<usize> {
        Some(usize::from(u16::from_be_bytes([
            *h.get(i)?,
            *h.get(i + 1)?,
        ])))
    };
    // Type and length (4), legacy_version (2), random (32).
    let mut i = 4 + 2 + 32;
    let sid = usize::from(*h.get(i)?);
    i += 1 + sid;
    let suites = be16(i)?;
    i += 2 + suites;
    let comp = usize::from(*h.get(i)?);
    i += 1 + comp;
    let ext_len = be16(i)?;
    i += 2;
    let end = (i + ext_len).min(h.len());
    while i + 4 <= end {
        let ty = be16(i)?;
        let len = be16(i + 2)?;
        let data = h.get(i + 4..i + 4 + len)?;
        if ty == 0 {
            // server_name_list: u16 length, then (u8 type, u16 len, name).
            let name_len = usize::from(u16::from_be_bytes([*data.get(3)?, *data.get(4)?]));
            let name = data.get(5..5 + name_len)?;
            return String::from_utf8(name.to_vec()).ok();
        }
        i += 4 + len;
    }
    None
}

/// (flow, UDP payload) of an IPv4 UDP packet.
pub fn ipv4_udp(p: &[u8]) -> Option<(Flow, &[u8])> {
    if p.len() < 20 || p[0] >> 4 != 4 || p[9] != 17 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    if ihl < 20 {
        return None;
    }
    let udp = p.get(ihl..)?;
    let sport = u16::from_be_bytes([*udp.first()?, *udp.get(1)?]);
    let dport = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    Some(((src, sport, dst, dport), udp.get(8..)?))
}

/// What the censor decided about one packet, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not a QUIC Initial with an SNI, and not a blocked flow.
    Pass,
    /// An Initial whose SNI lists no keyword.
    PassSni(String),
    /// An Initial whose SNI contains a listed keyword: the flow is blocked.
    Trigger(String),
    /// A later datagram of a blocked flow, within the residual window.
    Residual,
}

impl Decision {
    pub fn verdict(&self) -> u32 {
        match self {
            Decision::Pass | Decision::PassSni(_) => NF_ACCEPT,
            Decision::Trigger(_) | Decision::Residual => NF_DROP,
        }
    }
}

/// The censor's state: its keywords (matched case-insensitively as
/// substrings of the SNI) and the flows it blocks, each until its window
/// ends.
pub struct Censor {
    keywords: Vec<String>,
    window: Duration,
    flows: HashMap<Flow, Instant>,
}

impl Censor {
    pub fn new(keywords: &[String], window: Duration) -> Censor {
        Censor {
            keywords: keywords.iter().map(|k| k.to_ascii_lowercase()).collect(),
            window,
            flows: HashMap::new(),
        }
    }

    /// Whether `sni` contains a listed keyword.
    pub fn listed(&self, sni: &str) -> bool {
        let sni = sni.to_ascii_lowercase();
        self.keywords
            .iter()
            .any(|k| !k.is_empty() && sni.contains(k))
    }

    /// Decides about one IP packet seen at `now`.
    pub fn decide(&mut self, packet: &[u8], now: Instant) -> Decision {
        let Some((flow, udp)) = ipv4_udp(packet) else {
            return Decision::Pass;
        };
        if let Some(until) = self.flows.get(&flow) {
            if now < *until {
                return Decision::Residual;
            }
            self.flows.remove(&flow);
        }
        let Some(sni) = initial_sni(udp) else {
            return Decision::Pass;
        };
        if !self.listed(&sni) {
            return Decision::PassSni(sni);
        }
        if self.flows.len() >= MAX_FLOWS {
            self.flows.retain(|_, until| now < *until);
            if self.flows.len() >= MAX_FLOWS {
                self.flows.clear();
            }
        }
        self.flows.insert(flow, now + self.window);
        Decision::Trigger(sni)
    }
}

/// Serves queue `num` until killed: drops QUIC Initials whose SNI contains
/// one of `keywords`, and every later datagram of that flow for `window`;
/// accepts everything else. Logs one line per decision about an Initial.
pub fn serve(num: u16, keywords: &[String], window: Duration) -> io::Result<()> {
    let mut q = Queue::bind(num)?;
    eprintln!(
        "quic censor ready on queue {num}, blocking SNIs containing {keywords:?} \
         (residual window {} s per 5-tuple)",
        window.as_secs()
    );
    let mut censor = Censor::new(keywords, window);
    loop {
        let batch = match q.recv() {
            Ok(b) => b,
            Err(e) => {
                eprintln!("nfqueue recv: {e}");
                continue;
            }
        };
        for (id, pkt) in batch {
            let d = censor.decide(&pkt, Instant::now());
            match &d {
                Decision::Trigger(sni) => {
                    let flow = ipv4_udp(&pkt).map(|(f, _)| f);
                    eprintln!("blocking {flow:?}: Initial with SNI {sni}");
                }
                Decision::PassSni(sni) => eprintln!("passing Initial with SNI {sni}"),
                Decision::Pass | Decision::Residual => {}
            }
            q.verdict(id, d.verdict())?;
        }
    }
}

#[cfg(test)]
mod tests;
