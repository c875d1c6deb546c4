//! What the probe tests (`probes_core.rs`, `probes_tunnels.rs`) share: the
//! test kit's client <-> firewall <-> server lab ([`vantage_testkit::netns::Chain`])
//! with the real agent run in its client namespace, an nginx server,
//! certificates, and the per-kind result accessors.
//!
//! Core-probe labs have ids starting with `vp1` and bases in 198.18.1-63;
//! tunnel-probe labs `vp2` and 198.18.64-127. No namespace has a default
//! route.

#![allow(dead_code, unreachable_pub)]

use std::ops::{Deref, DerefMut};

use vantage_proto::v1::{Failure, Measurement};
use vantage_testkit::netns::Chain;

/// Tools every probe lab needs (a test adds its own).
const TOOLS: &[&str] = &["ip", "iptables", "ss"];

/// Checks root and the tools (the common ones plus `extra`); a missing one
/// fails the test naming it, unless VANTAGE_SKIP_LAB=1 (a SKIPPED line,
/// and false).
pub fn lab_ready(test: &str, extra: &[&str]) -> bool {
    let tools: Vec<&str> = TOOLS.iter().chain(extra).copied().collect();
    vantage_testkit::netns::lab_ready(test, &tools)
}

/// The tools of the core-probe labs (servers: nginx, dnsmasq).
pub const CORE_TOOLS: &[&str] = &["nginx", "dnsmasq"];

/// A probe lab: a [`Chain`] plus the agent.
pub struct Lab(Chain);

impl Deref for Lab {
    type Target = Chain;
    fn deref(&self) -> &Chain {
        &self.0
    }
}

impl DerefMut for Lab {
    fn deref_mut(&mut self) -> &mut Chain {
        &mut self.0
    }
}

impl Lab {
    /// `vp1*` ids: bases 1-62, routes 198.18.0.0/15; `vp2*` ids: bases
    /// 64-126, routes 198.18.64.0/18.
    pub fn new(id: &str, base: u8) -> Lab {
        let net = if id.starts_with("vp1") {
            assert!((1..=62).contains(&base), "vp1 bases stay in 198.18.1-63");
            "198.18.0.0/15"
        } else {
            assert!(id.starts_with("vp2"), "lab ids start with vp1 or vp2");
            assert!(
                (64..=126).contains(&base),
                "vp2 bases stay in 198.18.64-127"
            );
            "198.18.64.0/18"
        };
        Lab(Chain::new(id, base, net))
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
        let text = vantage_testkit::netns::output_ok(
            self.client_command(env!("CARGO_BIN_EXE_vantage-agent"))
                .args(["probe", "--allow-private-targets", "--timeout", timeout])
                .args(extra)
                .arg(input_json)
                .envs(env.iter().copied()),
        );
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad measurement JSON ({e}): {text}"))
    }

    /// Resets (TCP RST) inside HTTP requests whose Host header is `host`.
    pub fn reset_host(&self, host: &str) {
        let needle = format!("Host: {host}");
        self.fw_args(&[
            "-A",
            "FORWARD",
            "-p",
            "tcp",
            "--dport",
            "80",
            "-m",
            "string",
            "--algo",
            "bm",
            "--string",
            &needle,
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ]);
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
        let err_log = format!("{}/nginx-error.log", d.display());
        self.spawn("srv", &["nginx", "-c", &p, "-e", &err_log]);
        self.wait_listen("srv", "tcp", 80);
        if tls.is_some() {
            self.wait_listen("srv", "tcp", 443);
        }
    }
}

/// Asserts that `f` is the failure `failure` at `operation`.
pub fn assert_failure(f: &Option<Failure>, failure: &str, operation: &str) {
    let f = f
        .as_ref()
        .unwrap_or_else(|| panic!("expected {failure}/{operation}, got success"));
    assert_eq!(
        (f.failure.as_str(), f.operation.as_str()),
        (failure, operation)
    );
}

/// `fn name(m: Measurement) -> Type`: the measurement's result of one
/// kind, or a panic naming what came instead.
macro_rules! result_accessors {
    ($($name:ident: $variant:ident => $ty:ty;)*) => {$(
        fn $name(m: vantage_proto::v1::Measurement) -> $ty {
            match m.result {
                Some(vantage_proto::v1::measurement::Result::$variant(r)) => r,
                other => panic!(concat!("expected a ", stringify!($name), " result, got {:?}"), other),
            }
        }
    )*};
}

/// A self-signed certificate for `names`: (cert PEM, key PEM, cert DER SHA-256 hex).
pub fn self_signed(names: &[&str]) -> (String, String, String) {
    let ck =
        rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("rcgen");
    let fp = sha256_hex(ck.cert.der());
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
