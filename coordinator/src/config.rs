//! The coordinator's configuration file (`coordinator.toml` in the data
//! directory), written by `init` and read by `serve`. Unknown fields are an
//! error that names the line.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const FILE: &str = "coordinator.toml";

/// Coordinator settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Format version of this file.
    pub version: u32,
    /// gRPC listen address ("ip:port").
    pub listen: String,
    /// Addresses agents dial, carried in enrollment tokens.
    pub advertise: Vec<String>,
    /// Largest accepted gRPC message, bytes.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// Seconds a new connection may take to finish the TLS handshake and
    /// send the HTTP/2 connection preface before it is dropped.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_s: u64,
    /// Seconds without a frame from the peer before the server sends an
    /// HTTP/2 PING on an open connection. With the timeout below it bounds
    /// how long a dead agent session (a partition, a pulled cable) still
    /// counts as connected: 10 + 5 s by default, so a run dispatched during
    /// a partition skips the agent instead of waiting for its leases.
    #[serde(default = "default_keepalive_interval")]
    pub http2_keepalive_interval_s: u64,
    /// Seconds a PING may go unanswered before the connection is closed.
    #[serde(default = "default_keepalive_timeout")]
    pub http2_keepalive_timeout_s: u64,
    /// Largest accepted HTTP/2 header list (decoded), bytes. A larger
    /// request is refused (431), an abusive one ends the connection.
    #[serde(default = "default_max_header_list")]
    pub max_header_list_bytes: u32,
    /// Read-only HTTP API, dashboard and `/metrics` listen address
    /// ("ip:port"); none: not served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_listen: Option<String>,
    /// SHA-256 (hex) of the bearer tokens that may read the HTTP API. Empty:
    /// no token needed, but then only a loopback `http_listen` is served.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_tokens: Vec<String>,
    /// Requests per minute per read token (token bucket; 0: unlimited).
    #[serde(default = "default_http_rate")]
    pub http_rate_per_minute: u32,
    /// Where results flow besides sled (`[sink.clickhouse]`); none by
    /// default.
    #[serde(default, skip_serializing_if = "Sinks::is_empty")]
    pub sink: Sinks,
    /// How webhooks are delivered (`[webhooks]`); the defaults suit most.
    #[serde(default, skip_serializing_if = "Webhooks::is_default")]
    pub webhooks: Webhooks,
}

/// `[webhooks]`: delivery of change events to researchers' URLs
/// (`crate::alerts`). Webhooks themselves are added with `vantagectl
/// webhook add` and live in the store.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Webhooks {
    /// The first retry waits about this long (milliseconds, with jitter);
    /// each further one twice as long, up to `retry_max_ms`.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// A delivery still failing this long after it was queued is given up
    /// ("72h"; kept in the store, counted as dead).
    pub give_up_after: String,
    /// How long one POST may take, milliseconds.
    pub timeout_ms: u64,
    /// PEM roots for https receivers; empty: the system's
    /// (/etc/ssl/certs/ca-certificates.crt).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ca_file: String,
}

impl Default for Webhooks {
    fn default() -> Webhooks {
        Webhooks {
            retry_base_ms: 1_000,
            retry_max_ms: 600_000,
            give_up_after: "72h".into(),
            timeout_ms: 10_000,
            ca_file: String::new(),
        }
    }
}

impl Webhooks {
    fn is_default(&self) -> bool {
        *self == Webhooks::default()
    }

    fn validate(&self) -> Result<(), String> {
        if self.retry_base_ms == 0 || self.retry_max_ms < self.retry_base_ms {
            return Err(format!(
                "webhooks: retry_base_ms ({}) must be at least 1 and at most retry_max_ms ({})",
                self.retry_base_ms, self.retry_max_ms
            ));
        }
        if self.timeout_ms == 0 {
            return Err("webhooks.timeout_ms must be at least 1".into());
        }
        self.give_up()?;
        Ok(())
    }

    /// `give_up_after` as a duration.
    pub fn give_up(&self) -> Result<std::time::Duration, String> {
        match humantime::parse_duration(self.give_up_after.trim()) {
            Ok(d) if !d.is_zero() => Ok(d),
            _ => Err(format!(
                "webhooks.give_up_after {:?} is not a duration longer than 0 like \"72h\"",
                self.give_up_after
            )),
        }
    }
}

/// Result sinks (`[sink.*]` tables).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Sinks {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clickhouse: Option<ClickHouseSink>,
}

impl Sinks {
    fn is_empty(&self) -> bool {
        self.clickhouse.is_none()
    }
}

/// `[sink.clickhouse]`: every stored result, in commit order, into a
/// ClickHouse table (`crate::sink`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseSink {
    /// HTTP interfaces of the servers to insert through, tried in order
    /// (`http://host:8123`); any node of the cluster will do.
    pub urls: Vec<String>,
    #[serde(default = "default_ch_database")]
    pub database: String,
    /// The table queries read. With `cluster`, a `Distributed` table over
    /// `<table>_local` (`ReplicatedReplacingMergeTree` on every node).
    #[serde(default = "default_ch_table")]
    pub table: String,
    /// Cluster name in the servers' `remote_servers`; empty: one server and
    /// a plain `ReplacingMergeTree`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    #[serde(default = "default_ch_user")]
    pub user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// Results per insert at most.
    #[serde(default = "default_ch_batch")]
    pub batch_size: usize,
    /// How long results may wait for a fuller batch, milliseconds.
    #[serde(default = "default_ch_interval")]
    pub interval_ms: u64,
    /// This coordinator's id in the rows (`coordinator` column); empty: the
    /// id the store made at its first start.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub coordinator_id: String,
    /// How long sled keeps a result once ClickHouse has it ("30d", "12h");
    /// empty: forever. A result ClickHouse has not confirmed is never
    /// removed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub keep_for: String,
}

fn default_ch_database() -> String {
    "vantage".into()
}
fn default_ch_table() -> String {
    "results".into()
}
fn default_ch_user() -> String {
    "default".into()
}
fn default_ch_batch() -> usize {
    20_000
}
fn default_ch_interval() -> u64 {
    1_000
}

/// A ClickHouse identifier we put in SQL unquoted.
fn identifier(what: &str, v: &str) -> Result<(), String> {
    let mut chars = v.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "sink.clickhouse.{what} {v:?} must be letters, digits and _ (not starting with a digit)"
        ))
    }
}

impl ClickHouseSink {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.urls.is_empty() {
            return Err("sink.clickhouse.urls is empty: give at least one http://host:port".into());
        }
        for u in &self.urls {
            if !u.starts_with("http://") {
                return Err(format!(
                    "sink.clickhouse.urls: {u:?} is not an http:// URL (https is not supported yet: \
                     put ClickHouse behind a TLS tunnel or keep it on a private network)"
                ));
            }
        }
        identifier("database", &self.database)?;
        identifier("table", &self.table)?;
        if !self.cluster.is_empty() {
            identifier("cluster", &self.cluster)?;
        }
        if self.batch_size == 0 || self.batch_size > 1_000_000 {
            return Err(format!(
                "sink.clickhouse.batch_size {} must be between 1 and 1000000",
                self.batch_size
            ));
        }
        if self.interval_ms == 0 {
            return Err("sink.clickhouse.interval_ms must be at least 1".into());
        }
        self.keep()?;
        Ok(())
    }

    /// `keep_for` as a duration; `None`: keep forever.
    pub fn keep(&self) -> Result<Option<std::time::Duration>, String> {
        if self.keep_for.trim().is_empty() {
            return Ok(None);
        }
        match humantime::parse_duration(self.keep_for.trim()) {
            Ok(d) if !d.is_zero() => Ok(Some(d)),
            Ok(_) => Err(
                "sink.clickhouse.keep_for must be longer than 0 (leave it out to keep everything)"
                    .into(),
            ),
            Err(e) => Err(format!(
                "sink.clickhouse.keep_for {:?} is not a duration like \"30d\" or \"12h\": {e}",
                self.keep_for
            )),
        }
    }
}

fn default_http_rate() -> u32 {
    600
}

fn default_max_message() -> usize {
    8 << 20
}

fn default_handshake_timeout() -> u64 {
    10
}

fn default_keepalive_interval() -> u64 {
    10
}

fn default_keepalive_timeout() -> u64 {
    5
}

fn default_max_header_list() -> u32 {
    16 << 10
}

/// Config errors, naming the file and line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
}

impl Config {
    pub fn new(listen: String, advertise: Vec<String>) -> Config {
        Config {
            version: 1,
            listen,
            advertise,
            max_message_bytes: default_max_message(),
            handshake_timeout_s: default_handshake_timeout(),
            http2_keepalive_interval_s: default_keepalive_interval(),
            http2_keepalive_timeout_s: default_keepalive_timeout(),
            max_header_list_bytes: default_max_header_list(),
            http_listen: None,
            read_tokens: Vec::new(),
            http_rate_per_minute: default_http_rate(),
            sink: Sinks::default(),
            webhooks: Webhooks::default(),
        }
    }

    pub fn load(dir: &Path) -> Result<Config, ConfigError> {
        let path = dir.join(FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
            path: path.clone(),
            source,
        })?;
        Config::parse(&text).map_err(|message| ConfigError::Parse { path, message })
    }

    /// Parses the TOML text; errors carry line and column.
    pub fn parse(text: &str) -> Result<Config, String> {
        let c: Config = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start].matches('\n').count() + 1;
                    format!("line {line}: ")
                })
                .unwrap_or_default();
            format!("{at}{}", e.message())
        })?;
        if c.version != 1 {
            return Err(format!(
                "unsupported config version {} (expected 1)",
                c.version
            ));
        }
        if let Some(ch) = &c.sink.clickhouse {
            ch.validate()?;
        }
        c.webhooks.validate()?;
        Ok(c)
    }

    pub fn save(&self, dir: &Path) -> Result<(), ConfigError> {
        let path = dir.join(FILE);
        let text = toml::to_string_pretty(self).unwrap_or_default();
        std::fs::write(&path, text).map_err(|source| ConfigError::Io { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_settings_have_defaults_and_bad_ones_are_named() {
        let base = "version = 1\nlisten = \"127.0.0.1:1\"\nadvertise = []\n";
        let c = Config::parse(base).unwrap();
        assert_eq!(c.webhooks, Webhooks::default());
        assert_eq!(
            c.webhooks.give_up().unwrap(),
            std::time::Duration::from_secs(72 * 3600)
        );
        let c = Config::parse(&format!("{base}[webhooks]\nretry_base_ms = 50\n")).unwrap();
        assert_eq!(
            (c.webhooks.retry_base_ms, c.webhooks.timeout_ms),
            (50, 10_000)
        );
        for (bad, says) in [
            ("retry_base_ms = 0", "retry_base_ms"),
            ("retry_base_ms = 9\nretry_max_ms = 3", "retry_max_ms"),
            ("give_up_after = \"soon\"", "give_up_after"),
            ("timeout_ms = 0", "timeout_ms"),
            ("retries = 3", "retries"),
        ] {
            let e = Config::parse(&format!("{base}[webhooks]\n{bad}\n")).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn unknown_field_names_the_line() {
        let e = Config::parse(
            "version = 1\nlisten = \"127.0.0.1:1\"\nadvertise = []\nlisten_port = 3\n",
        )
        .unwrap_err();
        assert!(e.contains("line 4") && e.contains("listen_port"), "{e}");
        let ok = Config::new("127.0.0.1:7443".into(), vec!["127.0.0.1:7443".into()]);
        let text = toml::to_string(&ok).unwrap();
        assert_eq!(Config::parse(&text).unwrap(), ok);
    }

    #[test]
    fn http_settings_default_and_round_trip() {
        let c = Config::parse("version = 1\nlisten = \"127.0.0.1:1\"\nadvertise = []\n").unwrap();
        assert_eq!(
            (
                c.http_listen.as_deref(),
                c.read_tokens.len(),
                c.http_rate_per_minute
            ),
            (None, 0, 600)
        );
        let mut c = c;
        c.http_listen = Some("127.0.0.1:9090".into());
        c.read_tokens = vec!["ab".repeat(32)];
        c.http_rate_per_minute = 5;
        let text = toml::to_string_pretty(&c).unwrap();
        assert_eq!(Config::parse(&text).unwrap(), c);
    }

    #[test]
    fn a_clickhouse_sink_defaults_round_trips_and_refuses_bad_names() {
        let base = "version = 1\nlisten = \"127.0.0.1:1\"\nadvertise = []\n";
        let c = Config::parse(&format!(
            "{base}[sink.clickhouse]\nurls = [\"http://127.0.0.1:8123\"]\n"
        ))
        .unwrap();
        let ch = c.sink.clickhouse.clone().unwrap();
        assert_eq!(
            (ch.database.as_str(), ch.table.as_str(), ch.cluster.as_str()),
            ("vantage", "results", "")
        );
        assert_eq!((ch.batch_size, ch.interval_ms), (20_000, 1_000));
        let text = toml::to_string_pretty(&c).unwrap();
        assert!(text.contains("[sink.clickhouse]"), "{text}");
        assert_eq!(Config::parse(&text).unwrap(), c);
        for (extra, says) in [
            ("urls = []", "urls is empty"),
            ("urls = [\"https://a:8443\"]", "not an http://"),
            (
                "urls = [\"http://a:1\"]\ntable = \"r; DROP\"",
                "sink.clickhouse.table",
            ),
            ("urls = [\"http://a:1\"]\nbatch_size = 0", "batch_size"),
            (
                "urls = [\"http://a:1\"]\nkeep_for = \"soon\"",
                "keep_for \"soon\"",
            ),
            (
                "urls = [\"http://a:1\"]\nkeep_for = \"0s\"",
                "longer than 0",
            ),
            ("urls = [\"http://a:1\"]\nshards = 2", "line 6"),
        ] {
            let e = Config::parse(&format!("{base}[sink.clickhouse]\n{extra}\n")).unwrap_err();
            assert!(e.contains(says), "{extra}: {e}");
        }
    }
}
