//! The target servers: nginx (HTTP/HTTPS vhosts and the block page),
//! dnsmasq (authoritative for `lab.example`), two openvpn servers (UDP and
//! TCP 1194), a tor relay that never leaves the lab, this crate's own QUIC
//! and TCP echo servers and its boringtun WireGuard peer; plus the censor's
//! processes (`censor::start`: DNS injector, QUIC SNI censor).
//! Configs and state live under the lab's state dir.

use std::path::Path;
use std::time::Duration;

use crate::censor;
use crate::lab::{wait_until, LabConfig, Spawner, State};
use crate::pki::Pki;
use crate::plan::{self, ns};
use crate::sys::{self, LabError, Result};

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// A site's page: some paragraphs of content, as real sites carry far more
/// than a censor's one-line block page (the verdict rules compare body
/// sizes, OONI's body proportion).
fn site_page(title: &str, body: &str) -> String {
    let content = format!("<p>{body}</p>").repeat(40);
    page(title, &content)
}

fn page(title: &str, body: &str) -> String {
    // nginx `return` text: double quotes escaped for the config string.
    format!("<!doctype html><html><head><title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>\n")
        .replace('"', "\\\"")
}

/// nginx.conf: every web target answers on :80 and :443 with three virtual
/// hosts (default, blocked-site.example, clean-site.example); the block page
/// server has its own address.
pub fn nginx_conf(dir: &Path, pki: &Pki) -> String {
    let mut listen = String::new();
    let mut listen_default = String::new();
    for ip in plan::WEB_IPS {
        listen.push_str(&format!("    listen {ip}:80;\n    listen {ip}:443 ssl;\n"));
        listen_default.push_str(&format!(
            "    listen {ip}:80 default_server;\n    listen {ip}:443 ssl default_server;\n"
        ));
    }
    let bp = plan::BLOCKPAGE_IP;
    format!(
        r#"user root;
worker_processes 1;
daemon off;
pid {pid};
error_log {dir}/nginx-error.log notice;
events {{ worker_connections 512; }}
http {{
  access_log {dir}/nginx-access.log;
  default_type text/html;
  client_body_temp_path {dir}/nginx-tmp/body;
  proxy_temp_path {dir}/nginx-tmp/proxy;
  fastcgi_temp_path {dir}/nginx-tmp/fastcgi;
  uwsgi_temp_path {dir}/nginx-tmp/uwsgi;
  scgi_temp_path {dir}/nginx-tmp/scgi;
  ssl_certificate {cert};
  ssl_certificate_key {key};
  server {{
{listen_default}    server_name _;
    location / {{ return 200 "{default_page}"; }}
  }}
  server {{
{listen}    server_name {blocked} blocked-sni.lab.example blocked-host.lab.example;
    location / {{ return 200 "{blocked_page}"; }}
  }}
  server {{
{listen}    server_name {clean} clean.lab.example;
    location / {{ return 200 "{clean_page}"; }}
  }}
  server {{
    listen {bp}:80 default_server;
    listen {bp}:443 ssl default_server;
    server_name _;
    location / {{ return 403 "{block_page}"; }}
  }}
}}
"#,
        pid = p(&dir.join("nginx.pid")),
        dir = p(dir),
        cert = p(&pki.server_cert),
        key = p(&pki.server_key),
        blocked = plan::BLOCKED_SITE,
        clean = plan::CLEAN_SITE,
        default_page = page("Vantage lab target", "<p>A lab web server.</p>"),
        blocked_page = site_page(plan::BLOCKED_SITE, "The site some censors block."),
        clean_page = site_page(plan::CLEAN_SITE, "The site nobody blocks."),
        block_page = page(
            plan::BLOCKPAGE_TITLE,
            "<p>This site has been blocked by the lab censor.</p>"
        ),
    )
}

/// The tor relay's torrc: ORPort on its address, never publishing, and its
/// only directory authority (and no fallback directories) an address inside
/// the lab where nothing serves a directory, so it never even tries the
/// public network (the namespace has no route beyond the lab anyway).
pub fn torrc(dir: &Path) -> String {
    let ip = plan::TOR_IP;
    format!(
        "ORPort {ip}:{port}\nAddress {ip}\nNickname vantagelab\nContactInfo lab@lab.example\nPublishServerDescriptor 0\n\
         AssumeReachable 1\nExitRelay 0\nExitPolicy reject *:*\nSocksPort 0\nDirPort 0\n\
         ClientUseIPv6 0\nUseDefaultFallbackDirs 0\n\
         DirAuthority lab orport={port} no-v2 v3ident={zero} {ip}:9030 {zero}\n\
         DataDirectory {data}\nLog notice stderr\nRunAsDaemon 0\n",
        port = plan::TOR_PORT,
        data = p(&dir.join("tor-data")),
        zero = "0".repeat(40),
    )
}

/// Starts every server and the injector.
pub fn start(cfg: &LabConfig, pki: &Pki, sp: &mut Spawner<'_>) -> Result<()> {
    let dir = cfg.state_dir.as_path();
    let targets = ns(&cfg.prefix, "targets");
    let exe = std::env::current_exe().map_err(|source| LabError::Io {
        context: "cannot find the vantage-lab binary".into(),
        source,
    })?;
    let exe = p(&exe);

    // The censor's processes (DNS injector, QUIC SNI censor).
    censor::start(cfg, &exe, sp)?;

    // dnsmasq: authoritative-style answers for lab.example from host records.
    let mut args: Vec<String> = vec![
        "dnsmasq".into(),
        "--keep-in-foreground".into(),
        "--conf-file=/dev/null".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--no-poll".into(),
        "--bind-interfaces".into(),
        format!("--listen-address={}", plan::RESOLVER_IP),
        "--port=53".into(),
        "--pid-file=".into(),
        "--log-facility=-".into(),
        "--log-queries".into(),
        "--local-ttl=60".into(),
        "--local=/lab.example/".into(),
        "--local=/blocked-site.example/".into(),
        "--local=/clean-site.example/".into(),
    ];
    for (name, ip) in plan::DNS_RECORDS {
        args.push(format!("--host-record={name},{ip}"));
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    sp.spawn("dnsmasq", &targets, &argv)?;

    // nginx.
    sys::mkdir(&dir.join("nginx-tmp"))?;
    let conf = dir.join("nginx.conf");
    sys::write(&conf, nginx_conf(dir, pki))?;
    sp.spawn(
        "nginx",
        &targets,
        &[
            "nginx",
            "-e",
            &p(&dir.join("nginx-error.log")),
            "-p",
            &p(dir),
            "-c",
            &p(&conf),
        ],
    )?;

    // openvpn, TLS mode, UDP and TCP on 1194.
    for (name, proto, net) in [
        ("openvpn-udp", "udp", "10.198.0.0"),
        ("openvpn-tcp", "tcp-server", "10.199.0.0"),
    ] {
        sp.spawn(
            name,
            &targets,
            &[
                "openvpn",
                "--server",
                net,
                "255.255.255.0",
                "--topology",
                "subnet",
                "--dev",
                "tun",
                "--proto",
                proto,
                "--local",
                plan::OPENVPN_IP,
                "--port",
                "1194",
                "--ca",
                &p(&pki.ca_cert),
                "--cert",
                &p(&pki.server_cert),
                "--key",
                &p(&pki.server_key),
                "--dh",
                "none",
                "--verb",
                "3",
            ],
        )?;
    }

    // tor relay.
    let data = dir.join("tor-data");
    sys::mkdir(&data)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| LabError::Io {
                context: format!("cannot chmod {}", data.display()),
                source,
            },
        )?;
    }
    let rc = dir.join("torrc");
    sys::write(&rc, torrc(dir))?;
    sp.spawn(
        "tor",
        &targets,
        &["tor", "-f", &p(&rc), "--defaults-torrc", "/dev/null"],
    )?;

    // QUIC server (the QUIC target, the WireGuard target's pass, clean)
    // and TCP echo.
    let mut args: Vec<String> = vec![exe.clone(), "quic-server".into()];
    for ip in QUIC_IPS {
        args.push("--listen".into());
        args.push(format!("{ip}:443"));
    }
    args.extend([
        "--cert".into(),
        p(&pki.server_cert),
        "--key".into(),
        p(&pki.server_key),
    ]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    sp.spawn("quic-server", &targets, &argv)?;

    // WireGuard peer (boringtun), on the WireGuard target and the clean one.
    let mut args: Vec<String> = vec![exe.clone(), "wireguard-peer".into()];
    for ip in WIREGUARD_IPS {
        args.push("--listen".into());
        args.push(format!("{ip}:{}", plan::WIREGUARD_PORT));
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    sp.spawn("wireguard-peer", &targets, &argv)?;
    let echo_blocked = format!("{}:{}", plan::ENCRYPTED_IP, plan::ENCRYPTED_PORT);
    let echo_clean = format!("{}:{}", plan::CLEAN_IP, plan::ENCRYPTED_PORT);
    sp.spawn(
        "echo-server",
        &targets,
        &[
            &exe,
            "echo-server",
            "--listen",
            &echo_blocked,
            "--listen",
            &echo_clean,
        ],
    )?;
    Ok(())
}

/// Where the lab's QUIC server listens (UDP 443).
const QUIC_IPS: &[&str] = &[plan::QUIC_IP, plan::WIREGUARD_IP, plan::CLEAN_IP];
/// Where the lab's WireGuard peer listens.
const WIREGUARD_IPS: &[&str] = &[plan::WIREGUARD_IP, plan::CLEAN_IP];

/// Sockets that must be listening in the targets namespace: (proto, addr).
pub fn expected_listeners() -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("udp", format!("{}:53", plan::RESOLVER_IP)),
        ("udp", format!("{}:1194", plan::OPENVPN_IP)),
        ("tcp", format!("{}:1194", plan::OPENVPN_IP)),
        ("tcp", format!("{}:{}", plan::TOR_IP, plan::TOR_PORT)),
        (
            "tcp",
            format!("{}:{}", plan::ENCRYPTED_IP, plan::ENCRYPTED_PORT),
        ),
        ("tcp", format!("{}:80", plan::BLOCKPAGE_IP)),
    ];
    for ip in QUIC_IPS {
        v.push(("udp", format!("{ip}:443")));
    }
    for ip in WIREGUARD_IPS {
        v.push(("udp", format!("{ip}:{}", plan::WIREGUARD_PORT)));
    }
    for ip in plan::WEB_IPS {
        v.push(("tcp", format!("{ip}:80")));
        v.push(("tcp", format!("{ip}:443")));
    }
    v
}

/// Waits until every server listens and every process is still alive.
pub fn wait_ready(cfg: &LabConfig, st: &State) -> Result<()> {
    let targets = ns(&cfg.prefix, "targets");
    let want = expected_listeners();
    let mut missing: Vec<String> = Vec::new();
    let ok = wait_until(Duration::from_secs(30), || {
        let tcp = sys::ns_run(&targets, &["ss", "-H", "-ltn"]).unwrap_or_default();
        let udp = sys::ns_run(&targets, &["ss", "-H", "-lun"]).unwrap_or_default();
        missing = want
            .iter()
            .filter(|(proto, addr)| {
                let table = if *proto == "tcp" { &tcp } else { &udp };
                let needle = format!(" {addr} ");
                !table.lines().any(|l| format!("{l} ").contains(&needle))
            })
            .map(|(proto, addr)| format!("{proto}/{addr}"))
            .collect();
        let dead: Vec<String> = st
            .processes
            .iter()
            .filter(|p| !sys::pid_alive(p.pid))
            .map(|p| format!("{} exited (see {})", p.name, p.log.display()))
            .collect();
        missing.extend(dead);
        if !censor::quic_censor_bound(&cfg.prefix) {
            missing.push("the QUIC censor's nfqueue".into());
        }
        missing.is_empty()
    });
    if ok {
        Ok(())
    } else {
        Err(LabError::NotReady(format!(
            "lab servers not ready after 30 s: {}",
            missing.join(", ")
        )))
    }
}
