//! The network-namespace lab API: one place for what the agent's probe
//! tests, the coordinator's partition test and the censorship lab
//! (`deploy/lab`) do with `ip`, `iptables` and `sysctl`.
//!
//! - availability: [`lab_ready`] / [`ready_or_skip`] fail a test naming
//!   what is missing (root, tools and their Debian packages), unless
//!   `VANTAGE_SKIP_LAB=1`, which prints `SKIPPED (VANTAGE_SKIP_LAB=1): <name>`
//!   and lets the test return;
//! - commands: [`run`], [`try_run`], [`ns_run`], [`command`] (a process
//!   inside a namespace), [`spawn_logged`];
//! - topology: [`create`] / [`destroy`] namespaces, [`veth`] pairs,
//!   [`addr`], [`route`] (never a default route), [`iptables`], [`sysctl`];
//! - cleanup: [`Namespaces`] deletes what it created (and kills the
//!   processes it started) on drop; [`clean_stale`] removes what a crashed
//!   run left;
//! - [`Chain`]: the probe tests' client <-> firewall <-> server lab.
//!
//! Test labs use addresses in 198.18.0.0/15 ([`TEST_NET`]); no namespace
//! gets a default route, so nothing leaves the lab.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod chain;

pub use chain::Chain;

/// The benchmarking range (RFC 2544) every lab address comes from.
pub const TEST_NET: &str = "198.18.0.0/15";

// ------------------------------------------------------------ commands

/// A command that could not be run or that failed.
#[derive(Debug)]
pub enum CmdError {
    /// It ran and exited unsuccessfully; `stderr` is what it said.
    Failed { cmd: String, stderr: String },
    /// It could not be started.
    Spawn { cmd: String, source: std::io::Error },
}

impl std::fmt::Display for CmdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CmdError::Failed { cmd, stderr } => write!(f, "`{cmd}` failed: {stderr}"),
            CmdError::Spawn { cmd, source } => write!(f, "cannot run `{cmd}`: {source}"),
        }
    }
}

impl std::error::Error for CmdError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CmdError::Spawn { source, .. } => Some(source),
            CmdError::Failed { .. } => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, CmdError>;

/// Runs a command; its stdout, or an error carrying its stderr.
pub fn run(args: &[&str]) -> Result<String> {
    let Some((prog, rest)) = args.split_first() else {
        return Err(CmdError::Failed {
            cmd: String::new(),
            stderr: "empty command".into(),
        });
    };
    let mut cmd = Command::new(prog);
    cmd.args(rest).stdin(Stdio::null());
    output_named(&mut cmd, args.join(" "))
}

/// Runs `cmd` to completion (stdin as set, or inherited); its stdout, or
/// an error carrying its stderr (and stdout).
pub fn output(cmd: &mut Command) -> Result<String> {
    let name = format!("{cmd:?}");
    output_named(cmd, name)
}

fn output_named(cmd: &mut Command, name: String) -> Result<String> {
    let out = cmd.output().map_err(|source| CmdError::Spawn {
        cmd: name.clone(),
        source,
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stderr = match stdout.trim() {
            "" => stderr.trim().to_string(),
            so => format!("{}\n{so}", stderr.trim()),
        };
        return Err(CmdError::Failed { cmd: name, stderr });
    }
    Ok(stdout)
}

/// [`output`] for tests: a failure panics with the command's stderr.
pub fn output_ok(cmd: &mut Command) -> String {
    must(output(cmd))
}

/// Runs a command and ignores how it went (teardown paths); whether it
/// succeeded.
pub fn try_run(args: &[&str]) -> bool {
    let Some((prog, rest)) = args.split_first() else {
        return false;
    };
    Command::new(prog)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Runs a command inside namespace `ns`.
pub fn ns_run(ns: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    run(&full)
}

/// `ip -n <ns> <args>`.
pub fn ip(ns: &str, args: &[&str]) -> Result<()> {
    let mut full = vec!["ip", "-n", ns];
    full.extend_from_slice(args);
    run(&full).map(drop)
}

/// A command running `prog` inside namespace `ns` (add its arguments).
pub fn command(ns: &str, prog: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(prog);
    c
}

/// Starts `args` inside `ns`, stdin closed, stdout and stderr appended to
/// `log`. With `detach`, the process gets its own process group, so it
/// outlives a Ctrl-C of the caller (the lab's servers).
pub fn spawn_logged(ns: &str, args: &[&str], log: &Path, detach: bool) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    let cmd = args.join(" ");
    let io_err = |source| CmdError::Spawn {
        cmd: cmd.clone(),
        source,
    };
    let file = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io_err)?;
    let file2 = file.try_clone().map_err(io_err)?;
    let (prog, rest) = args.split_first().ok_or_else(|| CmdError::Failed {
        cmd: cmd.clone(),
        stderr: "empty command".into(),
    })?;
    let mut c = command(ns, prog);
    c.args(rest).stdin(Stdio::null()).stdout(file).stderr(file2);
    if detach {
        c.process_group(0);
    }
    c.spawn().map_err(io_err)
}

/// Panics with the error: for tests, where a failed lab command is a
/// failed test.
pub fn must<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

// ------------------------------------------------------------ availability

/// Finds a tool on PATH (or the usual sbin directories).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    crate::skip::find_tool(&[name])
}

/// Whether we run as root (reads /proc/self/status: no libc call needed).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The Debian package that ships `tool`, where it is not the tool's name.
fn package_of(tool: &str) -> &str {
    match tool {
        "ip" | "ss" | "tc" => "iproute2",
        "sysctl" => "procps",
        "nginx" => "nginx-light",
        "dnsmasq" => "dnsmasq-base",
        other => other,
    }
}

/// What the lab lacks to run with `tools`: root privileges and each
/// missing tool, named with its Debian package (empty when nothing).
pub fn missing(tools: &[&str]) -> Vec<String> {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root privileges".to_string());
    }
    for t in tools {
        if find_tool(t).is_none() {
            missing.push(format!("`{t}` (Debian: {})", package_of(t)));
        }
    }
    missing
}

/// Whether test `test` may use the lab given what is `missing`. Missing
/// preconditions fail the test naming them, unless VANTAGE_SKIP_LAB=1,
/// which prints `SKIPPED (VANTAGE_SKIP_LAB=1): <test>` and returns false.
pub fn ready_or_skip(test: &str, missing: Vec<String>) -> bool {
    crate::skip::require(
        test,
        &missing,
        "the namespace lab: run as root; bash deploy/scripts/install-test-deps.sh \
         installs the tools",
    )
}

/// [`ready_or_skip`] for root plus `tools` (`ip` is always needed).
pub fn lab_ready(test: &str, tools: &[&str]) -> bool {
    let mut all = vec!["ip"];
    all.extend(tools.iter().filter(|t| **t != "ip"));
    ready_or_skip(test, missing(&all))
}

// ------------------------------------------------------------ namespaces

/// Existing network namespaces.
pub fn list() -> Vec<String> {
    run(&["ip", "netns", "list"])
        .map(|s| {
            s.lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// PIDs of the processes living in namespace `ns`.
pub fn pids(ns: &str) -> Vec<u32> {
    run(&["ip", "netns", "pids", ns])
        .map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Creates namespace `ns` with its loopback up.
pub fn create(ns: &str) -> Result<()> {
    run(&["ip", "netns", "add", ns])?;
    ip(ns, &["link", "set", "lo", "up"])
}

/// Stops every process in `ns` and deletes it (its veths, addresses,
/// routes and iptables rules go with it). Idempotent.
pub fn destroy(ns: &str) {
    stop_pids(&pids(ns));
    try_run(&["ip", "netns", "del", ns]);
}

/// Deletes namespaces named `<prefix><pid>-...` whose `<pid>` no longer
/// runs (what a crashed run left).
pub fn clean_stale(prefix: &str) {
    for name in list() {
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("deleting stale namespace {name}");
            destroy(&name);
        }
    }
}

/// A veth pair: `a_if` in namespace `a_ns`, its peer `b_if` in `b_ns`
/// (both may be the same namespace). Neither end is up yet: [`addr`] or
/// [`link_up`] brings it up.
pub fn veth((a_ns, a_if): (&str, &str), (b_ns, b_if): (&str, &str)) -> Result<()> {
    run(&[
        "ip", "link", "add", a_if, "netns", a_ns, "type", "veth", "peer", "name", b_if, "netns",
        b_ns,
    ])
    .map(drop)
}

/// Sets `dev` in `ns` up or down.
pub fn link_up(ns: &str, dev: &str, up: bool) -> Result<()> {
    ip(ns, &["link", "set", dev, if up { "up" } else { "down" }])
}

/// Adds `cidr` to `dev` in `ns` and sets `dev` up.
pub fn addr(ns: &str, dev: &str, cidr: &str) -> Result<()> {
    ip(ns, &["addr", "add", cidr, "dev", dev])?;
    link_up(ns, dev, true)
}

/// Routes `dest` via `gateway` in `ns`. A default route is refused: lab
/// traffic must never leave the lab.
pub fn route(ns: &str, dest: &str, gateway: &str) -> Result<()> {
    if matches!(dest, "default" | "0.0.0.0/0" | "::/0") {
        return Err(CmdError::Failed {
            cmd: format!("ip -n {ns} route add {dest} via {gateway}"),
            stderr: "a lab namespace never gets a default route".into(),
        });
    }
    ip(ns, &["route", "add", dest, "via", gateway])
}

/// `iptables -w <args>` in `ns`.
pub fn iptables(ns: &str, args: &[&str]) -> Result<()> {
    let mut full = vec!["iptables", "-w"];
    full.extend_from_slice(args);
    ns_run(ns, &full).map(drop)
}

/// `sysctl -qw <settings>` in `ns` (each `key=value`).
pub fn sysctl(ns: &str, settings: &[&str]) -> Result<()> {
    let mut full = vec!["sysctl", "-qw"];
    full.extend_from_slice(settings);
    ns_run(ns, &full).map(drop)
}

/// Makes `ns` a router: forwarding on, reverse-path filtering off.
pub fn router(ns: &str) -> Result<()> {
    sysctl(
        ns,
        &[
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        ],
    )
}

// ------------------------------------------------------------ processes

/// Whether process `pid` exists (and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            // State is the field after the parenthesised command name.
            let state = s
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            state != Some("Z")
        }
        Err(_) => false,
    }
}

/// Sends `signal` (e.g. "TERM", "KILL") to `pid`.
pub fn kill(pid: u32, signal: &str) {
    try_run(&["kill", &format!("-{signal}"), &pid.to_string()]);
}

/// Stops `pids`: SIGTERM, up to 2 s of grace, then SIGKILL.
pub fn stop_pids(pids: &[u32]) {
    let alive: Vec<u32> = pids.iter().copied().filter(|p| pid_alive(*p)).collect();
    for p in &alive {
        kill(*p, "TERM");
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && alive.iter().any(|p| pid_alive(*p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in alive.iter().filter(|p| pid_alive(**p)) {
        kill(*p, "KILL");
    }
}

/// Polls `check` every 50 ms until it is true (then true) or `timeout`
/// passes (then false).
pub fn poll(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ------------------------------------------------------------ ownership

/// Namespaces and processes a test created: on drop the processes are
/// killed, then the namespaces destroyed (last created first), also when
/// the test fails. The methods panic on failure (a failed lab command is a
/// failed test).
#[derive(Default)]
pub struct Namespaces {
    names: Vec<String>,
    /// Behind a lock so a shared `&Namespaces` can start processes.
    children: std::sync::Mutex<Vec<Child>>,
}

impl Namespaces {
    pub fn new() -> Namespaces {
        Namespaces::default()
    }

    /// Creates namespace `name` (destroying a leftover of that name first).
    pub fn add(&mut self, name: &str) -> String {
        destroy(name);
        must(create(name));
        self.names.push(name.to_string());
        name.to_string()
    }

    /// The namespaces created so far, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Starts `args` inside `ns`, logging to `log`; killed on drop.
    /// Returns its pid.
    pub fn spawn(&self, ns: &str, args: &[&str], log: &Path) -> u32 {
        self.keep(must(spawn_logged(ns, args, log, false)))
    }

    /// Starts `cmd` (e.g. from [`command`], arguments and environment set)
    /// with its stderr appended to `log`; killed on drop. Returns its pid.
    pub fn spawn_command(&self, mut cmd: Command, log: &Path) -> u32 {
        let f = std::fs::File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("log {}: {e}", log.display()));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        self.keep(child)
    }

    fn keep(&self, child: Child) -> u32 {
        let pid = child.id();
        self.lock().push(child);
        pid
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Child>> {
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Kills (and reaps) every process started here; the namespaces stay.
    pub fn stop_processes(&self) {
        for mut c in self.lock().drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Asserts that no namespace created here has a default route.
    pub fn assert_no_default_route(&self) {
        for ns in &self.names {
            let routes = must(run(&["ip", "-n", ns, "route", "show", "default"]));
            assert!(routes.trim().is_empty(), "{ns} has a default route");
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        self.stop_processes();
        for ns in self.names.iter().rev() {
            destroy(ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_report_their_output_and_failures() {
        assert_eq!(run(&["sh", "-c", "echo hi"]).expect("echo"), "hi\n");
        match run(&["sh", "-c", "echo oops >&2; exit 3"]) {
            Err(CmdError::Failed { cmd, stderr }) => {
                assert_eq!(cmd, "sh -c echo oops >&2; exit 3");
                assert_eq!(stderr, "oops");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            run(&["/nonexistent/tool"]),
            Err(CmdError::Spawn { .. })
        ));
        assert!(run(&[]).is_err());
        assert!(!try_run(&["false"]) && try_run(&["true"]));
    }

    #[test]
    fn a_default_route_is_refused_before_anything_runs() {
        for dest in ["default", "0.0.0.0/0"] {
            let e = route("no-such-namespace", dest, "198.18.0.1").expect_err(dest);
            assert!(e.to_string().contains("never gets a default route"), "{e}");
        }
    }

    #[test]
    fn missing_preconditions_fail_the_test_or_skip_it_with_the_flag() {
        // The rule is `skip::decide` (tested there, without printing a
        // skip line that test.sh would count); here: what the lab adds.
        assert!(ready_or_skip("t", Vec::new()));
        let missing = vec!["`frobnicate` (Debian: frobnicate)".to_string()];
        if std::env::var("VANTAGE_SKIP_LAB").as_deref() != Ok("1") {
            let panic = std::panic::catch_unwind(|| ready_or_skip("my_test", missing))
                .expect_err("a missing tool fails the test");
            let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(
                msg.starts_with("my_test: needs `frobnicate`")
                    && msg.contains("the namespace lab")
                    && msg.contains("VANTAGE_SKIP_LAB=1"),
                "{msg}"
            );
        }
        assert_eq!(package_of("ss"), "iproute2");
        assert_eq!(package_of("tor"), "tor");
    }
}
