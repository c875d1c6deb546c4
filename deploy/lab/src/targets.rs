//! The target servers: nginx (HTTP/HTTPS vhosts, the block pages, the
//! censor's TLS interception server, the broken-for-everyone sites and
//! the app store, `crate::store`),
//! dnsmasq (authoritative for `lab.example`), two openvpn servers (UDP and
//! TCP 1194), a tor relay that never leaves the lab, this crate's own QUIC,
//! TCP echo and silent servers and its boringtun WireGuard peer; plus the censor's
//! processes (`censor::start`: DNS injector, QUIC SNI censor).
//! Configs and state live under the lab's state dir.

use std::path::Path;
use std::time::Duration;

use crate::lab::{wait_until, LabConfig, Spawner, State};
use crate::pki::Pki;
use crate::plan::{self, ns};
use crate::sys::{self, LabError, Result};
use crate::{censor, store};

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
    esc(&raw_page(title, body))
}

/// nginx `return` text: double quotes escaped for the config string.
fn esc(text: &str) -> String {
    text.replace('"', "\\\"")
}

fn raw_page(title: &str, body: &str) -> String {
    format!("<!doctype html><html><head><title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>\n")
}

fn raw_site_page(title: &str, body: &str) -> String {
    raw_page(title, &format!("<p>{body}</p>").repeat(40))
}

/// A censor's page made to look like the real one by size: `body` and then
/// filler paragraphs until it is 95-100 % of `like_len` bytes (conditions
/// 28 and 29: the body-length comparison alone cannot tell them apart).
fn page_sized_like(title: &str, body: &str, like_len: usize) -> String {
    let filler = "<p>This content is not available on your network.</p>";
    let mut content = body.to_string();
    let target = like_len * 97 / 100;
    while raw_page(title, &content).len() + filler.len() <= target {
        content.push_str(filler);
    }
    raw_page(title, &content)
}

/// A real site's page (titled by its name) and the censor's stand-in for
/// it, `fake_body` under `fake_title`, sized like the real one.
fn page_and_stand_in(
    name: &str,
    about: &str,
    fake_title: &str,
    fake_body: &str,
) -> (String, String) {
    let real = raw_site_page(name, about);
    let fake = page_sized_like(fake_title, fake_body, real.len());
    (real, fake)
}

/// The real pages of conditions 28 and 29, and the censor's stand-ins.
pub fn lookalike_pages() -> (String, String) {
    page_and_stand_in(
        plan::LOOKALIKE_NAME,
        "A site whose look-alike the censor serves.",
        plan::LOOKALIKE_BLOCKPAGE_TITLE,
        "<p>The page you asked for is unavailable.</p>",
    )
}

pub fn fingerprint_pages() -> (String, String) {
    // Iran's national block page is an iframe to 10.10.34.34 (OONI
    // fingerprint ooni.ir_0); here it sits under the real page's title.
    let iframe = "<iframe src=\"http://10.10.34.34?type=Invalid Site&policy=MainPolicy \" \
                  style=\"width: 100%; height: 100%\" scrolling=\"no\" marginwidth=\"0\" \
                  marginheight=\"0\" frameborder=\"0\" vspace=\"0\" hspace=\"0\"></iframe>";
    page_and_stand_in(
        plan::FINGERPRINT_NAME,
        "A site the censor swaps for its own page.",
        plan::FINGERPRINT_NAME,
        iframe,
    )
}

/// Condition 49's pages: the site's own, and the challenge its server
/// gives the inside segment (a 403 with another title and a far shorter
/// body, like Cloudflare's "Just a moment..." interstitial).
pub fn captcha_pages() -> (String, String) {
    let real = raw_site_page(
        plan::CAPTCHA_NAME,
        "A site whose server challenges some of its visitors.",
    );
    let challenge = raw_page(
        plan::CAPTCHA_TITLE,
        "<p>Checking if the site connection is secure. captcha.lab.example needs to review \
         the security of your connection before proceeding.</p>\
         <noscript>Enable JavaScript and cookies to continue.</noscript>",
    );
    (real, challenge)
}

/// `listen` lines for one address, HTTP and HTTPS.
fn listen_on(ip: &str) -> String {
    format!("    listen {ip}:80;\n    listen {ip}:443 ssl;\n")
}

/// nginx server blocks of the issue-18 conditions (16-21, 28-30, 34-36,
/// 39-43, 48, 49).
fn qa_servers(dir: &Path, pki: &Pki) -> String {
    let mut s = String::new();
    // 16: the real site, and the censor's interception server: TLS with
    // the censor's certificate, proxied to the real site (a transparent
    // interception: same page, another certificate).
    s.push_str(&format!(
        "  server {{\n{listen}    server_name {name};\n    location / {{ return 200 \"{page}\"; }}\n  }}\n",
        listen = listen_on(plan::MITM_IP),
        name = plan::MITM_NAME,
        page = site_page(plan::MITM_NAME, "A site the censor intercepts."),
    ));
    s.push_str(&format!(
        "  server {{\n    listen {ip}:443 ssl default_server;\n    server_name _;\n    \
         ssl_certificate {cert};\n    ssl_certificate_key {key};\n    \
         location / {{\n      proxy_pass https://{real};\n      proxy_set_header Host $host;\n      \
         proxy_ssl_server_name on;\n      proxy_ssl_name $host;\n    }}\n  }}\n",
        ip = plan::INTERCEPT_IP,
        cert = p(&pki.censor.cert),
        key = p(&pki.censor.key),
        real = plan::MITM_IP,
    ));
    // 17-19: broken certificates, chosen by SNI on one address.
    for (name, files) in [
        (plan::EXPIRED_NAME, &pki.expired),
        (plan::WRONG_HOST_NAME, &pki.wrong_host),
        (plan::UNTRUSTED_NAME, &pki.untrusted),
    ] {
        s.push_str(&format!(
            "  server {{\n    listen {ip}:443 ssl;\n    server_name {name};\n    \
             ssl_certificate {cert};\n    ssl_certificate_key {key};\n    \
             location / {{ return 200 \"{page}\"; }}\n  }}\n",
            ip = plan::BROKEN_IP,
            cert = p(&files.cert),
            key = p(&files.key),
            page = site_page(name, "A site with a broken certificate."),
        ));
    }
    // 20: a redirect to itself.
    s.push_str(&format!(
        "  server {{\n    listen {ip}:80;\n    listen {ip}:443 ssl;\n    server_name {name};\n    location / {{ return 302 /; }}\n  }}\n",
        ip = plan::BROKEN_IP,
        name = plan::REDIRECT_LOOP_NAME,
    ));
    // 21: /r/N -> /r/N-1 ... -> /r/0, the page.
    let mut hops = String::new();
    for n in (1..=plan::REDIRECT_HOPS).rev() {
        hops.push_str(&format!(
            "    location = /r/{n} {{ return 302 /r/{}; }}\n",
            n - 1
        ));
    }
    s.push_str(&format!(
        "  server {{\n    listen {ip}:80;\n    listen {ip}:443 ssl;\n    server_name {name};\n{hops}    \
         location = /r/0 {{ return 200 \"{page}\"; }}\n    location / {{ return 302 /r/{n}; }}\n  }}\n",
        ip = plan::BROKEN_IP,
        name = plan::REDIRECTS_NAME,
        page = site_page(plan::REDIRECTS_NAME, "The end of a long chain of redirects."),
        n = plan::REDIRECT_HOPS,
    ));
    // 36: redirects whose Location has no host.
    s.push_str(&format!(
        "  server {{\n    listen {ip}:80;\n    listen {ip}:443 ssl;\n    server_name {name};\n    \
         location / {{ return 302 $scheme://; }}\n  }}\n",
        ip = plan::BROKEN_IP,
        name = plan::BROKEN_REDIRECT_NAME,
    ));
    // 39-43, 48: redirects to names the censor interferes with.
    let mut to = String::new();
    for (path, url) in plan::REDIRECT_TARGETS {
        to.push_str(&format!("    location = {path} {{ return 302 {url}; }}\n"));
    }
    s.push_str(&format!(
        "  server {{\n    listen {ip}:80;\n    listen {ip}:443 ssl;\n    server_name {name};\n{to}  }}\n",
        ip = plan::BROKEN_IP,
        name = plan::REDIRECT_TO_NAME,
    ));
    // 34: the censor's transparent proxy (HTTP; HTTPS is a DNAT).
    s.push_str(&format!(
        "  server {{\n    listen {ip}:80 default_server;\n    server_name _;\n    \
         location / {{\n      proxy_pass http://{real};\n      proxy_set_header Host $host;\n    }}\n  }}\n",
        ip = plan::PROXY_IP,
        real = plan::CLEAN_IP,
    ));
    // 35: a file larger than the agents read.
    s.push_str(&format!(
        "  server {{\n{listen}    server_name {name};\n    root {www};\n    \
         location = {path} {{ default_type application/octet-stream; }}\n  }}\n",
        listen = listen_on(plan::CLEAN_IP),
        name = plan::LARGE_NAME,
        www = p(&dir.join("www")),
        path = plan::LARGE_PATH,
    ));
    // 28, 29: the real sites and the censor's stand-ins (status 200).
    for (name, ip, bp_ip, (real, fake)) in [
        (
            plan::LOOKALIKE_NAME,
            plan::LOOKALIKE_IP,
            plan::LOOKALIKE_BLOCKPAGE_IP,
            lookalike_pages(),
        ),
        (
            plan::FINGERPRINT_NAME,
            plan::FINGERPRINT_IP,
            plan::FINGERPRINT_BLOCKPAGE_IP,
            fingerprint_pages(),
        ),
    ] {
        s.push_str(&format!(
            "  server {{\n{listen}    server_name {name};\n    location / {{ return 200 \"{real}\"; }}\n  }}\n",
            listen = listen_on(ip),
            real = esc(&real),
        ));
        s.push_str(&format!(
            "  server {{\n    listen {bp_ip}:80 default_server;\n    server_name _;\n    \
             location / {{ return 200 \"{fake}\"; }}\n  }}\n",
            fake = esc(&fake),
        ));
    }
    // 30: a big static file.
    s.push_str(&format!(
        "  server {{\n{listen}    server_name {name};\n    root {www};\n    \
         location = {path} {{ default_type application/octet-stream; }}\n    \
         location / {{ return 200 \"{page}\"; }}\n  }}\n",
        listen = listen_on(plan::THROTTLED_IP),
        name = plan::THROTTLED_NAME,
        www = p(&dir.join("www")),
        path = plan::THROTTLED_PATH,
        page = site_page(plan::THROTTLED_NAME, "A site the censor slows down."),
    ));
    // 49: server-side discrimination, no censor involved: the site's own
    // server answers clients of the inside segment (by source address,
    // nginx geo) with a 403 challenge, everyone else with its page.
    let (real, challenge) = captcha_pages();
    s.push_str(&format!(
        "  geo $vantage_lab_captcha {{\n    default 0;\n    {net} 1;\n  }}\n  \
         server {{\n{listen}    server_name {name};\n    location / {{\n      \
         if ($vantage_lab_captcha) {{ return 403 \"{challenge}\"; }}\n      \
         return 200 \"{real}\";\n    }}\n  }}\n",
        net = plan::CAPTCHA_SOURCE_NET,
        listen = listen_on(plan::CAPTCHA_IP),
        name = plan::CAPTCHA_NAME,
        challenge = esc(&challenge),
        real = esc(&real),
    ));
    s
}

/// The throttled file's bytes: incompressible-looking and deterministic.
pub fn throttled_body() -> Vec<u8> {
    noise(plan::THROTTLED_BODY_BYTES)
}

/// `len` incompressible-looking, deterministic bytes.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
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
{qa}{store}}}
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
        qa = qa_servers(dir, pki),
        store = store::nginx_server(dir),
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
    for (name, ip) in plan::DNS_RECORDS.iter().chain(plan::AAAA_RECORDS) {
        args.push(format!("--host-record={name},{ip}"));
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    sp.spawn("dnsmasq", &targets, &argv)?;

    // nginx.
    sys::mkdir(&dir.join("nginx-tmp"))?;
    let www = dir.join("www");
    sys::mkdir(&www)?;
    sys::write(
        &www.join(plan::THROTTLED_PATH.trim_start_matches('/')),
        throttled_body(),
    )?;
    sys::write(
        &www.join(plan::LARGE_PATH.trim_start_matches('/')),
        noise(plan::LARGE_BODY_BYTES),
    )?;
    store::seed(dir)?;
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
    // Condition 22: accepts TCP and never answers.
    let silent80 = format!("{}:80", plan::SILENT_IP);
    let silent443 = format!("{}:443", plan::SILENT_IP);
    sp.spawn(
        "silent-server",
        &targets,
        &[
            &exe,
            "silent-server",
            "--listen",
            &silent80,
            "--listen",
            &silent443,
        ],
    )?;
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
        ("tcp", format!("{}:443", plan::INTERCEPT_IP)),
        ("tcp", format!("{}:80", plan::LOOKALIKE_BLOCKPAGE_IP)),
        ("tcp", format!("{}:80", plan::FINGERPRINT_BLOCKPAGE_IP)),
        ("tcp", format!("{}:80", plan::PROXY_IP)),
        ("tcp", format!("{}:80", plan::SILENT_IP)),
        ("tcp", format!("{}:443", plan::SILENT_IP)),
        ("tcp", format!("{}:80", plan::STORE_IP)),
        ("tcp", format!("{}:443", plan::STORE_IP)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn censor_pages_match_the_real_ones_in_size_only() {
        for (real, fake) in [lookalike_pages(), fingerprint_pages()] {
            assert!(fake.len() <= real.len(), "{} > {}", fake.len(), real.len());
            assert!(fake.len() * 10 >= real.len() * 9, "within 10 %");
            assert_ne!(real, fake);
        }
        let (real, fake) = lookalike_pages();
        let title = |p: &str| {
            p.split("<title>")
                .nth(1)
                .and_then(|t| t.split("</title>").next())
                .map(str::to_string)
        };
        assert_ne!(title(&real), title(&fake));
        let (real, fake) = fingerprint_pages();
        assert_eq!(title(&real), title(&fake));
        assert!(fake.contains(plan::BLOCKPAGE_FINGERPRINT));
        assert!(!real.contains(plan::BLOCKPAGE_FINGERPRINT));
        // 49: another title, far shorter (OONI: body proportion 0.18).
        let (real, challenge) = captcha_pages();
        assert_eq!(title(&challenge).as_deref(), Some(plan::CAPTCHA_TITLE));
        assert_ne!(title(&real), title(&challenge));
        assert!(challenge.len() * 2 < real.len());
    }

    #[test]
    fn throttled_body_has_its_size() {
        let b = throttled_body();
        assert_eq!(b.len(), plan::THROTTLED_BODY_BYTES);
        assert!(b.iter().filter(|&&x| x == 0).count() < b.len() / 64);
    }
}
