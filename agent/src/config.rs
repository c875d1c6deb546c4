//! The volunteer's configuration (`agent.toml` in the data directory): what
//! they consent to, and the agent's limits. Unknown fields are an error that
//! names the line, never a silent default.

use std::path::Path;

use serde::{Deserialize, Serialize};

pub const FILE: &str = "agent.toml";

/// Probe kinds enabled by default: the ones that look like ordinary
/// browsing (an `app_store` lookup is the request a phone's App Store app
/// makes). VPN, Tor and fully-encrypted probes are opt-in because they can
/// draw attention to the volunteer's connection.
#[rustfmt::skip]
pub const DEFAULT_KINDS: &[&str] = &["dns", "dns_injection", "tcp", "tls", "http", "web", "quic", "app_store"];

/// Agent configuration.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub version: u32,
    #[serde(default)]
    pub consent: ConsentConfig,
    #[serde(default)]
    pub limits: Limits,
    /// Lab use only: allow loopback, private and special-purpose targets.
    #[serde(default)]
    pub allow_private_targets: bool,
    /// PEM files of extra CAs the probes trust besides the system roots
    /// (a lab's CA, a corporate proxy's); relative paths are under the data
    /// directory. `SSL_CERT_FILE` replaces the system bundle itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_ca_files: Vec<String>,
}

/// What the volunteer agreed to.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsentConfig {
    /// Probe kinds this agent may run.
    pub kinds: Vec<String>,
    /// Whether results may carry this agent's country and ASN.
    pub share_network_labels: bool,
}

impl Default for ConsentConfig {
    fn default() -> Self {
        ConsentConfig {
            kinds: DEFAULT_KINDS.iter().map(|s| s.to_string()).collect(),
            share_network_labels: true,
        }
    }
}

/// Frugality limits.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Probes running at once.
    pub max_concurrency: u32,
    /// Tasks accepted per hour; more are refused with a reason.
    pub max_tasks_per_hour: u32,
    /// Longest a single probe may run, seconds.
    pub max_probe_seconds: u32,
    /// Bytes read from any one peer by one probe.
    pub max_read_bytes: u64,
    /// Results kept while the coordinator is unreachable; beyond this the
    /// OLDEST are dropped, counted and logged.
    pub outbox_max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Probes mostly wait (DNS listen windows, timeouts), so 32 at
            // once costs little CPU; it keeps a 1,000-target web list under
            // 30 s despite the 500 ms DNS listen window of each web probe.
            max_concurrency: 32,
            max_tasks_per_hour: 3600,
            max_probe_seconds: 300,
            max_read_bytes: 1 << 20,
            outbox_max_entries: 100_000,
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            version: 1,
            consent: Default::default(),
            limits: Default::default(),
            allow_private_targets: false,
            extra_ca_files: Vec::new(),
        }
    }
}

/// Config errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}: {1}")]
    Parse(String, String),
}

impl AgentConfig {
    /// Loads `agent.toml`, or the defaults when the file does not exist.
    pub fn load(dir: &Path) -> Result<AgentConfig, ConfigError> {
        let path = dir.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                Self::parse(&text).map_err(|m| ConfigError::Parse(path.display().to_string(), m))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AgentConfig::default()),
            Err(e) => Err(ConfigError::Io(path.display().to_string(), e)),
        }
    }

    /// Parses TOML; errors name the line.
    pub fn parse(text: &str) -> Result<AgentConfig, String> {
        let c: AgentConfig = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| format!("line {}: ", text[..s.start].matches('\n').count() + 1))
                .unwrap_or_default();
            format!("{line}{}", e.message())
        })?;
        if c.version != 1 {
            return Err(format!(
                "unsupported config version {} (expected 1)",
                c.version
            ));
        }
        for k in &c.consent.kinds {
            if !vantage_proto::PROBE_KINDS.contains(&k.as_str()) {
                return Err(format!(
                    "consent.kinds: unknown probe kind {k:?} (known: {})",
                    vantage_proto::PROBE_KINDS.join(", ")
                ));
            }
        }
        if let Some(f) = c.extra_ca_files.iter().find(|f| f.trim().is_empty()) {
            return Err(format!("extra_ca_files: empty path {f:?}"));
        }
        if c.limits.max_concurrency == 0 {
            return Err("limits.max_concurrency must be at least 1".into());
        }
        Ok(c)
    }

    /// `extra_ca_files` as paths, relative ones under `data_dir`.
    pub fn extra_ca_paths(&self, data_dir: &Path) -> Vec<std::path::PathBuf> {
        self.extra_ca_files
            .iter()
            .map(|f| data_dir.join(f))
            .collect()
    }

    /// The commented file `enroll` writes when none exists.
    pub fn default_file_text() -> String {
        format!(
            r#"# Vantage agent configuration. Every field is checked: a typo is an error.
version = 1

# Lab use only: allow probing loopback, private and other special-purpose
# addresses. Leave false on a real network.
allow_private_targets = false

# PEM files of extra certificate authorities the probes trust besides the
# system's (a lab's CA, a corporate proxy's). SSL_CERT_FILE, when set,
# replaces the system bundle.
# extra_ca_files = ["/etc/vantage-agent/lab-ca.pem"]

[consent]
# Probe kinds this agent may run. VPN (openvpn, wireguard), tor and
# encrypted probes are off by default: they can draw attention to your
# connection. Add them only if you accept that.
# All kinds: {all}
kinds = [{kinds}]
# Whether results may carry your country and network (ASN).
share_network_labels = true

[limits]
# Probes running at once (they mostly wait on the network).
max_concurrency = 32
max_tasks_per_hour = 3600
max_probe_seconds = 300
max_read_bytes = 1048576
# Results kept while the coordinator is unreachable; beyond this the oldest
# are dropped (counted in `vantage-agent status`).
outbox_max_entries = 100000
"#,
            all = vantage_proto::PROBE_KINDS.join(", "),
            kinds = DEFAULT_KINDS
                .iter()
                .map(|k| format!("\"{k}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_parses_to_defaults() {
        assert_eq!(
            AgentConfig::parse(&AgentConfig::default_file_text()).unwrap(),
            AgentConfig::default()
        );
    }

    #[test]
    fn typos_name_the_line() {
        let e = AgentConfig::parse("version = 1\n[limits]\nmax_concurency = 3\n").unwrap_err();
        assert!(e.contains("line 3") && e.contains("max_concurency"), "{e}");
        let e = AgentConfig::parse("version = 1\n[consent]\nkinds = [\"telnet\"]\n").unwrap_err();
        assert!(e.contains("telnet"), "{e}");
    }

    #[test]
    fn extra_ca_files_resolve_under_the_data_dir() {
        let c = AgentConfig::parse(
            "version = 1\nextra_ca_files = [\"lab-ca.pem\", \"/etc/ssl/proxy.pem\"]\n",
        )
        .unwrap();
        assert_eq!(
            c.extra_ca_paths(Path::new("/var/lib/vantage-agent")),
            vec![
                std::path::PathBuf::from("/var/lib/vantage-agent/lab-ca.pem"),
                std::path::PathBuf::from("/etc/ssl/proxy.pem"),
            ]
        );
        let e = AgentConfig::parse("version = 1\nextra_ca_files = [\" \"]\n").unwrap_err();
        assert!(e.contains("extra_ca_files"), "{e}");
    }
}
