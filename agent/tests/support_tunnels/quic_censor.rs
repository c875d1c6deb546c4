//! A QUIC SNI censor for the lab, in the style the GFW has used since 2024
//! (Zohaib et al., "Exposing and Circumventing SNI-based QUIC Censorship of
//! the Great Firewall of China", USENIX Security 2025): decrypt the client's
//! Initial packet (its keys derive from the public Destination Connection ID,
//! RFC 9001 section 5.2), read the SNI from the ClientHello, and drop that
//! datagram and every later one of the (client IP, server IP, server port)
//! 3-tuple.
//!
//! `iptables -m string` cannot do this: the ClientHello inside a QUIC
//! Initial is AEAD-protected, so the SNI never appears in clear on the wire.
//! The kernel still makes every decision effective: the firewall queues the
//! client's UDP datagrams with `-j NFQUEUE`, and this code, running in the
//! firewall namespace, answers each with an `NF_ACCEPT` / `NF_DROP` verdict
//! over a netlink socket (nfnetlink_queue, spoken directly: no C library).

use std::collections::HashSet;
use std::io::{self, Read};
use std::net::Ipv4Addr;

use rustls::quic::{Keys, Version};
use rustls::Side;
use socket2::{Domain, Protocol, Socket, Type};

const AF_NETLINK: i32 = 16;
const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_PAYLOAD: u16 = 10;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_COPY_PACKET: u8 = 2;
pub const NF_DROP: u32 = 0;
pub const NF_ACCEPT: u32 = 1;

/// (client IP, server IP, server port): what the censor blocks.
type Flow = (Ipv4Addr, Ipv4Addr, u16);

/// One bound nfnetlink queue.
pub struct Queue {
    sock: Socket,
    num: u16,
    seq: u32,
    buf: Vec<u8>,
}

fn push_attr(out: &mut Vec<u8>, ty: u16, data: &[u8]) {
    out.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn ne_u16(b: &[u8]) -> u16 {
    u16::from_ne_bytes([b[0], b[1]])
}

fn ne_u32(b: &[u8]) -> u32 {
    u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
}

impl Queue {
    /// Binds queue `num` in the current network namespace, copying whole
    /// packets to user space.
    pub fn bind(num: u16) -> io::Result<Queue> {
        let sock = Socket::new(
            Domain::from(AF_NETLINK),
            Type::RAW,
            Some(Protocol::from(NETLINK_NETFILTER)),
        )?;
        let _ = sock.set_recv_buffer_size(1 << 20);
        let mut q = Queue {
            sock,
            num,
            seq: 0,
            buf: vec![0u8; 1 << 16],
        };
        let mut cmd = Vec::new();
        push_attr(&mut cmd, NFQA_CFG_CMD, &[NFQNL_CFG_CMD_BIND, 0, 0, 0]);
        q.request(NFQNL_MSG_CONFIG, &cmd)?;
        let mut params = Vec::new();
        let mut p = 0xffffu32.to_be_bytes().to_vec();
        p.push(NFQNL_COPY_PACKET);
        push_attr(&mut params, NFQA_CFG_PARAMS, &p);
        q.request(NFQNL_MSG_CONFIG, &params)?;
        Ok(q)
    }

    fn message(&mut self, msg: u16, flags: u16, attrs: &[u8]) -> Vec<u8> {
        self.seq = self.seq.wrapping_add(1);
        let len = 16 + 4 + attrs.len();
        let mut m = Vec::with_capacity(len);
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | msg).to_ne_bytes());
        m.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        m.extend_from_slice(&self.seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        // nfgenmsg: family AF_UNSPEC, version 0, queue number big-endian.
        m.extend_from_slice(&[0, 0]);
        m.extend_from_slice(&self.num.to_be_bytes());
        m.extend_from_slice(attrs);
        m
    }

    /// Sends a config message and waits for the kernel's ack.
    fn request(&mut self, msg: u16, attrs: &[u8]) -> io::Result<()> {
        let m = self.message(msg, NLM_F_ACK, attrs);
        self.sock.send(&m)?;
        let n = (&self.sock).read(&mut self.buf)?;
        let b = &self.buf[..n];
        if n >= 20 && ne_u16(&b[4..6]) == NLMSG_ERROR {
            let code = i32::from_ne_bytes([b[16], b[17], b[18], b[19]]);
            if code != 0 {
                return Err(io::Error::from_raw_os_error(-code));
            }
            return Ok(());
        }
        Err(io::Error::other("nfqueue: no ack from the kernel"))
    }

    /// Blocks for the next batch of queued packets: (packet id, IP packet).
    pub fn recv(&mut self) -> io::Result<Vec<(u32, Vec<u8>)>> {
        let n = (&self.sock).read(&mut self.buf)?;
        let mut out = Vec::new();
        let mut off = 0usize;
        while off + 16 <= n {
            let b = &self.buf[off..n];
            let len = ne_u32(&b[0..4]) as usize;
            if len < 16 || len > b.len() {
                break;
            }
            let ty = ne_u16(&b[4..6]);
            if ty == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET && len >= 20 {
                let mut id = None;
                let mut payload = None;
                let mut a = 20usize;
                while a + 4 <= len {
                    let alen = ne_u16(&b[a..a + 2]) as usize;
                    let aty = ne_u16(&b[a + 2..a + 4]) & 0x3fff;
                    if alen < 4 || a + alen > len {
                        break;
                    }
                    let data = &b[a + 4..a + alen];
                    match aty {
                        NFQA_PACKET_HDR if data.len() >= 4 => {
                            id = Some(u32::from_be_bytes([data[0], data[1], data[2], data[3]]));
                        }
                        NFQA_PAYLOAD => payload = Some(data.to_vec()),
                        _ => {}
                    }
                    a += (alen + 3) & !3;
                }
                if let Some(id) = id {
                    out.push((id, payload.unwrap_or_default()));
                }
            }
            off += (len + 3) & !3;
        }
        Ok(out)
    }

    /// Tells the kernel what to do with packet `id`.
    pub fn verdict(&mut self, id: u32, verdict: u32) -> io::Result<()> {
        let mut v = Vec::new();
        let mut hdr = verdict.to_be_bytes().to_vec();
        hdr.extend_from_slice(&id.to_be_bytes());
        push_attr(&mut v, NFQA_VERDICT_HDR, &hdr);
        let m = self.message(NFQNL_MSG_VERDICT, 0, &v);
        self.sock.send(&m).map(|_| ())
    }
}

/// A QUIC variable-length integer: (value, bytes used).
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

/// The SNI in a QUIC v1 client Initial datagram, if any.
pub fn initial_sni(d: &[u8]) -> Option<String> {
    let first = *d.first()?;
    // Long header, fixed bit, packet type Initial (0).
    if first & 0xc0 != 0xc0 || first & 0x30 != 0 {
        return None;
    }
    if d.get(1..5)? != [0, 0, 0, 1] {
        return None;
    }
    let mut i = 5;
    let dcid_len = *d.get(i)? as usize;
    i += 1;
    let dcid = d.get(i..i + dcid_len)?;
    i += dcid_len;
    let scid_len = *d.get(i)? as usize;
    i += 1 + scid_len;
    let (token_len, n) = varint(d.get(i..)?)?;
    i += n + usize::try_from(token_len).ok()?;
    let (length, n) = varint(d.get(i..)?)?;
    i += n;
    let pn_off = i;
    let end = pn_off.checked_add(usize::try_from(length).ok()?)?;
    if end > d.len() || pn_off + 20 > end {
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

/// The contiguous CRYPTO stream from offset 0 in a decrypted Initial.
fn crypto_stream(p: &[u8]) -> Option<Vec<u8>> {
    let mut parts: Vec<(u64, &[u8])> = Vec::new();
    let mut j = 0;
    while j < p.len() {
        match p[j] {
            0x00 | 0x01 => j += 1,
            0x06 => {
                j += 1;
                let (off, n) = varint(p.get(j..)?)?;
                j += n;
                let (len, n) = varint(p.get(j..)?)?;
                j += n;
                let len = usize::try_from(len).ok()?;
                parts.push((off, p.get(j..j + len)?));
                j += len;
            }
            0x02 | 0x03 => {
                let ecn = p[j] == 0x03;
                j += 1;
                // Largest acknowledged, ACK delay, range count, first range.
                j += varint(p.get(j..)?)?.1;
                j += varint(p.get(j..)?)?.1;
                let (ranges, n) = varint(p.get(j..)?)?;
                j += n;
                j += varint(p.get(j..)?)?.1;
                for _ in 0..ranges.saturating_mul(2) {
                    j += varint(p.get(j..)?)?.1;
                }
                if ecn {
                    for _ in 0..3 {
                        j += varint(p.get(j..)?)?.1;
                    }
                }
            }
            _ => break,
        }
    }
    parts.sort_by_key(|(o, _)| *o);
    let mut out = Vec::new();
    for (off, data) in parts {
        let off = usize::try_from(off).ok()?;
        if off > out.len() {
            break;
        }
        if off + data.len() > out.len() {
            out.extend_from_slice(&data[out.len() - off..]);
        }
    }
    Some(out)
}

/// The server_name in a TLS ClientHello handshake message.
fn client_hello_sni(h: &[u8]) -> Option<String> {
    if *h.first()? != 1 {
        return None;
    }
    let mut i = 4 + 2 + 32;
    let sid = *h.get(i)? as usize;
    i += 1 + sid;
    let suites = u16::from_be_bytes([*h.get(i)?, *h.get(i + 1)?]) as usize;
    i += 2 + suites;
    let comp = *h.get(i)? as usize;
    i += 1 + comp;
    let ext_len = u16::from_be_bytes([*h.get(i)?, *h.get(i + 1)?]) as usize;
    i += 2;
    let end = (i + ext_len).min(h.len());
    while i + 4 <= end {
        let ty = u16::from_be_bytes([h[i], h[i + 1]]);
        let len = u16::from_be_bytes([h[i + 2], h[i + 3]]) as usize;
        let data = h.get(i + 4..i + 4 + len)?;
        if ty == 0 {
            // server_name_list: u16 length, then (u8 type, u16 len, name).
            let name_len = u16::from_be_bytes([*data.get(3)?, *data.get(4)?]) as usize;
            let name = data.get(5..5 + name_len)?;
            return String::from_utf8(name.to_vec()).ok();
        }
        i += 4 + len;
    }
    None
}

/// Serves queue `num` until killed: drops QUIC Initials whose SNI is in
/// `blocked`, and from then on every datagram of that (client IP, server IP,
/// server port); accepts everything else.
pub fn serve(num: u16, blocked: &[String]) -> io::Result<()> {
    let mut q = Queue::bind(num)?;
    eprintln!("quic censor ready on queue {num}, blocking {blocked:?}");
    let mut flows: HashSet<Flow> = HashSet::new();
    loop {
        let batch = match q.recv() {
            Ok(b) => b,
            Err(e) => {
                eprintln!("nfqueue recv: {e}");
                continue;
            }
        };
        for (id, pkt) in batch {
            let mut verdict = NF_ACCEPT;
            if let Some((key, udp)) = ipv4_udp(&pkt) {
                if flows.contains(&key) {
                    verdict = NF_DROP;
                } else if let Some(sni) = initial_sni(udp) {
                    if blocked.contains(&sni) {
                        eprintln!("blocking {key:?}: Initial with SNI {sni}");
                        flows.insert(key);
                        verdict = NF_DROP;
                    } else {
                        eprintln!("passing Initial with SNI {sni}");
                    }
                }
            }
            q.verdict(id, verdict)?;
        }
    }
}

/// (src, dst, dst port) and the UDP payload of an IPv4 UDP packet.
fn ipv4_udp(p: &[u8]) -> Option<(Flow, &[u8])> {
    if p.len() < 20 || p[0] >> 4 != 4 || p[9] != 17 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let udp = p.get(ihl..)?;
    let dport = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    Some(((src, dst, dport), udp.get(8..)?))
}
