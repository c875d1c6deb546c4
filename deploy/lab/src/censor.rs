//! The censor: the kinds of [`Rule`] each condition of the catalogue
//! lists next to its entry (`plan::catalogue`, field `censor`), and how
//! they are installed in `{prefix}-fw` ([`apply`]): iptables rules, every
//! one of them matching `-i fw-in` (traffic from the inside segment) only,
//! each bound to its own target address or name; a tc shaper on `fw-in`'s
//! egress (toward the inside segment) for the throttled site; names the DNS
//! injector answers. Also the censor's own processes (DNS injector, QUIC
//! SNI censor, [`start`]). The one exception is not censorship: conditions
//! 26-27 drop the control's (`-i fw-out`) DNS queries for two names, a
//! control-side failure. See README.md.

use crate::lab::{LabConfig, Spawner};
use crate::plan::{self, ns, FW_INSIDE_IF as IN, FW_OUTSIDE_IF};
use crate::quic_censor;
use crate::sys::{self, Result};

/// One thing the censor does for a condition. The catalogue
/// ([`plan::catalogue`]) lists each condition's rules next to its entry;
/// [`apply`] installs them in the firewall namespace, condition by
/// condition. A condition's rules work without any other condition's: a
/// rule two conditions need is listed by both, and installed once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Inside DNS queries (UDP) naming `name` are mirrored to the injector
    /// (TEE) and held back; the injector answers `answer` (an address, or
    /// `nxdomain`). With `replay` it re-emits the genuine query after the
    /// delay (injection: two answers); without, the resolver never sees
    /// the query (hijack).
    Inject {
        name: &'static str,
        answer: &'static str,
        replay: bool,
    },
    /// `iptables -t <table> -A <chain> -i <iface> <args>`.
    Ipt {
        table: &'static str,
        chain: &'static str,
        iface: &'static str,
        args: Vec<String>,
    },
    /// `tc <args>`.
    Tc(Vec<String>),
    /// `sysctl -qw <setting>`, best effort (a kernel may lack it).
    Sysctl(&'static str),
}

impl Rule {
    /// The same iptables rule with `more` arguments appended (a rule
    /// spelled in pieces).
    pub fn then(self, more: &[&str]) -> Rule {
        match self {
            Rule::Ipt {
                table,
                chain,
                iface,
                mut args,
            } => {
                args.extend(strings(more));
                Rule::Ipt {
                    table,
                    chain,
                    iface,
                    args,
                }
            }
            other => other,
        }
    }
}

/// What a string rule looks for in a packet.
#[derive(Clone, Copy, Debug)]
pub enum Needle<'a> {
    /// These bytes, case-sensitive.
    Exact(&'a str),
    /// These bytes, case-insensitive.
    Icase(&'a str),
    /// A DNS name in wire format, case-insensitive.
    Qname(&'a str),
}

/// The REJECT of a TCP segment with a reset.
pub const RESET: &[&str] = &["-j", "REJECT", "--reject-with", "tcp-reset"];
/// The DROP of a packet.
pub const DROP: &[&str] = &["-j", "DROP"];

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// A FORWARD rule for inside traffic (`args` follow `-i fw-in`).
pub fn forward(args: &[&str]) -> Rule {
    Rule::Ipt {
        table: "filter",
        chain: "FORWARD",
        iface: IN,
        args: strings(args),
    }
}

/// Every inside packet to `ip` dropped.
pub fn drop_all(ip: &str) -> Rule {
    forward(&["-d", ip, "-j", "DROP"])
}

/// The match of a packet of `proto` to `port` (of `dst`, or any address)
/// carrying `needle`.
fn string_match(dst: Option<&str>, proto: &str, port: &str, needle: Needle<'_>) -> Vec<String> {
    let mut m = Vec::new();
    if let Some(ip) = dst {
        m.extend(strings(&["-d", ip]));
    }
    m.extend(strings(&["-p", proto, "--dport", port]));
    m.extend(strings(&["-m", "string", "--algo", "bm"]));
    match needle {
        Needle::Exact(s) => m.extend(strings(&["--string", s])),
        Needle::Icase(s) => m.extend(strings(&["--icase", "--string", s])),
        Needle::Qname(name) => m.extend(["--icase".into(), "--hex-string".into(), qname_hex(name)]),
    }
    m
}

/// A FORWARD rule for inside TCP to `port` (of `dst`, or any address)
/// carrying `needle`: `then` (e.g. [`RESET`]) is what happens to it.
pub fn tcp_string(dst: Option<&str>, port: &str, needle: Needle<'_>, then: &[&str]) -> Rule {
    let mut args = string_match(dst, "tcp", port, needle);
    args.extend(strings(then));
    Rule::Ipt {
        table: "filter",
        chain: "FORWARD",
        iface: IN,
        args,
    }
}

/// The injector answers `ip` for `name` and replays the genuine query.
pub fn injection(name: &'static str, ip: &'static str) -> Rule {
    Rule::Inject {
        name,
        answer: ip,
        replay: true,
    }
}

/// The injector alone answers `answer` (an address or `nxdomain`) for
/// `name`.
pub fn hijack(name: &'static str, answer: &'static str) -> Rule {
    Rule::Inject {
        name,
        answer,
        replay: false,
    }
}

/// Inside TCP to `ip:port` goes to `to` (`ip:port` of another server, the
/// censor's).
pub fn dnat(ip: &str, port: &str, to: &str) -> Rule {
    Rule::Ipt {
        table: "nat",
        chain: "PREROUTING",
        iface: IN,
        args: strings(&[
            "-d",
            ip,
            "-p",
            "tcp",
            "--dport",
            port,
            "-j",
            "DNAT",
            "--to-destination",
            to,
        ]),
    }
}

/// The CONTROL's (outside segment's) DNS queries for `name` dropped: a
/// control-side failure, not censorship.
pub fn control_dns_drop(name: &str) -> Rule {
    let mut args = string_match(None, "udp", "53", Needle::Qname(name));
    args.extend(strings(DROP));
    Rule::Ipt {
        table: "filter",
        chain: "FORWARD",
        iface: FW_OUTSIDE_IF,
        args,
    }
}

/// What leaves the firewall toward the inside segment from `src`'s ports
/// goes through an htb class of `rate` per port (so fetches from two
/// ports are not slowed by each other); all other traffic is
/// unclassified (htb `default 0`: sent directly, unshaped). The control's
/// path (fw-out) has no qdisc.
pub fn throttle(src: &str, ports: &[&str], rate: &str) -> Vec<Rule> {
    let tc = |args: &[&str]| Rule::Tc(strings(args));
    let mut rules = vec![tc(&[
        "qdisc", "add", "dev", IN, "root", "handle", "1:", "htb", "default", "0",
    ])];
    let src = format!("{src}/32");
    for (i, port) in ports.iter().enumerate() {
        let class = format!("1:{}", 30 + i);
        rules.push(tc(&[
            "class", "add", "dev", IN, "parent", "1:", "classid", &class, "htb", "rate", rate,
            "ceil", rate,
        ]));
        rules.push(tc(&[
            "filter", "add", "dev", IN, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
            "match", "ip", "src", &src, "match", "ip", "sport", port, "0xffff", "flowid", &class,
        ]));
    }
    rules
}

/// Every rule of the catalogue, in catalogue order; a rule an earlier
/// condition already listed is left out (one condition may repeat a rule
/// on purpose: 11's connmark drop stands before and after its trigger).
fn table(residual_window_secs: u32) -> Vec<Rule> {
    let mut rules: Vec<Rule> = Vec::new();
    for c in plan::catalogue(residual_window_secs) {
        let earlier = rules.len();
        for rule in c.censor {
            if !rules[..earlier].contains(&rule) {
                rules.push(rule);
            }
        }
    }
    rules
}

/// Names the DNS injector handles, and how (its `--rule` arguments), from
/// the catalogue's [`Rule::Inject`] rules.
pub fn injector_rules() -> Vec<String> {
    table(1)
        .into_iter()
        .filter_map(|r| match r {
            Rule::Inject {
                name,
                answer,
                replay,
            } => Some(format!(
                "{name}={answer}{}",
                if replay { ",replay" } else { "" }
            )),
            _ => None,
        })
        .collect()
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

/// `iptables -w -t <table> <op> <chain> -i <iface> <args>`: `op` is `-A`
/// (append) or `-D` (delete the rule with exactly this spec).
fn ipt_argv(op: &str, table: &str, chain: &str, iface: &str, args: &[String]) -> Vec<String> {
    let mut c = strings(&["iptables", "-w", "-t", table, op, chain, "-i", iface]);
    c.extend_from_slice(args);
    c
}

/// The commands that install `rule` in the firewall namespace (argv each).
fn commands(rule: &Rule) -> Vec<Vec<String>> {
    let ipt = |table: &str, chain: &str, iface: &str, args: &[String]| {
        ipt_argv("-A", table, chain, iface, args)
    };
    match rule {
        Rule::Inject { name, .. } => {
            let m = string_match(None, "udp", "53", Needle::Qname(name));
            let mut tee = m.clone();
            tee.extend(strings(&["-j", "TEE", "--gateway", plan::INJECTOR_IP]));
            let mut hold = m;
            hold.extend(strings(DROP));
            vec![
                ipt("mangle", "PREROUTING", IN, &tee),
                ipt("filter", "FORWARD", IN, &hold),
            ]
        }
        Rule::Ipt {
            table,
            chain,
            iface,
            args,
        } => vec![ipt(table, chain, iface, args)],
        Rule::Tc(args) => {
            let mut c = strings(&["tc"]);
            c.extend_from_slice(args);
            vec![c]
        }
        Rule::Sysctl(s) => vec![strings(&["sysctl", "-qw", s])],
    }
}

/// Installs every condition's rules in the firewall namespace. 13 (down)
/// is a route, set with the topology; conditions without rules (14, clean;
/// 17-24, broken for everyone by their servers and records; 39-43 and 48,
/// redirects to other conditions' targets; 49, the site's own doing) have
/// none.
pub fn apply(cfg: &LabConfig) -> Result<()> {
    let fw = ns(&cfg.prefix, "fw");
    for rule in table(cfg.residual_window_secs) {
        for cmd in commands(&rule) {
            let argv: Vec<&str> = cmd.iter().map(String::as_str).collect();
            let done = sys::ns_run(&fw, &argv);
            if !matches!(rule, Rule::Sysctl(_)) {
                done?;
            }
        }
    }
    Ok(())
}

/// Switches one iptables rule on in `{prefix}-fw` while the lab runs (a
/// censor that starts blocking in the middle of a campaign). Only
/// [`Rule::Ipt`]: the injector's names are fixed when it starts, and a
/// shaper or sysctl has no single rule to take back.
pub fn add(prefix: &str, rule: &Rule) -> Result<()> {
    switch(prefix, rule, "-A")
}

/// Switches off a rule [`add`] switched on (`iptables -D` with the same
/// spec; fails when no such rule is installed).
pub fn remove(prefix: &str, rule: &Rule) -> Result<()> {
    switch(prefix, rule, "-D")
}

fn switch(prefix: &str, rule: &Rule, op: &str) -> Result<()> {
    let Rule::Ipt {
        table,
        chain,
        iface,
        args,
    } = rule
    else {
        return Err(sys::LabError::Precondition(format!(
            "only iptables rules can be switched while the lab runs, not {rule:?}"
        )));
    };
    let argv = ipt_argv(op, table, chain, iface, args);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    sys::ns_run(&ns(prefix, "fw"), &argv).map(|_| ())
}

/// The u32 match of a WireGuard handshake initiation (condition 15).
pub const WIREGUARD_INITIATION_U32: &str = "0>>22&0x3C@4>>16=156&&0>>22&0x3C@8=0x01000000";

/// Starts the censor's own processes, recorded so `down` stops them: the
/// DNS injector (conditions 1-3) in `{prefix}-inj` and the QUIC SNI censor
/// (condition 9) in `{prefix}-fw`.
pub fn start(cfg: &LabConfig, exe: &str, sp: &mut Spawner<'_>) -> Result<()> {
    let mut args: Vec<String> = vec![
        exe.to_string(),
        "dns-injector".into(),
        "--replay-delay-ms".into(),
        cfg.injection_delay_ms.to_string(),
    ];
    for r in injector_rules() {
        args.push("--rule".into());
        args.push(r);
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    sp.spawn("dns-injector", &ns(&cfg.prefix, "inj"), &argv)?;

    let queue = quic_censor::LAB_QUEUE.to_string();
    let window = cfg.residual_window_secs.max(1).to_string();
    sp.spawn(
        "quic-censor",
        &ns(&cfg.prefix, "fw"),
        &[
            exe,
            "quic-censor",
            "--queue",
            &queue,
            "--keyword",
            plan::SNI_KEYWORD,
            "--residual-window-secs",
            &window,
        ],
    )?;
    Ok(())
}

/// Whether the QUIC censor has bound its queue in `{prefix}-fw` (the
/// kernel lists bound queues, first field the queue number).
pub fn quic_censor_bound(prefix: &str) -> bool {
    let q = quic_censor::LAB_QUEUE.to_string();
    sys::ns_run(
        &ns(prefix, "fw"),
        &["cat", "/proc/net/netfilter/nfnetlink_queue"],
    )
    .map(|t| {
        t.lines()
            .any(|l| l.split_whitespace().next() == Some(q.as_str()))
    })
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_is_bound_to_an_interface_and_only_the_control_drops_use_fw_out() {
        let all: Vec<Vec<String>> = table(30).iter().flat_map(commands).collect();
        assert!(all.len() > 30, "{} commands", all.len());
        for c in all.iter().filter(|c| c[0] == "iptables") {
            let i = c.iter().position(|a| a == "-i").expect("-i");
            let out = c[i + 1] == FW_OUTSIDE_IF;
            assert!(c[i + 1] == IN || out, "{c:?}");
            let control = [
                plan::CONTROL_DNSFAIL_NAME,
                plan::CONTROL_DNSFAIL_BLACKHOLED_NAME,
            ]
            .map(qname_hex);
            assert_eq!(out, control.iter().any(|h| c.contains(h)), "{c:?}");
        }
    }

    #[test]
    fn the_rules_sit_with_their_conditions() {
        let cat = plan::catalogue(30);
        let of = |n: u32| -> Vec<Rule> {
            cat.iter()
                .filter(|c| c.number == n)
                .flat_map(|c| c.censor.clone())
                .collect()
        };
        assert_eq!(of(6), vec![drop_all(plan::BLACKHOLE_IP)]);
        assert_eq!(of(3), vec![hijack(plan::NXDOMAIN_NAME, "nxdomain")]);
        assert!(of(14).is_empty() && of(13).is_empty());
        assert_eq!(
            of(30).len(),
            5,
            "a qdisc, and a class and a filter per port"
        );
        // 46 lists 34's DNAT too; it is installed once.
        let proxy = dnat(plan::PROXY_IP, "443", &format!("{}:443", plan::CLEAN_IP));
        assert!(of(34).contains(&proxy) && of(46).contains(&proxy));
        assert_eq!(table(30).iter().filter(|r| **r == proxy).count(), 1);
        // 11 repeats its connmark drop on purpose; both stay.
        let drop11 = forward(&["-d", plan::ENCRYPTED_IP, "-p", "tcp", "--dport", "8443"])
            .then(&["-m", "connmark", "--mark", "0x1/0x1", "-j", "DROP"]);
        assert_eq!(table(30).iter().filter(|r| **r == drop11).count(), 2);
        // The residual window reaches condition 11's rules.
        let window = |w: u32| {
            let cat = plan::catalogue(w);
            let c = cat.iter().find(|c| c.number == 11).expect("11");
            format!("{:?}", c.censor)
        };
        assert!(window(16).contains("\"16\"") && window(180).contains("\"180\""));
    }

    #[test]
    fn only_iptables_rules_switch_at_runtime() {
        let err = add("vlx", &hijack("x.lab.example", "nxdomain")).unwrap_err();
        assert!(err.to_string().contains("only iptables rules"), "{err}");
        let rule = forward(&["-d", plan::CLEAN_IP]).then(RESET);
        let Rule::Ipt {
            table,
            chain,
            iface,
            args,
        } = &rule
        else {
            unreachable!()
        };
        let on = ipt_argv("-A", table, chain, iface, args);
        let off = ipt_argv("-D", table, chain, iface, args);
        assert_eq!(on, commands(&rule)[0]);
        assert_eq!(on[4], "-A");
        assert_eq!(off[4], "-D");
        assert_eq!(on[5..], off[5..]);
    }

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
