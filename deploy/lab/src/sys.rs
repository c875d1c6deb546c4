//! Running system tools (ip, iptables, sysctl, ss) and the lab's error type.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Everything that can go wrong building or tearing down the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("`{cmd}` failed: {stderr}")]
    Command { cmd: String, stderr: String },
    #[error("cannot run `{cmd}`: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("lab preconditions not met: {0}")]
    Precondition(String),
    #[error("{0}")]
    NotReady(String),
    #[error("certificate generation failed: {0}")]
    Pki(String),
    #[error("bad lab state file {path}: {msg}")]
    State { path: PathBuf, msg: String },
}

pub type Result<T> = std::result::Result<T, LabError>;

/// Tools `up` needs on the PATH.
pub const TOOLS: &[&str] = &[
    "ip", "iptables", "tc", "sysctl", "ss", "nginx", "dnsmasq", "openvpn", "tor",
];

/// Finds a tool on PATH (or the usual sbin directories).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
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

/// What the lab lacks to be built (empty when nothing).
pub fn missing_preconditions() -> Vec<String> {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root privileges".to_string());
    }
    for t in TOOLS {
        if find_tool(t).is_none() {
            missing.push(format!("`{t}`"));
        }
    }
    if !Path::new("/dev/net/tun").exists() {
        missing.push("/dev/net/tun (for openvpn)".to_string());
    }
    missing
}

fn describe(args: &[&str]) -> String {
    args.join(" ")
}

/// Runs a command; an error carries its stderr.
pub fn run(args: &[&str]) -> Result<String> {
    let (prog, rest) = args.split_first().ok_or_else(|| LabError::Command {
        cmd: String::new(),
        stderr: "empty command".into(),
    })?;
    let out = Command::new(prog)
        .args(rest)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            cmd: describe(args),
            source,
        })?;
    if !out.status.success() {
        return Err(LabError::Command {
            cmd: describe(args),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command and ignores how it went (teardown paths).
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

/// Lists existing network namespaces.
pub fn list_namespaces() -> Vec<String> {
    run(&["ip", "netns", "list"])
        .map(|s| {
            s.lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// PIDs of the processes living in namespace `ns`.
pub fn ns_pids(ns: &str) -> Vec<u32> {
    run(&["ip", "netns", "pids", ns])
        .map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < deadline && alive.iter().any(|p| pid_alive(*p)) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for p in alive.iter().filter(|p| pid_alive(**p)) {
        kill(*p, "KILL");
    }
}

/// Writes a file, naming it in the error.
pub fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, contents).map_err(|source| LabError::Io {
        context: format!("cannot write {}", path.display()),
        source,
    })
}

/// Creates a directory (and parents), naming it in the error.
pub fn mkdir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|source| LabError::Io {
        context: format!("cannot create {}", path.display()),
        source,
    })
}
