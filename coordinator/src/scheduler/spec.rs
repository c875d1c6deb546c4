//! The campaign spec (TOML, or JSON) and its validation. Every refusal
//! happens before anything is stored, and names the line and the field.
//!
//! ```toml
//! version = 1
//! name = "sni-filtering"
//! description = "..."
//! deadline = "2m"                 # per run
//! allow_private_targets = false   # lab specs set true
//!
//! [schedule]
//! every = "6h"                    # omit for a single run
//! start = "2026-12-01T00:00:00Z"  # optional; default now
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
//! tls = { ip = "192.0.2.1", port = 443, sni = "blocked.example" }
//! ```

use std::net::IpAddr;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use vantage_proto::v1::{probe_input::Kind, ProbeInput};

/// Most runs one campaign may expand to.
pub const MAX_RUNS: usize = 10_000;

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
            Some("json") => SpecFormat::Json,
            _ => SpecFormat::Toml,
        }
    }
}

/// Why a spec was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpecError {
    #[error("{0}")]
    Syntax(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Which agents make up a group. Selectors are AND-ed across kinds and
/// OR-ed within one list; explicit ids are always eligible.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct GroupSelector {
    pub countries: Vec<String>,
    pub asns: Vec<u32>,
    pub tags: Vec<String>,
    pub agent_ids: Vec<String>,
    pub min_agents: u32,
    pub max_agents: Option<u32>,
}

/// When runs happen.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Schedule {
    /// Interval between runs ("6h"); none means a single run.
    pub every: Option<String>,
    /// RFC 3339 start; default: when the campaign is created.
    pub start: Option<String>,
    /// RFC 3339 end; required with `every`.
    pub end: Option<String>,
    /// Random jitter inside [nominal, nominal + spread).
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
}

/// One planned run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunPlan {
    pub index: u32,
    pub nominal_us: i64,
    pub dispatch_us: i64,
}

fn duration(field: &str, s: &str) -> Result<Duration, SpecError> {
    let d = humantime::parse_duration(s).map_err(|e| {
        invalid(
            field,
            format!("bad duration {s:?}: {e} (use e.g. 30s, 10m, 6h, 1day)"),
        )
    })?;
    if d.is_zero() {
        return Err(invalid(field, "duration must be positive"));
    }
    Ok(d)
}

fn timestamp_us(field: &str, s: &str) -> Result<i64, SpecError> {
    let t = humantime::parse_rfc3339_weak(s).map_err(|e| {
        invalid(
            field,
            format!("bad time {s:?}: {e} (use RFC 3339, e.g. 2026-12-01T00:00:00Z)"),
        )
    })?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| invalid(field, "time before 1970"))?;
    Ok(d.as_micros() as i64)
}

impl CampaignSpec {
    /// Per-run deadline in microseconds.
    pub fn deadline_us(&self) -> i64 {
        self.deadline
            .as_deref()
            .and_then(|d| humantime::parse_duration(d).ok())
            .unwrap_or(Duration::from_secs(120))
            .as_micros() as i64
    }

    fn validate(&self) -> Result<(), SpecError> {
        if self.version != 1 {
            return Err(invalid(
                "version",
                format!("unsupported version {} (expected 1)", self.version),
            ));
        }
        if self.name.trim().is_empty() {
            return Err(invalid("name", "must not be empty"));
        }
        if self.targets.is_empty() {
            return Err(invalid("targets", "at least one target is needed"));
        }
        for (i, t) in self.targets.iter().enumerate() {
            let field = format!("targets[{i}]");
            let kind = t.kind.as_ref().ok_or_else(|| {
                invalid(
                    &field,
                    format!(
                        "no probe kind (one of: {})",
                        vantage_proto::PROBE_KINDS.join(", ")
                    ),
                )
            })?;
            if !self.allow_private_targets {
                for ip in literal_ips(kind) {
                    if let Some(range) = vantage_proto::ranges::special_range(ip) {
                        return Err(invalid(
                            &field,
                            format!("target {ip} is in a {range} range (set allow_private_targets = true for lab use)"),
                        ));
                    }
                }
            }
        }
        for (name, g) in [("inside", &self.inside), ("control", &self.control)] {
            if g.countries.is_empty()
                && g.asns.is_empty()
                && g.tags.is_empty()
                && g.agent_ids.is_empty()
            {
                return Err(invalid(
                    name,
                    "empty group: give countries, asns, tags or agent_ids",
                ));
            }
            if let Some(max) = g.max_agents {
                if max == 0 || g.min_agents > max {
                    return Err(invalid(
                        name,
                        format!(
                            "min_agents ({}) must be <= max_agents ({max}) and max_agents >= 1",
                            g.min_agents
                        ),
                    ));
                }
            }
            for c in &g.countries {
                if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()) {
                    return Err(invalid(
                        format!("{name}.countries"),
                        format!("{c:?} is not an ISO 3166-1 alpha-2 code"),
                    ));
                }
            }
        }
        if let Some(d) = &self.deadline {
            duration("deadline", d)?;
        }
        if let Some(s) = &self.schedule.spread {
            duration("schedule.spread", s)?;
        }
        if let Some(s) = &self.schedule.start {
            timestamp_us("schedule.start", s)?;
        }
        match (&self.schedule.every, &self.schedule.end) {
            (Some(e), Some(end)) => {
                duration("schedule.every", e)?;
                let end = timestamp_us("schedule.end", end)?;
                if let Some(start) = &self.schedule.start {
                    if end <= timestamp_us("schedule.start", start)? {
                        return Err(invalid("schedule.end", "end must be after start"));
                    }
                }
            }
            (Some(_), None) => {
                return Err(invalid(
                    "schedule.end",
                    "required when schedule.every is set",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "schedule.every",
                    "schedule.end is set but every is missing",
                ))
            }
            (None, None) => {}
        }
        Ok(())
    }
}

fn literal_ips(k: &Kind) -> Vec<IpAddr> {
    let hosts: Vec<&str> = match k {
        Kind::Dns(d) | Kind::DnsInjection(d) => vec![d
            .resolver
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(&d.resolver)],
        Kind::Tcp(t) => vec![t.host.as_str()],
        Kind::Tls(t) => vec![t.ip.as_str()],
        Kind::Http(h) => vec![h.ip.as_str()],
        Kind::Web(w) => vec![w
            .resolver
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(&w.resolver)],
        Kind::Quic(q) => vec![q.ip.as_str()],
        Kind::Openvpn(o) => vec![o.ip.as_str()],
        Kind::Tor(t) => vec![t.ip.as_str()],
        Kind::Encrypted(e) => vec![e.ip.as_str()],
        Kind::Wireguard(w) => vec![w.ip.as_str()],
    };
    hosts
        .into_iter()
        .filter_map(|h| h.trim_start_matches('[').trim_end_matches(']').parse().ok())
        .collect()
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Finds the line where `field` (dotted, e.g. "schedule.every" or
/// "targets[2]") is written, for error messages.
fn locate(text: &str, field: &str) -> Option<usize> {
    if let Some(rest) = field.strip_prefix("targets[") {
        let n: usize = rest.split(']').next()?.parse().ok()?;
        return text
            .match_indices("[[targets]]")
            .nth(n)
            .map(|(o, _)| line_of(text, o) + 1)
            .or_else(|| text.find("targets").map(|o| line_of(text, o)));
    }
    let leaf = field.rsplit('.').next()?;
    let section = field.split('.').next()?;
    let from = if section != leaf {
        text.find(&format!("[{section}]")).unwrap_or(0)
    } else {
        0
    };
    text[from..]
        .lines()
        .scan(line_of(text, from), |ln, l| {
            let cur = *ln;
            *ln += 1;
            Some((cur, l))
        })
        .find(|(_, l)| {
            let t = l.trim_start();
            t.starts_with(leaf)
                || t.starts_with(&format!("\"{leaf}\""))
                || t.starts_with(&format!("[{leaf}]"))
        })
        .map(|(n, _)| n)
}

/// Parses and validates a spec. Errors read "line L: field: message".
pub fn parse_spec(text: &str, format: SpecFormat) -> Result<CampaignSpec, SpecError> {
    let spec: CampaignSpec = match format {
        SpecFormat::Toml => toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| format!("line {}: ", line_of(text, s.start)))
                .unwrap_or_default();
            SpecError::Syntax(format!("{at}{}", e.message().trim()))
        })?,
        SpecFormat::Json => serde_json::from_str(text).map_err(|e| {
            SpecError::Syntax(format!("line {}, column {}: {e}", e.line(), e.column()))
        })?,
    };
    spec.validate().map_err(|e| match e {
        SpecError::Invalid { field, message } => match locate(text, &field) {
            Some(line) => SpecError::Invalid {
                field: format!("line {line}: {field}"),
                message,
            },
            None => SpecError::Invalid { field, message },
        },
        other => other,
    })?;
    Ok(spec)
}

/// Expands the schedule into runs, each with its dispatch time jittered
/// uniformly inside [nominal, nominal + spread), deterministically for
/// `seed`. Refuses schedules over [`MAX_RUNS`].
pub fn expand_runs(spec: &CampaignSpec, now_us: i64, seed: u64) -> Result<Vec<RunPlan>, SpecError> {
    let start = match &spec.schedule.start {
        Some(s) => timestamp_us("schedule.start", s)?,
        None => now_us,
    };
    let spread = match &spec.schedule.spread {
        Some(s) => duration("schedule.spread", s)?.as_micros() as i64,
        None => 0,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut jitter = move || {
        if spread > 0 {
            rng.gen_range(0..spread)
        } else {
            0
        }
    };
    let nominals: Vec<i64> = match (&spec.schedule.every, &spec.schedule.end) {
        (Some(e), Some(end)) => {
            let every = duration("schedule.every", e)?.as_micros() as i64;
            let end = timestamp_us("schedule.end", end)?;
            let count = ((end - start).max(0) / every + 1) as u128;
            if count > MAX_RUNS as u128 {
                return Err(invalid(
                    "schedule",
                    format!("{count} runs is more than the {MAX_RUNS} allowed: lengthen `every` or shorten the window"),
                ));
            }
            (0..count as i64)
                .map(|i| start + i * every)
                .filter(|t| *t <= end)
                .collect()
        }
        _ => vec![start],
    };
    Ok(nominals
        .into_iter()
        .enumerate()
        .map(|(i, n)| RunPlan {
            index: i as u32,
            nominal_us: n,
            dispatch_us: n + jitter(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD: &str = r#"version = 1
name = "sni"
deadline = "30s"

[inside]
countries = ["CN"]

[control]
tags = ["control"]

[[targets]]
tls = { ip = "1.1.1.1", port = 443, sni = "blocked.example" }
"#;

    fn err(text: &str) -> String {
        parse_spec(text, SpecFormat::Toml).unwrap_err().to_string()
    }

    #[test]
    fn good_spec_parses() {
        let s = parse_spec(GOOD, SpecFormat::Toml).unwrap();
        assert_eq!(s.targets[0].kind_name(), "tls");
        assert_eq!(s.deadline_us(), 30_000_000);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(parse_spec(&json, SpecFormat::Json).unwrap(), s);
    }

    #[test]
    fn unknown_field_names_line_and_field() {
        let e = err(&GOOD.replace("deadline = \"30s\"", "deadlin = \"30s\""));
        assert!(e.contains("line 3") && e.contains("deadlin"), "{e}");
    }

    #[test]
    fn bad_duration_names_line_and_field() {
        let e = err(&GOOD.replace("\"30s\"", "\"thirty\""));
        assert!(
            e.contains("line 3") && e.contains("deadline") && e.contains("thirty"),
            "{e}"
        );
    }

    #[test]
    fn empty_group_is_refused() {
        let e = err(&GOOD.replace("tags = [\"control\"]", ""));
        assert!(
            e.contains("control") && e.contains("empty group") && e.contains("line 8"),
            "{e}"
        );
        let e = err(&GOOD.replace(
            "countries = [\"CN\"]",
            "countries = [\"CN\"]\nmin_agents = 3\nmax_agents = 2",
        ));
        assert!(e.contains("min_agents"), "{e}");
    }

    #[test]
    fn unknown_probe_kind_is_refused() {
        let e = err(&GOOD.replace("tls = {", "telnet = {"));
        assert!(
            e.contains("line 1") || e.contains("telnet") || e.contains("unknown"),
            "{e}"
        );
        assert!(e.contains("telnet") || e.contains("variant"), "{e}");
    }

    #[test]
    fn forbidden_target_is_refused_unless_lab() {
        let text = GOOD.replace("1.1.1.1", "10.0.0.1");
        let e = err(&text);
        assert!(
            e.contains("targets[0]") && e.contains("private") && e.contains("line 12"),
            "{e}"
        );
        let lab = text.replace(
            "deadline = \"30s\"",
            "deadline = \"30s\"\nallow_private_targets = true",
        );
        assert!(parse_spec(&lab, SpecFormat::Toml).is_ok());
    }

    #[test]
    fn schedule_rules() {
        let every = GOOD.replace(
            "[inside]",
            "[schedule]\nevery = \"1h\"\nstart = \"2026-01-01T00:00:00Z\"\nend = \"2026-01-01T05:00:00Z\"\nspread = \"10m\"\n\n[inside]",
        );
        let s = parse_spec(&every, SpecFormat::Toml).unwrap();
        assert_eq!(expand_runs(&s, 0, 1).unwrap().len(), 6);
        let e = err(&every.replace("end = \"2026-01-01T05:00:00Z\"\n", ""));
        assert!(e.contains("schedule.end"), "{e}");
        let e = err(&every.replace("2026-01-01T05", "2025-01-01T05"));
        assert!(e.contains("after start"), "{e}");
        let absurd = every
            .replace("every = \"1h\"", "every = \"1s\"")
            .replace("2026-01-01T05", "2027-01-01T05");
        let s = parse_spec(&absurd, SpecFormat::Toml).unwrap();
        assert!(expand_runs(&s, 0, 1)
            .unwrap_err()
            .to_string()
            .contains("more than"));
    }

    #[test]
    fn every_shipped_example_spec_validates() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/campaigns");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if !matches!(
                p.extension().and_then(|x| x.to_str()),
                Some("toml" | "json")
            ) {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let spec = parse_spec(&text, SpecFormat::from_path(&p))
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(!expand_runs(&spec, 1_790_000_000_000_000, 7)
                .unwrap()
                .is_empty());
            n += 1;
        }
        assert!(n >= 4, "expected the example specs in {}", dir.display());
    }

    proptest! {
        #[test]
        fn expansion_jitters_inside_spread_in_order(
            every_m in 1u64..600, runs in 1u64..50, spread_m in 0u64..60, seed in any::<u64>()
        ) {
            let start = 1_800_000_000i64;
            let end = start + (every_m * 60 * (runs - 1)) as i64;
            let mut s = parse_spec(GOOD, SpecFormat::Toml).unwrap();
            let fmt = |t: i64| humantime::format_rfc3339(std::time::UNIX_EPOCH + Duration::from_secs(t as u64)).to_string();
            s.schedule = Schedule {
                every: Some(format!("{every_m}m")),
                start: Some(fmt(start)),
                end: Some(fmt(end)),
                spread: (spread_m > 0).then(|| format!("{spread_m}m")),
            };
            let plans = expand_runs(&s, 0, seed).unwrap();
            prop_assert_eq!(plans.len() as u64, runs);
            prop_assert_eq!(&plans, &expand_runs(&s, 0, seed).unwrap());
            for (i, p) in plans.iter().enumerate() {
                prop_assert_eq!(p.index as usize, i);
                prop_assert_eq!(p.nominal_us, (start + (i as i64) * every_m as i64 * 60) * 1_000_000);
                prop_assert!(p.dispatch_us >= p.nominal_us);
                prop_assert!(p.dispatch_us < p.nominal_us + (spread_m * 60_000_000).max(1) as i64);
            }
        }
    }
}
