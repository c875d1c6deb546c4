//! Building (`up`), tearing down (`down`) and inspecting (`status`) a lab.
//!
//! `up` always starts with a `down` of the same prefix, so a half-built lab
//! from a crashed run is cleaned first. Every server started is recorded in
//! `<state-dir>/state.json` as soon as it runs; `down` stops those PIDs, then
//! kills whatever else still lives in the lab's namespaces, deletes the
//! namespaces (which removes veths, addresses, routes, iptables rules and
//! `recent` lists with them) and removes the state dir. Both are idempotent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vantage_testkit::netns;

use crate::plan::{self, ns};
use crate::sys::{self, LabError, Result};
use crate::{censor, pki, targets};

/// How `up` builds the lab.
#[derive(Clone, Debug)]
pub struct LabConfig {
    pub prefix: String,
    pub state_dir: PathBuf,
    /// How long a client stays on the residual-blocking list after a
    /// fully-encrypted trigger.
    pub residual_window_secs: u32,
    /// How long the DNS injector holds the genuine query of an injected name
    /// before re-emitting it (so the forged answer arrives first).
    pub injection_delay_ms: u32,
}

impl LabConfig {
    /// Defaults for `prefix`: state under /run/vantage-lab/<prefix>, a 180 s
    /// residual window (what the GFW was measured to use), 200 ms delay.
    pub fn new(prefix: &str) -> Self {
        LabConfig {
            prefix: prefix.to_string(),
            state_dir: default_state_dir(prefix),
            residual_window_secs: 180,
            injection_delay_ms: 200,
        }
    }
}

pub fn default_state_dir(prefix: &str) -> PathBuf {
    PathBuf::from("/run/vantage-lab").join(prefix)
}

/// A process the lab started.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Proc {
    pub name: String,
    pub namespace: String,
    pub pid: u32,
    pub log: PathBuf,
}

/// What `state.json` records.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub prefix: String,
    pub residual_window_secs: u32,
    pub injection_delay_ms: u32,
    pub complete: bool,
    pub processes: Vec<Proc>,
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

fn save(dir: &Path, st: &State) -> Result<()> {
    let json = serde_json::to_vec_pretty(st).map_err(|e| LabError::State {
        path: state_path(dir),
        msg: e.to_string(),
    })?;
    sys::write(&state_path(dir), json)
}

/// Reads the state file, if any.
pub fn load(dir: &Path) -> Result<Option<State>> {
    let p = state_path(dir);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| LabError::State {
                path: p,
                msg: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LabError::Io {
            context: format!("cannot read {}", p.display()),
            source,
        }),
    }
}

/// Checks a prefix: namespace names must stay reasonable and shell-safe.
pub fn check_prefix(prefix: &str) -> Result<()> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 16
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(LabError::Precondition(format!(
            "prefix {prefix:?} must be 1-16 characters of [A-Za-z0-9_-]"
        )))
    }
}

/// Tears the lab down. Idempotent; never fails on what is already gone.
pub fn down(prefix: &str, state_dir: &Path) -> Result<()> {
    check_prefix(prefix)?;
    if let Ok(Some(st)) = load(state_dir) {
        let pids: Vec<u32> = st.processes.iter().map(|p| p.pid).collect();
        sys::stop_pids(&pids);
    }
    let existing = sys::list_namespaces();
    for role in plan::ROLES {
        let name = ns(prefix, role);
        let etc = netns_etc(&name);
        if etc.exists() {
            let _ = std::fs::remove_dir_all(&etc);
        }
        if existing.contains(&name) {
            netns::destroy(&name);
        }
    }
    // Only removed when empty: other namespaces may keep files there.
    let _ = std::fs::remove_dir("/etc/netns");
    let leftover: Vec<String> = sys::list_namespaces()
        .into_iter()
        .filter(|n| plan::ROLES.iter().any(|r| *n == ns(prefix, r)))
        .collect();
    if !leftover.is_empty() {
        return Err(LabError::NotReady(format!(
            "could not delete namespaces: {}",
            leftover.join(", ")
        )));
    }
    if state_dir.exists() {
        std::fs::remove_dir_all(state_dir).map_err(|source| LabError::Io {
            context: format!("cannot remove {}", state_dir.display()),
            source,
        })?;
    }
    Ok(())
}

/// Builds the lab (after cleaning any previous one with the same prefix).
pub fn up(cfg: &LabConfig) -> Result<State> {
    check_prefix(&cfg.prefix)?;
    let missing = sys::missing_preconditions();
    if !missing.is_empty() {
        return Err(LabError::Precondition(format!(
            "missing {}",
            missing.join(", ")
        )));
    }
    down(&cfg.prefix, &cfg.state_dir)?;
    sys::mkdir(&cfg.state_dir)?;
    let mut st = State {
        prefix: cfg.prefix.clone(),
        residual_window_secs: cfg.residual_window_secs,
        injection_delay_ms: cfg.injection_delay_ms,
        complete: false,
        processes: Vec::new(),
    };
    save(&cfg.state_dir, &st)?;
    topology(&cfg.prefix)?;
    censor::apply(cfg)?;
    let mut spawner = Spawner {
        dir: cfg.state_dir.clone(),
        state: &mut st,
    };
    let pki = pki::generate(&cfg.state_dir.join("pki"))?;
    targets::start(cfg, &pki, &mut spawner)?;
    targets::wait_ready(cfg, spawner.state)?;
    st.complete = true;
    save(&cfg.state_dir, &st)?;
    Ok(st)
}

/// Starts processes inside namespaces and records them at once.
pub struct Spawner<'a> {
    dir: PathBuf,
    state: &'a mut State,
}

impl<'a> Spawner<'a> {
    /// A spawner that records into `state` (saved to `dir/state.json`), so
    /// `down` stops whatever it starts.
    pub fn new(dir: &Path, state: &'a mut State) -> Spawner<'a> {
        Spawner {
            dir: dir.to_path_buf(),
            state,
        }
    }

    /// Starts `args` in namespace `namespace`, logging to `<state>/<name>.log`.
    pub fn spawn(&mut self, name: &str, namespace: &str, args: &[&str]) -> Result<u32> {
        let log = self.dir.join(format!("{name}.log"));
        let child = netns::spawn_logged(namespace, args, &log, true)?;
        let pid = child.id();
        // The child outlives us on purpose (`down` stops it by PID).
        drop(child);
        self.state.processes.push(Proc {
            name: name.to_string(),
            namespace: namespace.to_string(),
            pid,
            log,
        });
        save(&self.dir, self.state)?;
        Ok(pid)
    }
}

/// `ip netns exec NAME` bind-mounts the files of `/etc/netns/NAME/` over
/// `/etc/` for the command it runs.
fn netns_etc(name: &str) -> PathBuf {
    PathBuf::from("/etc/netns").join(name)
}

/// The system resolver of the agents' namespaces is the lab resolver, so
/// what a probe resolves through getaddrinfo (redirect hops to another
/// name) stays in the lab and, from inside, meets the censor. Without it
/// the namespaces would inherit the machine's resolver, which they cannot
/// reach (no route).
fn resolv_conf(prefix: &str) -> Result<()> {
    for role in ["inside", "outside"] {
        let dir = netns_etc(&ns(prefix, role));
        sys::mkdir(&dir)?;
        sys::write(
            &dir.join("resolv.conf"),
            format!(
                "# Written by vantage-lab for {}: the lab resolver only.\nnameserver {}\noptions timeout:2 attempts:2\n",
                ns(prefix, role),
                plan::RESOLVER_IP
            ),
        )?;
    }
    Ok(())
}

fn topology(prefix: &str) -> Result<()> {
    resolv_conf(prefix)?;
    for role in plan::ROLES {
        let n = ns(prefix, role);
        netns::create(&n)?;
        netns::sysctl(
            &n,
            &[
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ],
        )?;
        // No IPv6 anywhere: the lab is an IPv4 lab and must not leak RAs or
        // link-local chatter into results. Best effort (IPv6 may be off).
        let _ = netns::sysctl(
            &n,
            &[
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        );
    }
    let fw = ns(prefix, "fw");
    // The firewall answers host/port unreachable for several conditions (13,
    // 7, and every address of the targets /24 nobody holds); the kernel's
    // per-destination ICMP rate limit (a burst of about 6, then one a
    // second toward the same host) would turn some of those answers into
    // silence, and a `host_unreachable` into a timeout, when many probes
    // run at once. A lab router answers every time.
    netns::sysctl(&fw, &["net.ipv4.ip_forward=1", "net.ipv4.icmp_ratelimit=0"])?;
    for seg in plan::SEGMENTS {
        let leaf = ns(prefix, seg.role);
        netns::veth((&leaf, seg.leaf_if), (&fw, seg.fw_if))?;
        netns::addr(&leaf, seg.leaf_if, &format!("{}/24", seg.leaf_ip))?;
        netns::addr(&fw, seg.fw_if, &format!("{}/24", seg.fw_ip))?;
        // The only route: the lab range via the firewall. No default route.
        netns::route(&leaf, plan::LAB_NET, seg.fw_ip)?;
        for (n, i) in [(&leaf, seg.leaf_if), (&fw, seg.fw_if)] {
            netns::sysctl(n, &[&format!("net.ipv4.conf.{i}.rp_filter=0")])?;
        }
    }
    let targets = ns(prefix, "targets");
    for ip in plan::TARGET_IPS {
        netns::ip(
            &targets,
            &["addr", "add", &format!("{ip}/32"), "dev", "tg0"],
        )?;
    }
    let fw_route = |args: &[&str]| {
        let mut full = vec!["route", "add"];
        full.extend_from_slice(args);
        netns::ip(&fw, &full)
    };
    // The censor's block-page server sits in a network of its own (as real
    // ones do), so a DNS answer pointing at it shares no /24 with the
    // genuine answer.
    fw_route(&[plan::CENSOR_NET, "via", "198.19.3.2"])?;
    // Condition 13: routed nowhere, for everyone (host unreachable at once).
    fw_route(&["unreachable", &format!("{}/32", plan::DOWN_IP)])?;
    // The address that runs no DNS server: silently nowhere.
    fw_route(&["blackhole", &format!("{}/32", plan::SILENT_DNS_IP)])?;
    // The injector host takes every mirrored packet arriving on inj0 as
    // local, whatever its destination; what it sends itself is routed
    // normally (via the firewall). ICMP errors never leave it.
    let inj = ns(prefix, "inj");
    netns::ip(
        &inj,
        &[
            "rule", "add", "iif", "inj0", "lookup", "100", "priority", "100",
        ],
    )?;
    netns::ip(
        &inj,
        &[
            "route",
            "add",
            "local",
            "0.0.0.0/0",
            "dev",
            "lo",
            "table",
            "100",
        ],
    )?;
    netns::iptables(&inj, &["-A", "OUTPUT", "-p", "icmp", "-j", "DROP"])?;
    Ok(())
}

/// What `status` reports.
#[derive(Debug, Serialize)]
pub struct Status {
    pub prefix: String,
    pub state_dir: PathBuf,
    pub namespaces: Vec<NsStatus>,
    pub complete: bool,
    pub processes: Vec<ProcStatus>,
}

#[derive(Debug, Serialize)]
pub struct NsStatus {
    pub name: String,
    pub exists: bool,
}

#[derive(Debug, Serialize)]
pub struct ProcStatus {
    #[serde(flatten)]
    pub proc: Proc,
    pub running: bool,
}

pub fn status(prefix: &str, state_dir: &Path) -> Result<Status> {
    check_prefix(prefix)?;
    let existing = sys::list_namespaces();
    let namespaces = plan::ROLES
        .iter()
        .map(|r| {
            let n = ns(prefix, r);
            let exists = existing.contains(&n);
            NsStatus { name: n, exists }
        })
        .collect();
    let st = load(state_dir)?;
    let (complete, processes) = match st {
        Some(st) => (
            st.complete,
            st.processes
                .into_iter()
                .map(|p| {
                    let running = sys::pid_alive(p.pid);
                    ProcStatus { proc: p, running }
                })
                .collect(),
        ),
        None => (false, Vec::new()),
    };
    Ok(Status {
        prefix: prefix.to_string(),
        state_dir: state_dir.to_path_buf(),
        namespaces,
        complete,
        processes,
    })
}

/// Polls `check` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, check: impl FnMut() -> bool) -> bool {
    netns::poll(timeout, check)
}
