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

/// The HTTP client the lab's tests and fleet use to read HTTP from inside
/// a namespace (not needed by `up`).
pub const HTTP_CLIENT: &str = "curl";

/// An HTTP answer: status and body.
#[derive(Clone, Debug)]
pub struct HttpReply {
    pub status: u16,
    pub body: String,
}

/// `GET url` from namespace `ns` with curl (10 s at most, no proxy, no
/// redirects followed); `headers` as `Name: value`; `ca_file` is the CA an
/// `https://` URL must chain to (the lab's).
pub fn http_get(
    ns: &str,
    url: &str,
    headers: &[&str],
    ca_file: Option<&Path>,
) -> Result<HttpReply> {
    let ca = ca_file.map(|p| p.to_string_lossy().into_owned());
    let mut args = vec![
        HTTP_CLIENT,
        "--silent",
        "--show-error",
        "--noproxy",
        "*",
        "--max-time",
        "10",
        "--write-out",
        "\n%{http_code}",
    ];
    for h in headers {
        args.extend(["--header", h]);
    }
    if let Some(ca) = &ca {
        args.extend(["--cacert", ca]);
    }
    args.push(url);
    let out = ns_run(ns, &args)?;
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", out.as_str()));
    let status = code.trim().parse().map_err(|_| {
        LabError::NotReady(format!("GET {url}: no status in curl's output {out:?}"))
    })?;
    Ok(HttpReply {
        status,
        body: body.to_string(),
    })
}
