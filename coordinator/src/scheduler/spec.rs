//! The campaign spec (TOML, or JSON) and its validation. Every refusal
//! happens before anything is stored and names the line and the field.
//! This module reads text only: no clock, no store, no agents.
//!
//! ```toml
//! version = 1
//! name = "sni-filtering"
//! description = "..."
//! deadline = "2m"                 # per run
//! allow_private_targets = false   # lab specs set true
//!
//! [schedule]
//! every = "6h"                    # omit (or `once = true`) for a single run
//! start = "2026-12-01T00:00:00Z"  # optional; default: when created
//! end = "2026-12-08T00:00:00Z"    # required with `every`
//! spread = "10m"                  # random jitter inside [t, t + spread)
//!
//! [inside]
//! countries = ["CN"]
//! min_agents = 1
//! max_agents = 5
//!
//! [control]
//! tags = ["control"]
//!
//! [[targets]]
//! name = "Blocked example"        # optional: shown with results and verdicts
//! tls = { ip = "192.0.2.1", port = 443, sni = "blocked.example" }
//! ```
//!
//! Targets are checked by `vantage_proto::validate`, the same function every
//! agent runs before probing, and stored normalised (host names as IDNA
//! punycode), so agents receive exactly what they will probe.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vantage_proto::v1::{probe_input::Kind, ProbeInput};
use vantage_proto::validate::{parse_ip, parse_resolver};

/// Most runs one campaign may expand to (four a day for about seven years,
/// or every 10 minutes for about ten weeks).
pub const MAX_RUNS: usize = 10_000;

/// Most targets in one campaign (the Citizen Lab global list has ~1,500).
pub const MAX_TARGETS: usize = 10_000;

/// Longest per-run deadline (the `encrypted` probe's residual re-tests need
/// minutes; nothing needs a day).
pub const MAX_DEADLINE: Duration = Duration::from_secs(24 * 3600);

/// Longest duration accepted anywhere, so microsecond arithmetic never
/// overflows (about 100 years).
const MAX_DURATION: Duration = Duration::from_secs(100 * 366 * 24 * 3600);

/// Default per-run deadline.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(120);

/// Spec text format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecFormat {
    Toml,
    Json,
}

impl SpecFormat {
    /// By file extension: `.json` is JSON, anything else TOML.
    pub fn from_path(p: &std::path::Path) -> SpecFormat {
        match p.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => SpecFormat::Json,
            _ => SpecFormat::Toml,
        }
    }
}

/// Why a spec was refused. `Display` reads "line L, column C: message" for
/// syntax errors and "line L: field: message" for refused values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpecError {
    /// Not TOML/JSON, or not the spec's shape: an unknown field, an unknown
    /// probe kind, a wrong type, a missing field.
    #[error("{}{message}", at(*line, *column))]
    Syntax {
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    /// Well-formed, but a value is refused.
    #[error("{}{field}: {message}", at(*line, None))]
    Invalid {
        line: Option<usize>,
        field: String,
        message: String,
    },
}

fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("line {l}, column {c}: "),
        (Some(l), None) => format!("line {l}: "),
        _ => String::new(),
    }
}

impl SpecError {
    /// The 1-based line the error points at, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            SpecError::Syntax { line, .. } | SpecError::Invalid { line, .. } => *line,
        }
    }

    /// The refused field (dotted, e.g. `schedule.end`, `targets[2]`).
    pub fn field(&self) -> Option<&str> {
        match self {
            SpecError::Invalid { field, .. } => Some(field),
            SpecError::Syntax { .. } => None,
        }
    }
}

pub(super) fn invalid(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        line: None,
        field: field.into(),
        message: message.into(),
    }
}

/// A duration as people write it ("1h 30m").
fn human(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(d)
}

/// Which agents make up a group. Explicit `agent_ids` are always members;
/// otherwise an agent must match every selector kind given (countries AND
/// asns AND tags), any entry within one list.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct GroupSelector {
    /// ISO 3166-1 alpha-2 codes, case-insensitive.
    pub countries: Vec<String>,
    pub asns: Vec<u32>,
    pub tags: Vec<String>,
    pub agent_ids: Vec<String>,
    pub min_agents: u32,
    pub max_agents: Option<u32>,
}

impl GroupSelector {
    /// Whether no selector at all is given.
    pub fn is_empty(&self) -> bool {
        self.countries.is_empty()
            && self.asns.is_empty()
            && self.tags.is_empty()
            && self.agent_ids.is_empty()
    }
}

/// When runs happen: once (at `start`, default now), or `every` interval
/// from `start` to `end` inclusive; each run jittered by up to `spread`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Schedule {
    /// Explicitly a single run (the default without `every`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub once: bool,
    /// Interval between runs ("6h"); none means a single run.
    pub every: Option<String>,
    /// RFC 3339 start; default: when the campaign is created.
    pub start: Option<String>,
    /// RFC 3339 end; required with `every`.
    pub end: Option<String>,
    /// Random jitter inside [nominal, nominal + spread), as RIPE Atlas does.
    pub spread: Option<String>,
}

/// A validated campaign spec.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CampaignSpec {
    pub version: u32,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub targets: Vec<ProbeInput>,
    pub inside: GroupSelector,
    pub control: GroupSelector,
    #[serde(default)]
    pub schedule: Schedule,
    /// Per-run deadline ("2m"); default 2 minutes.
    #[serde(default)]
    pub deadline: Option<String>,
    #[serde(default)]
    pub allow_private_targets: bool,
    /// Block-page fingerprints of the campaign's own, added to the
    /// built-in list (`analysis/fingerprints/`), in the columns of OONI's
    /// public fingerprint lists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blockpage_fingerprints: Vec<FingerprintSpec>,
    /// Consecutive runs a new state must hold before it is a change event
    /// (`crate::changes`); default 2, so one flap is not an event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_after_runs: Option<u32>,
}

/// Runs a new state holds before it is a change event, by default.
pub const CHANGE_AFTER_RUNS: u32 = 2;

/// Most fingerprints one campaign may add.
pub(super) const MAX_FINGERPRINTS: usize = 1_000;

/// One fingerprint row of a spec, with the column names of OONI's lists
/// (`ooni/blocking-fingerprints`), e.g.
///
/// ```toml
/// [[blockpage_fingerprints]]
/// name = "lab.censor_0"
/// location_found = "body"        # body | header.<name> | dns
/// pattern_type = "contains"      # contains | prefix | full
/// pattern = "Access Denied - Vantage lab censor"
/// source = "vantage lab"
/// ```
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FingerprintSpec {
    pub name: String,
    pub scope: String,
    pub other_names: String,
    pub location_found: String,
    pub pattern_type: String,
    pub pattern: String,
    pub confidence_no_fp: Option<u32>,
    pub expected_countries: String,
    pub source: String,
    pub exp_url: String,
    pub notes: String,
}

impl FingerprintSpec {
    /// The checked fingerprint.
    pub fn parse(&self) -> Result<crate::analysis::fingerprints::Fingerprint, String> {
        crate::analysis::fingerprints::row(&[
            &self.name,
            &self.scope,
            &self.other_names,
            &self.location_found,
            &self.pattern_type,
            &self.pattern,
            "",
            &self.expected_countries,
            &self.source,
        ])
    }
}

impl CampaignSpec {
    /// The campaign's own fingerprints (those that parse; a stored spec
    /// was validated when created).
    pub fn fingerprints(&self) -> Vec<crate::analysis::fingerprints::Fingerprint> {
        self.blockpage_fingerprints
            .iter()
            .filter_map(|f| f.parse().ok())
            .collect()
    }
}

/// Parses a duration field ("30s", "10m", "6h", "1day").
pub(super) fn duration(field: &str, s: &str) -> Result<Duration, SpecError> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| {
        invalid(
            field,
            format!("bad duration {s:?}: {e} (use e.g. 30s, 10m, 6h, 1day)"),
        )
    })?;
    if d.is_zero() {
        return Err(invalid(field, format!("duration {s:?} must be positive")));
    }
    if d > MAX_DURATION {
        return Err(invalid(field, format!("duration {s:?} is absurdly long")));
    }
    Ok(d)
}

/// Parses an RFC 3339 time field into Unix microseconds.
pub(super) fn timestamp_us(field: &str, s: &str) -> Result<i64, SpecError> {
    let t = humantime::parse_rfc3339_weak(s.trim()).map_err(|e| {
        invalid(
            field,
            format!("bad time {s:?}: {e} (use RFC 3339, e.g. 2026-12-01T00:00:00Z)"),
        )
    })?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| invalid(field, format!("time {s:?} is before 1970")))?;
    i64::try_from(d.as_micros()).map_err(|_| invalid(field, format!("time {s:?} is too late")))
}

pub(super) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl CampaignSpec {
    /// Per-run deadline in microseconds (default 2 minutes).
    pub fn deadline_us(&self) -> i64 {
        let d = self
            .deadline
            .as_deref()
            .and_then(|d| humantime::parse_duration(d.trim()).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_DEADLINE);
        micros(d.min(MAX_DEADLINE))
    }

    /// The distinct probe kinds of the targets, in first-seen order (for
    /// consent checks).
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for t in &self.targets {
            let k = t.kind_name();
            if !out.contains(&k) {
                out.push(k);
            }
        }
        out
    }

    /// Everything the spec says, checked. The first problem wins.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.clone().validated().map(|_| ())
    }

    /// The spec checked (the first problem wins), with its targets
    /// normalised by `vantage_proto::validate` (what agents will probe).
    pub fn validated(mut self) -> Result<CampaignSpec, SpecError> {
        if self.version != 1 {
            return Err(invalid(
                "version",
                format!("unsupported version {} (expected 1)", self.version),
            ));
        }
        if self.name.trim().is_empty() {
            return Err(invalid("name", "must not be empty"));
        }
        if self.name.chars().count() > 200 {
            return Err(invalid("name", "longer than 200 characters"));
        }
        if let Some(d) = &self.deadline {
            let d = duration("deadline", d)?;
            if d > MAX_DEADLINE {
                let (d, max) = (human(d), human(MAX_DEADLINE));
                let why = format!("{d} is longer than the {max} maximum");
                return Err(invalid("deadline", why));
            }
        }
        if let Some(k) = self.change_after_runs {
            if !(1..=100).contains(&k) {
                return Err(invalid(
                    "change_after_runs",
                    format!("{k} is not between 1 and 100"),
                ));
            }
        }
        self.targets = self.validate_targets()?;
        if self.blockpage_fingerprints.len() > MAX_FINGERPRINTS {
            return Err(invalid(
                "blockpage_fingerprints",
                format!("more than the {MAX_FINGERPRINTS} allowed"),
            ));
        }
        for (i, f) in self.blockpage_fingerprints.iter().enumerate() {
            f.parse()
                .map_err(|m| invalid(format!("blockpage_fingerprints[{i}]"), m))?;
        }
        for (name, g) in [("inside", &self.inside), ("control", &self.control)] {
            validate_group(name, g)?;
        }
        if let Some(id) = self
            .inside
            .agent_ids
            .iter()
            .find(|id| self.control.agent_ids.contains(id))
        {
            return Err(invalid(
                "control.agent_ids",
                format!("agent {id:?} is in both groups: inside and control must not overlap"),
            ));
        }
        if self.inside.agent_ids.is_empty() && selects_same(&self.inside, &self.control) {
            return Err(invalid(
                "control",
                "selects exactly the agents inside does: a control must be outside",
            ));
        }
        self.validate_schedule()?;
        Ok(self)
    }

    /// The targets, each checked and normalised as agents would, then held
    /// to the address policy (which depends on `allow_private_targets`).
    fn validate_targets(&self) -> Result<Vec<ProbeInput>, SpecError> {
        if self.targets.is_empty() {
            return Err(invalid("targets", "at least one target is needed"));
        }
        if self.targets.len() > MAX_TARGETS {
            return Err(invalid(
                "targets",
                format!(
                    "{} targets is more than the {MAX_TARGETS} allowed",
                    self.targets.len()
                ),
            ));
        }
        let mut out = Vec::with_capacity(self.targets.len());
        for (i, t) in self.targets.iter().enumerate() {
            let field = format!("targets[{i}]");
            let t = vantage_proto::validate::validate(t).map_err(|e| {
                let at = match e.field() {
                    None => field.clone(),
                    Some("name") => format!("{field}.name"),
                    Some(f) => format!("{field}.{}.{f}", t.kind_name()),
                };
                invalid(at, e.to_string())
            })?;
            let Some(kind) = t.kind.as_ref() else {
                return Err(invalid(&field, "no probe kind"));
            };
            if !self.allow_private_targets {
                for (what, ip) in literal_ips(kind) {
                    if let Some(range) = vantage_proto::ranges::special_range(ip) {
                        return Err(invalid(
                            format!("{field}.{}", t.kind_name()),
                            format!(
                                "{what} {ip} is in a {range} range \
                                 (set allow_private_targets = true for lab use)"
                            ),
                        ));
                    }
                }
            }
            out.push(t);
        }
        Ok(out)
    }

    fn validate_schedule(&self) -> Result<(), SpecError> {
        let s = &self.schedule;
        let start = s
            .start
            .as_deref()
            .map(|t| timestamp_us("schedule.start", t))
            .transpose()?;
        let spread = s
            .spread
            .as_deref()
            .map(|d| duration("schedule.spread", d))
            .transpose()?;
        match (&s.every, &s.end) {
            (Some(_), _) if s.once => Err(invalid(
                "schedule.once",
                "a schedule is either `once` or `every`, not both",
            )),
            (Some(e), Some(end)) => {
                let every = duration("schedule.every", e)?;
                let end = timestamp_us("schedule.end", end)?;
                if let Some(start) = start {
                    if end <= start {
                        return Err(invalid("schedule.end", "end must be after start"));
                    }
                    let runs = run_count(start, end, micros(every));
                    if runs > MAX_RUNS as u128 {
                        return Err(too_many_runs(runs));
                    }
                }
                if let Some(spread) = spread {
                    // RIPE Atlas: the spread must be shorter than the
                    // interval, so jittered runs never overtake each other.
                    if spread >= every {
                        let (spread, every) = (human(spread), human(every));
                        let why = format!("spread {spread} must be shorter than every {every}");
                        return Err(invalid("schedule.spread", why));
                    }
                }
                Ok(())
            }
            (Some(_), None) => Err(invalid(
                "schedule.end",
                "required when schedule.every is set",
            )),
            (None, Some(_)) => Err(invalid(
                "schedule.end",
                "only meaningful with schedule.every (a single run has no end)",
            )),
            (None, None) => Ok(()),
        }
    }
}

/// Runs from `start` to `end` inclusive every `every` microseconds.
pub(super) fn run_count(start: i64, end: i64, every: i64) -> u128 {
    if end < start || every <= 0 {
        return 0;
    }
    ((end as i128 - start as i128) / every as i128 + 1) as u128
}

pub(super) fn too_many_runs(runs: u128) -> SpecError {
    invalid(
        "schedule.every",
        format!(
            "{runs} runs is more than the {MAX_RUNS} allowed: lengthen `every` or shorten the window"
        ),
    )
}

fn validate_group(name: &str, g: &GroupSelector) -> Result<(), SpecError> {
    if g.is_empty() {
        return Err(invalid(
            name,
            "empty group: give countries, asns, tags or agent_ids",
        ));
    }
    if let Some(max) = g.max_agents {
        if max == 0 {
            return Err(invalid(format!("{name}.max_agents"), "must be at least 1"));
        }
        if g.min_agents > max {
            return Err(invalid(
                format!("{name}.min_agents"),
                format!(
                    "empty group: min_agents ({}) is more than max_agents ({max})",
                    g.min_agents
                ),
            ));
        }
    }
    if let Some(c) = g
        .countries
        .iter()
        .find(|c| c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()))
    {
        return Err(invalid(
            format!("{name}.countries"),
            format!("{c:?} is not an ISO 3166-1 alpha-2 code"),
        ));
    }
    if g.tags.iter().any(|t| t.trim().is_empty()) {
        return Err(invalid(format!("{name}.tags"), "empty tag"));
    }
    if g.agent_ids.iter().any(|t| t.trim().is_empty()) {
        return Err(invalid(format!("{name}.agent_ids"), "empty agent id"));
    }
    Ok(())
}

fn sorted_lower(v: &[String]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_ascii_lowercase()).collect();
    v.sort();
    v.dedup();
    v
}

fn selects_same(a: &GroupSelector, b: &GroupSelector) -> bool {
    let mut asns = (a.asns.clone(), b.asns.clone());
    asns.0.sort_unstable();
    asns.0.dedup();
    asns.1.sort_unstable();
    asns.1.dedup();
    sorted_lower(&a.countries) == sorted_lower(&b.countries)
        && asns.0 == asns.1
        && sorted_lower(&a.tags) == sorted_lower(&b.tags)
        && a.agent_ids == b.agent_ids
}

/// The IP of a resolver ("ip:port", "[v6]:port" or a bare IP).
fn resolver_ip(s: &str) -> Option<IpAddr> {
    parse_resolver(s).map(|a| a.ip())
}

/// The host of an http(s) URL, without port or brackets.
fn url_host(url: &str) -> Result<&str, String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("url {url:?} must start with http:// or https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let hostport = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        hostport.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return Err(format!("url {url:?} has no host"));
    }
    Ok(host)
}

/// Every literal IP a target would send packets to, with what it is.
fn literal_ips(k: &Kind) -> Vec<(&'static str, IpAddr)> {
    let mut out: Vec<(&'static str, Option<IpAddr>)> = Vec::new();
    match k {
        Kind::Dns(d) | Kind::DnsInjection(d) => {
            out.push(("resolver", resolver_ip(&d.resolver)));
            if let Ok(h) = url_host(&d.doh_url) {
                out.push(("doh_url host", parse_ip(h)));
            }
        }
        Kind::Tcp(t) => out.push(("host", parse_ip(&t.host))),
        Kind::Tls(t) => out.push(("ip", parse_ip(&t.ip))),
        Kind::Http(h) => {
            out.push(("ip", parse_ip(&h.ip)));
            if let Ok(host) = url_host(&h.url) {
                out.push(("url host", parse_ip(host)));
            }
        }
        Kind::Web(w) => {
            out.push(("resolver", resolver_ip(&w.resolver)));
            if let Ok(host) = url_host(&w.url) {
                out.push(("url host", parse_ip(host)));
            }
        }
        Kind::Quic(q) => out.push(("ip", parse_ip(&q.ip))),
        Kind::Openvpn(o) => out.push(("ip", parse_ip(&o.ip))),
        Kind::Tor(t) => out.push(("ip", parse_ip(&t.ip))),
        Kind::Encrypted(e) => out.push(("ip", parse_ip(&e.ip))),
        Kind::Wireguard(w) => out.push(("ip", parse_ip(&w.ip))),
        Kind::AppStore(a) => {
            if let Ok(host) = url_host(&a.base_url) {
                out.push(("base_url host", parse_ip(host)));
            }
        }
    }
    out.into_iter()
        .filter_map(|(w, ip)| ip.map(|ip| (w, ip)))
        .collect()
}

/// 1-based (line, column) of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before, |n| &before[n + 1..])
        .chars()
        .count()
        + 1;
    (line, col)
}

/// Offsets where `key` is written as a key: TOML `key =`, `key.x =`,
/// `[key]`, `[[key]]`, inline `{ key = ...}`, or JSON `"key":`.
fn key_offsets<'a>(text: &'a str, from: usize, key: &'a str) -> impl Iterator<Item = usize> + 'a {
    let hay = text.get(from..).unwrap_or_default();
    hay.match_indices(key).filter_map(move |(i, _)| {
        let start = from + i;
        let end = start + key.len();
        let (mut before, mut after) = (&text[..start], &text[end..]);
        let quoted = match (before.strip_suffix('"'), after.strip_prefix('"')) {
            (Some(b), Some(a)) => {
                (before, after) = (b, a);
                true
            }
            _ => false,
        };
        let line_start = before.rfind('\n').map_or(0, |n| n + 1);
        if text[line_start..start].contains('#') {
            return None; // a TOML comment
        }
        let prev = before.trim_end_matches([' ', '\t']).chars().next_back();
        let next = after.trim_start_matches([' ', '\t']).chars().next();
        let key_start = matches!(prev, None | Some('\n' | '{' | ',' | '['));
        let key_end = if quoted {
            // JSON `"key":` (a quoted TOML key is `"key" =`); `["key"]` is a value.
            matches!(next, Some(':' | '='))
        } else {
            matches!(next, Some('=' | '.' | ']'))
        };
        (key_start && key_end).then_some(start)
    })
}

/// Finds where `field` (dotted, e.g. "schedule.every", "inside",
/// "targets[2].tcp.port") is written, for error messages.
fn locate(text: &str, field: &str) -> Option<usize> {
    let mut parts = field.split('.');
    let head = parts.next()?;
    // Where the target's own keys may be: [lo, hi), its kind key at `at`.
    let (mut at, lo, hi) = if let Some(rest) = head.strip_prefix("targets[") {
        let n: usize = rest.strip_suffix(']')?.parse().ok()?;
        let headers: Vec<usize> = key_offsets(text, 0, "targets").collect();
        let (from, nth, next) = match headers.get(n) {
            // TOML [[targets]] headers: one per target.
            Some(h) if headers.len() > 1 || n == 0 => (*h, 0, headers.get(n + 1).copied()),
            // One `targets` key holding an array: count kind keys.
            _ => (*headers.first()?, n, None),
        };
        let mut kinds: Vec<usize> = vantage_proto::PROBE_KINDS
            .iter()
            .flat_map(|k| key_offsets(text, from, k))
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        let at = kinds.get(nth).copied().unwrap_or(from);
        let lo = match nth {
            0 => from,
            _ => kinds.get(nth - 1).map_or(from, |k| k + 1),
        };
        let hi = next
            .or_else(|| kinds.get(nth + 1).copied())
            .unwrap_or(text.len());
        (at, lo, hi.max(at))
    } else {
        let at = key_offsets(text, 0, head).next()?;
        (at, at, text.len())
    };
    for part in parts {
        // After the kind key (its fields), else before it (a `name`
        // written first), never in another target.
        let found = key_offsets(text, at, part)
            .find(|o| *o < hi)
            .or_else(|| key_offsets(text, lo, part).take_while(|o| *o < at).last());
        match found {
            Some(o) => at = o,
            None => break,
        }
    }
    Some(position(text, at).0)
}

/// Parses and validates a spec; nothing is stored before this returns Ok.
pub fn parse_spec(text: &str, format: SpecFormat) -> Result<CampaignSpec, SpecError> {
    let spec: CampaignSpec = match format {
        SpecFormat::Toml => toml::from_str(text).map_err(|e| {
            let (line, column) = match e.span() {
                Some(s) => {
                    let (l, c) = position(text, s.start);
                    (Some(l), Some(c))
                }
                None => (None, None),
            };
            SpecError::Syntax {
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?,
        SpecFormat::Json => serde_json::from_str(text).map_err(|e| {
            // serde_json's Display repeats the position; keep one.
            let msg = e.to_string();
            let msg = msg
                .rsplit_once(" at line ")
                .map_or(msg.as_str(), |(m, _)| m)
                .to_string();
            SpecError::Syntax {
                line: Some(e.line()).filter(|l| *l > 0),
                column: Some(e.column()).filter(|c| *c > 0),
                message: msg,
            }
        })?,
    };
    spec.validated().map_err(|e| match e {
        SpecError::Invalid {
            line: None,
            field,
            message,
        } => SpecError::Invalid {
            line: locate(text, &field),
            field,
            message,
        },
        other => other,
    })
}

#[cfg(test)]
mod tests;
