//! The lab's error type and file helpers; running system tools is the
//! test kit's network-namespace API (`vantage_testkit::netns`), re-exported
//! here with the lab's error type.

use std::path::{Path, PathBuf};

use vantage_testkit::netns::{self, CmdError};
pub use vantage_testkit::netns::{
    find_tool, is_root, kill, list as list_namespaces, pid_alive, pids as ns_pids, stop_pids,
    try_run,
};

/// Everything that can go wrong building or tearing down the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A system command could not be run or failed (its stderr included).
    #[error(transparent)]
    Cmd(#[from] CmdError),
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

/// What the lab lacks to be built (empty when nothing): root, [`TOOLS`]
/// and /dev/net/tun.
pub fn missing_preconditions() -> Vec<String> {
    let mut missing = netns::missing(TOOLS);
    if !Path::new("/dev/net/tun").exists() {
        missing.push("/dev/net/tun (for openvpn)".to_string());
    }
    missing
}

/// Runs a command; an error carries its stderr.
pub fn run(args: &[&str]) -> Result<String> {
    Ok(netns::run(args)?)
}

/// Runs a command inside namespace `ns`.
pub fn ns_run(ns: &str, args: &[&str]) -> Result<String> {
    Ok(netns::ns_run(ns, args)?)
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
