//! A minimal nfnetlink_queue client: bind a queue in the current network
//! namespace, receive the packets iptables `-j NFQUEUE --queue-num N` hands
//! to user space, and answer each with an `NF_ACCEPT` / `NF_DROP` verdict.
//! Spoken directly over a netlink socket (no libnetfilter_queue), so the
//! lab needs no C library. The kernel makes every decision effective.

use std::io::{self, Read};

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
