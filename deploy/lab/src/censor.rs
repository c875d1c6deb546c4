//! The censorship conditions: iptables rules in `{prefix}-fw`, every one of
//! them matching `-i fw-in` (traffic from the inside segment) only, each
//! bound to its own target address or name. See README.md for the list.

use crate::lab::LabConfig;
use crate::plan::{self, ns, FW_INSIDE_IF as IN};
use crate::sys::{self, Result};

/// Names the DNS injector handles, and how. `replay` re-emits the genuine
/// query later (injection); without it the resolver never sees the query
/// (hijack, NXDOMAIN rewriting).
pub fn injector_rules() -> Vec<String> {
    vec![
        format!("{}={},replay", plan::INJECTED_NAME, plan::FORGED_IP),
        format!("{}={}", plan::HIJACKED_NAME, plan::BOGON_IP),
        format!("{}={}", plan::HIJACKED_BLOCKPAGE_NAME, plan::BLOCKPAGE_IP),
        format!("{}=nxdomain", plan::NXDOMAIN_NAME),
    ]
}

/// A DNS name in wire format for `iptables -m string --hex-string`.
pub fn qname_hex(name: &str) -> String {
    let mut s = String::new();
    for label in name.trim_end_matches('.').split('.') {
        s.push_str(&format!("|{:02x}|{label}", label.len()));
    }
    s.push_str("|00|");
    s
}

fn ipt(fw: &str, args: &[&str]) -> Result<()> {
    let mut full = vec!["iptables", "-w"];
    full.extend_from_slice(args);
    sys::ns_run(fw, &full).map(|_| ())
}

/// Installs every condition in the firewall namespace.
pub fn apply(cfg: &LabConfig) -> Result<()> {
    let fw = ns(&cfg.prefix, "fw");
    let fw = fw.as_str();
    let window = cfg.residual_window_secs.max(1).to_string();

    // 1-3. DNS: mirror inside queries for listed names to the injector
    // (TEE) and hold the original back; the injector answers first and, for
    // injection, re-emits the original after the delay.
    for name in [
        plan::INJECTED_NAME,
        plan::HIJACKED_NAME,
        plan::HIJACKED_BLOCKPAGE_NAME,
        plan::NXDOMAIN_NAME,
    ] {
        let hex = qname_hex(name);
        ipt(
            fw,
            &[
                "-t",
                "mangle",
                "-A",
                "PREROUTING",
                "-i",
                IN,
                "-p",
                "udp",
                "--dport",
                "53",
                "-m",
                "string",
                "--algo",
                "bm",
                "--icase",
                "--hex-string",
                &hex,
                "-j",
                "TEE",
                "--gateway",
                plan::INJECTOR_IP,
            ],
        )?;
        ipt(
            fw,
            &[
                "-A",
                "FORWARD",
                "-i",
                IN,
                "-p",
                "udp",
                "--dport",
                "53",
                "-m",
                "string",
                "--algo",
                "bm",
                "--icase",
                "--hex-string",
                &hex,
                "-j",
                "DROP",
            ],
        )?;
    }

    // 4. TCP reset on an SNI keyword in the ClientHello.
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::SNI_IP,
            "-p",
            "tcp",
            "--dport",
            "443",
            "-m",
            "string",
            "--algo",
            "bm",
            "--string",
            plan::SNI_KEYWORD,
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ],
    )?;

    // 5. TCP reset on an HTTP Host keyword.
    let host_kw = format!("Host: {}", plan::HOST_KEYWORD);
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::HOST_IP,
            "-p",
            "tcp",
            "--dport",
            "80",
            "-m",
            "string",
            "--algo",
            "bm",
            "--icase",
            "--string",
            &host_kw,
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ],
    )?;

    // 6. IP blackhole.
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::BLACKHOLE_IP,
            "-j",
            "DROP",
        ],
    )?;

    // 7. Port refused: RST to the SYN on :80, ICMP port unreachable on :443.
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::REFUSED_IP,
            "-p",
            "tcp",
            "--dport",
            "80",
            "--syn",
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ],
    )?;
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::REFUSED_IP,
            "-p",
            "tcp",
            "--dport",
            "443",
            "-j",
            "REJECT",
            "--reject-with",
            "icmp-port-unreachable",
        ],
    )?;

    // 8. Block page: HTTP is redirected to the block-page server.
    let to = format!("{}:80", plan::BLOCKPAGE_IP);
    ipt(
        fw,
        &[
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-i",
            IN,
            "-d",
            plan::BLOCKPAGE_DNAT_IP,
            "-p",
            "tcp",
            "--dport",
            "80",
            "-j",
            "DNAT",
            "--to-destination",
            &to,
        ],
    )?;

    // 9. QUIC: the SNI sits in the encrypted CRYPTO frame of the Initial, out
    // of a string match's reach; the lab drops the QUIC endpoint's UDP/443
    // (TCP to the same address passes).
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::QUIC_IP,
            "-p",
            "udp",
            "--dport",
            "443",
            "-j",
            "DROP",
        ],
    )?;

    // 10. OpenVPN: UDP dropped; over TCP the segment whose payload starts
    // with a 2-byte length and opcode P_CONTROL_HARD_RESET_CLIENT_V2 (7 << 3)
    // is answered with a reset (u32: skip the IP and TCP headers, read the
    // third payload byte, mask the key id).
    let vpn_port = plan::OPENVPN_PORT.to_string();
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::OPENVPN_IP,
            "-p",
            "udp",
            "--dport",
            &vpn_port,
            "-j",
            "DROP",
        ],
    )?;
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::OPENVPN_IP,
            "-p",
            "tcp",
            "--dport",
            &vpn_port,
            "-m",
            "u32",
            "--u32",
            "0>>22&0x3C@12>>26&0x3C@0>>8&0xF8=0x38",
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ],
    )?;

    // 11. Fully encrypted traffic + residual blocking (rule order matters):
    //  a. a client SYN to the target within the window after a trigger is
    //     dropped (`--rcheck` never refreshes the entry, so the window is
    //     exactly N seconds from the trigger);
    //  b. the rest of a triggering flow (its retransmissions too) is dropped
    //     by connmark, without touching the residual list (otherwise the
    //     kernel's retransmissions of the dropped segment would keep
    //     re-arming it for minutes);
    //  c. the trigger: the flow's first data segment (3rd packet from the
    //     client: SYN, ACK, data), 200+ bytes, neither a TLS record (first
    //     byte 0x16) nor HTTP: marks the flow and records the client. The
    //     rules are bound to one server ip:port, so the list is effectively
    //     keyed by the (client, server ip, port) 3-tuple.
    let enc_port = plan::ENCRYPTED_PORT.to_string();
    let _ = sys::ns_run(fw, &["sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1"]);
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::ENCRYPTED_IP,
            "-p",
            "tcp",
            "--dport",
            &enc_port,
            "--syn",
            "-m",
            "recent",
            "--name",
            "fet",
            "--rsource",
            "--rcheck",
            "--seconds",
            &window,
            "-j",
            "DROP",
        ],
    )?;
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::ENCRYPTED_IP,
            "-p",
            "tcp",
            "--dport",
            &enc_port,
            "-m",
            "connmark",
            "--mark",
            "0x1/0x1",
            "-j",
            "DROP",
        ],
    )?;
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::ENCRYPTED_IP,
            "-p",
            "tcp",
            "--dport",
            &enc_port,
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED",
            "-m",
            "connbytes",
            "--connbytes",
            "3:3",
            "--connbytes-dir",
            "original",
            "--connbytes-mode",
            "packets",
            "-m",
            "length",
            "--length",
            "200:65535",
            "-m",
            "u32",
            "!",
            "--u32",
            "0>>22&0x3C@12>>26&0x3C@0>>24=0x16",
            "-m",
            "string",
            "!",
            "--string",
            "HTTP/",
            "--algo",
            "bm",
            "-m",
            "recent",
            "--name",
            "fet",
            "--rsource",
            "--set",
            "-j",
            "CONNMARK",
            "--set-xmark",
            "0x1/0x1",
        ],
    )?;
    ipt(
        fw,
        &[
            "-A",
            "FORWARD",
            "-i",
            IN,
            "-d",
            plan::ENCRYPTED_IP,
            "-p",
            "tcp",
            "--dport",
            &enc_port,
            "-m",
            "connmark",
            "--mark",
            "0x1/0x1",
            "-j",
            "DROP",
        ],
    )?;

    // 12. The Tor relay's address.
    ipt(
        fw,
        &["-A", "FORWARD", "-i", IN, "-d", plan::TOR_IP, "-j", "DROP"],
    )?;

    // 13 (down) is a route, set with the topology; 14 (clean) has no rule.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qname_in_wire_format() {
        assert_eq!(
            qname_hex("injected.lab.example."),
            "|08|injected|03|lab|07|example|00|"
        );
    }

    #[test]
    fn injector_rules_parse() {
        for r in injector_rules() {
            r.parse::<crate::dns_injector::Rule>().expect("rule");
        }
    }
}
