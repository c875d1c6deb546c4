//! Network-namespace lab for the tunnel-probe integration tests (openvpn,
//! tor, quic, encrypted, wireguard).
//!
//! Each lab is `<id>-in` (client) <-> `<id>-fw` (router with iptables) <->
//! `<id>-srv` (servers), addresses from 198.18.<base>.0/24 (client side) and
//! 198.18.<base+1>.0/24 (server side); ids start with `vp2` and bases stay in
//! 198.18.64.0 - 198.18.127.255. No namespace has a default route. Everything
//! (namespaces, their processes) is removed on drop and before building, so
//! a crashed run leaves nothing that breaks the next one.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vantage_proto::v1::Measurement;

/// Tools the lab needs.
const TOOLS: &[&str] = &["ip", "iptables", "ss"];

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Checks the lab preconditions. Missing ones fail the test with a message
/// naming them, unless VANTAGE_SKIP_LAB=1, which prints a SKIPPED line and
/// returns false.
pub fn lab_ready(test: &str, extra_tools: &[&str]) -> bool {
    let mut missing: Vec<String> = Vec::new();
    if !is_root() {
        missing.push("root privileges".into());
    }
    for t in TOOLS.iter().chain(extra_tools) {
        if find_tool(t).is_none() {
            missing.push(format!("`{t}`"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    if std::env::var("VANTAGE_SKIP_LAB").as_deref() == Ok("1") {
        {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED (VANTAGE_SKIP_LAB=1): {test} (missing: {})",
                missing.join(", ")
            );
        }
        return false;
    }
    panic!(
        "{test}: the namespace lab needs {} (Debian: iproute2 iptables openvpn tor openssl; run as root), \
         or set VANTAGE_SKIP_LAB=1 to skip",
        missing.join(", ")
    );
}

/// Runs a command; panics with its output when it fails.
pub fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command, ignoring failure.
fn try_run(args: &[&str]) {
    let _ = Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Kills every process in namespace `ns`, then deletes it.
fn destroy_ns(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            try_run(&["kill", "-9", pid]);
        }
    }
    try_run(&["ip", "netns", "del", ns]);
}

pub struct Lab {
    pub id: String,
    pub base: u8,
    namespaces: Vec<String>,
    children: Vec<Child>,
    pub dir: tempfile::TempDir,
}

impl Lab {
    /// Builds `<id>-in`, `<id>-fw`, `<id>-srv` on 198.18.<base>/24 and
    /// 198.18.<base+1>/24.
    pub fn new(id: &str, base: u8) -> Lab {
        assert!(id.starts_with("vp2"), "lab ids start with vp2");
        assert!((64..=126).contains(&base), "bases stay in 198.18.64-127");
        for role in ["in", "fw", "srv", "inj"] {
            destroy_ns(&format!("{id}-{role}"));
        }
        let mut lab = Lab {
            id: id.to_string(),
            base,
            namespaces: Vec::new(),
            children: Vec::new(),
            dir: tempfile::tempdir().expect("tempdir"),
        };
        for role in ["in", "fw", "srv"] {
            lab.add_ns(role);
        }
        let (inn, fw, srv) = (lab.ns("in"), lab.ns("fw"), lab.ns("srv"));
        run(&[
            "ip", "link", "add", "in0", "netns", &inn, "type", "veth", "peer", "name", "fw0",
            "netns", &fw,
        ]);
        run(&[
            "ip", "link", "add", "fw1", "netns", &fw, "type", "veth", "peer", "name", "srv0",
            "netns", &srv,
        ]);
        lab.addr("in", "in0", &format!("{}/24", lab.client_ip()));
        lab.addr("fw", "fw0", &format!("198.18.{base}.1/24"));
        lab.addr("fw", "fw1", &format!("198.18.{}.1/24", base + 1));
        lab.addr("srv", "srv0", &format!("{}/24", lab.srv_ip()));
        lab.exec(
            "in",
            &[
                "ip",
                "route",
                "add",
                "198.18.64.0/18",
                "via",
                &format!("198.18.{base}.1"),
            ],
        );
        lab.exec(
            "srv",
            &[
                "ip",
                "route",
                "add",
                "198.18.64.0/18",
                "via",
                &format!("198.18.{}.1", base + 1),
            ],
        );
        lab.exec("fw", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        lab.exec("fw", &["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"]);
        lab.exec(
            "fw",
            &["sysctl", "-qw", "net.ipv4.conf.default.rp_filter=0"],
        );
        lab
    }

    fn add_ns(&mut self, role: &str) {
        let ns = self.ns(role);
        run(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
    }

    fn addr(&self, role: &str, dev: &str, cidr: &str) {
        let ns = self.ns(role);
        run(&["ip", "-n", &ns, "addr", "add", cidr, "dev", dev]);
        run(&["ip", "-n", &ns, "link", "set", dev, "up"]);
    }

    pub fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.id)
    }

    pub fn client_ip(&self) -> String {
        format!("198.18.{}.2", self.base)
    }

    pub fn srv_ip(&self) -> String {
        format!("198.18.{}.2", self.base + 1)
    }

    /// An address on the server side's /24.
    pub fn srv_net(&self, host: u8) -> String {
        format!("198.18.{}.{host}", self.base + 1)
    }

    /// Runs a command inside a namespace; panics when it fails.
    pub fn exec(&self, role: &str, args: &[&str]) -> String {
        let ns = self.ns(role);
        let mut full = vec!["ip", "netns", "exec", ns.as_str()];
        full.extend_from_slice(args);
        run(&full)
    }

    /// Adds an iptables rule in the firewall (`args` split on whitespace).
    pub fn fw(&self, args: &str) {
        let mut full = vec!["iptables", "-w"];
        full.extend(args.split_whitespace());
        self.exec("fw", &full);
    }

    /// Adds an iptables rule whose string match contains spaces.
    pub fn fw_args(&self, args: &[&str]) {
        let mut full = vec!["iptables", "-w"];
        full.extend_from_slice(args);
        self.exec("fw", &full);
    }

    /// Starts a long-running server inside a namespace; killed on drop.
    pub fn spawn(&mut self, role: &str, args: &[&str]) {
        let log = std::fs::File::create(
            self.dir
                .path()
                .join(format!("{role}-{}.log", self.children.len())),
        )
        .expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(role)])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {args:?}: {e}"));
        self.children.push(child);
    }

    /// Starts this very test binary inside `role`, running only the helper
    /// test `helper` with `VAR=value` set (the helper serves until killed).
    pub fn spawn_helper(&mut self, role: &str, helper: &str, var: &str, value: &str) {
        let exe = std::env::current_exe().expect("current test binary");
        let exe = exe.display().to_string();
        let assignment = format!("{var}={value}");
        self.spawn(
            role,
            &[
                "env",
                &assignment,
                &exe,
                "--exact",
                helper,
                "--nocapture",
                "--test-threads=1",
            ],
        );
    }

    /// Waits until a line containing `needle` shows up in a spawned
    /// process's log.
    pub fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let found = std::fs::read_dir(self.dir.path())
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .any(|e| {
                    std::fs::read_to_string(e.path())
                        .map(|t| t.contains(needle))
                        .unwrap_or(false)
                });
            if found {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "`{needle}` never showed up in the logs in {:?}",
            self.dir.path()
        );
    }

    /// Removes every rule from the firewall's FORWARD chain.
    pub fn fw_flush(&self) {
        self.exec("fw", &["iptables", "-w", "-F", "FORWARD"]);
    }

    /// Waits until something listens on `port` (`tcp` or `udp`) in `role`.
    pub fn wait_listen(&self, role: &str, proto: &str, port: u16) {
        let flag = if proto == "udp" { "-lun" } else { "-ltn" };
        let needle = format!(":{port} ");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let out = self.exec(role, &["ss", "-H", flag]);
            if out.lines().any(|l| l.contains(&needle)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{proto}/{port} never came up in {}: see logs in {:?}",
            self.ns(role),
            self.dir.path()
        );
    }

    /// Runs the real agent in the client namespace and parses its output.
    pub fn probe(&self, input_json: &str, timeout: &str) -> Measurement {
        let ns = self.ns("in");
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                env!("CARGO_BIN_EXE_vantage-agent"),
                "probe",
                "--allow-private-targets",
                "--timeout",
                timeout,
                input_json,
            ])
            .output()
            .expect("run vantage-agent");
        assert!(
            out.status.success(),
            "agent failed for {input_json}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad measurement JSON ({e}): {text}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            destroy_ns(ns);
        }
    }
}

/// A self-signed certificate for `names`: (cert PEM, key PEM, cert DER SHA-256 hex).
pub fn self_signed(names: &[&str]) -> (String, String, String) {
    use sha2::Digest;
    let ck =
        rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("rcgen");
    let fp = hex::encode(sha2::Sha256::digest(ck.cert.der()));
    (ck.cert.pem(), ck.signing_key.serialize_pem(), fp)
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
