//! Network-namespace lab for the core-probe integration tests.
//!
//! Each lab is `<id>-in` (client) <-> `<id>-fw` (router with iptables) <->
//! `<id>-srv` (servers), addresses from 198.18.<base>.0/24 (client side) and
//! 198.18.<base+1>.0/24 (server side); ids start with `vp1` and bases stay in
//! 198.18.1.0 - 198.18.63.255. No namespace has a default route. Everything
//! (namespaces, their processes) is removed on drop and before building, so
//! a crashed run leaves nothing that breaks the next one.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vantage_proto::v1::Measurement;

/// Tools the lab needs.
const TOOLS: &[&str] = &["ip", "iptables", "nginx", "dnsmasq", "ss"];

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
pub fn lab_ready(test: &str) -> bool {
    let mut missing: Vec<String> = Vec::new();
    if !is_root() {
        missing.push("root privileges".into());
    }
    for t in TOOLS {
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
        "{test}: the namespace lab needs {} (Debian: iproute2 iptables nginx-light dnsmasq-base; run as root), \
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
        assert!(id.starts_with("vp1"), "lab ids start with vp1");
        assert!((1..=62).contains(&base), "bases stay in 198.18.1-63");
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
                "198.18.0.0/15",
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
                "198.18.0.0/15",
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

    /// Adds an injector namespace `<id>-inj` behind the firewall on
    /// 198.18.<base+2>/24 (fw side .1, injector .2).
    pub fn add_injector(&mut self) {
        self.add_ns("inj");
        let (fw, inj) = (self.ns("fw"), self.ns("inj"));
        let b = self.base + 2;
        run(&[
            "ip", "link", "add", "fw2", "netns", &fw, "type", "veth", "peer", "name", "inj0",
            "netns", &inj,
        ]);
        self.addr("fw", "fw2", &format!("198.18.{b}.1/24"));
        self.addr("inj", "inj0", &format!("198.18.{b}.2/24"));
        self.exec(
            "inj",
            &[
                "ip",
                "route",
                "add",
                "198.18.0.0/15",
                "via",
                &format!("198.18.{b}.1"),
            ],
        );
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
        self.probe_args(input_json, timeout, &[], &[])
    }

    /// [`Lab::probe`] with extra `vantage-agent probe` arguments and
    /// environment variables.
    pub fn probe_args(
        &self,
        input_json: &str,
        timeout: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Measurement {
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
            ])
            .args(extra)
            .arg(input_json)
            .envs(env.iter().copied())
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

    /// Writes an nginx config serving `www` (80, and 443 when a cert is
    /// given, plus `extra` server blocks) and starts nginx in the server
    /// namespace.
    pub fn start_nginx(&mut self, www: &[(&str, &str)], tls: Option<(&str, &str)>, extra: &str) {
        let d = self.dir.path().to_path_buf();
        let root = d.join("www");
        std::fs::create_dir_all(&root).expect("www dir");
        for (name, body) in www {
            std::fs::write(root.join(name), body).expect("write page");
        }
        let tls_block = match tls {
            Some((cert, key)) => {
                std::fs::write(d.join("cert.pem"), cert).expect("cert");
                std::fs::write(d.join("key.pem"), key).expect("key");
                format!(
                    "server {{ listen 443 ssl; server_name _; ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate {d}/cert.pem; ssl_certificate_key {d}/key.pem; root {d}/www; }}",
                    d = d.display()
                )
            }
            None => String::new(),
        };
        let conf = format!(
            "daemon off; master_process off; worker_processes 1; user root; pid {d}/nginx.pid; error_log {d}/nginx-error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; default_type text/html;\n\
               client_body_temp_path {d}/t1; proxy_temp_path {d}/t2; fastcgi_temp_path {d}/t3; uwsgi_temp_path {d}/t4; scgi_temp_path {d}/t5;\n\
               server {{ listen 80; server_name _; root {d}/www;\n\
                 location = /redir {{ return 302 /final.html; }}\n\
                 location = /redir-abs {{ return 302 http://{srv}/final.html; }}\n\
                 location = /loop {{ return 302 /loop; }}\n\
                 location ~ ^/hop/([0-9]+)$ {{ return 302 /hop/x$1; }}\n\
                 location ~ ^/hop/x([0-9]+)$ {{ return 302 /hop/xx$1; }}\n\
                 location ~ ^/hop/(x+)([0-9]+)$ {{ return 302 /hop/$1x$2; }} }}\n\
               {tls_block}\n{extra}\n}}\n",
            d = d.display(),
            srv = self.srv_ip(),
        );
        let path = d.join("nginx.conf");
        std::fs::write(&path, conf).expect("nginx.conf");
        let p = path.display().to_string();
        self.spawn(
            "srv",
            &[
                "nginx",
                "-c",
                &p,
                "-e",
                &format!("{}/nginx-error.log", d.display()),
            ],
        );
        self.wait_listen("srv", "tcp", 80);
        if tls.is_some() {
            self.wait_listen("srv", "tcp", 443);
        }
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

/// A CA and a leaf it signed for `names`: (leaf + CA chain PEM, key PEM,
/// CA PEM).
pub fn ca_signed(names: &[&str]) -> (String, String, String) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Vantage test CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).expect("ca");
    let leaf =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("leaf params");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = leaf.signed_by(&key, &ca).expect("leaf");
    (
        format!("{}{}", cert.pem(), ca.pem()),
        key.serialize_pem(),
        ca.pem(),
    )
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
