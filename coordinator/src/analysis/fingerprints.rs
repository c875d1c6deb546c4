//! Block-page fingerprints: known pages and addresses censors serve,
//! in the column layout of OONI's public fingerprint lists
//! (`ooni/blocking-fingerprints`: `fingerprints_http.csv`,
//! `fingerprints_dns.csv`; Citizen Lab's lists use the same fields):
//!
//! `name,scope,other_names,location_found,pattern_type,pattern,
//! confidence_no_fp,expected_countries,source,exp_url,notes`
//!
//! - `location_found`: `body` (the response body's head, which the agent
//!   keeps as `body_head`), `header.<name>` (a response header, name
//!   case-insensitive), or `dns` (an answer address or CNAME);
//! - `pattern_type`: `contains`, `prefix` or `full` (exact).
//!
//! The built-in list (`fingerprints/http.csv`, `fingerprints/dns.csv`) is
//! a selection of entries from OONI's lists, each row keeping its OONI
//! name and `source`; a campaign adds its own rows in the same layout.

use std::fmt;

/// Where a pattern is looked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Body,
    /// Lower-cased header name.
    Header(String),
    Dns,
}

/// How a pattern matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatternType {
    Contains,
    Prefix,
    Full,
}

/// One fingerprint row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    pub name: String,
    pub location: Location,
    pub pattern_type: PatternType,
    pub pattern: String,
    pub expected_countries: Vec<String>,
    pub source: String,
}

impl Fingerprint {
    fn matches(&self, text: &str) -> bool {
        match self.pattern_type {
            PatternType::Contains => text.contains(&self.pattern),
            PatternType::Prefix => text.starts_with(&self.pattern),
            PatternType::Full => text == self.pattern,
        }
    }
}

/// Why a fingerprint list was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FingerprintError {
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
}

fn line_err(line: usize, message: impl Into<String>) -> FingerprintError {
    FingerprintError::Line {
        line,
        message: message.into(),
    }
}

/// The header every list starts with.
pub const HEADER: &str = "name,scope,other_names,location_found,pattern_type,pattern,\
                          confidence_no_fp,expected_countries,source,exp_url,notes";

/// Splits one CSV record (RFC 4180 quoting: `"a,b"`, `""` inside quotes).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (false, '"') if cur.is_empty() => quoted = true,
            (false, ',') => out.push(std::mem::take(&mut cur)),
            (_, c) => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    out.push(cur);
    Ok(out)
}

/// One row from its fields.
pub fn row(fields: &[&str]) -> Result<Fingerprint, String> {
    let get = |i: usize| fields.get(i).map(|s| s.trim()).unwrap_or("");
    let name = get(0);
    if name.is_empty() {
        return Err("name is empty".into());
    }
    let location = match get(3) {
        "body" => Location::Body,
        "dns" => Location::Dns,
        h if h.starts_with("header.") && h.len() > 7 => Location::Header(h[7..].to_lowercase()),
        other => {
            return Err(format!(
                "location_found {other:?} is not body, dns or header.<name>"
            ))
        }
    };
    let pattern_type = match get(4) {
        "contains" => PatternType::Contains,
        "prefix" => PatternType::Prefix,
        "full" => PatternType::Full,
        other => {
            return Err(format!(
                "pattern_type {other:?} is not contains, prefix or full"
            ))
        }
    };
    // The pattern itself is not trimmed: spaces can be part of it.
    let pattern = fields.get(5).copied().unwrap_or("");
    if pattern.trim().is_empty() {
        return Err("pattern is empty".into());
    }
    if pattern.len() > 1024 {
        return Err("pattern is longer than 1024 bytes".into());
    }
    Ok(Fingerprint {
        name: name.to_string(),
        location,
        pattern_type,
        pattern: pattern.to_string(),
        expected_countries: get(7)
            .split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect(),
        source: get(8).to_string(),
    })
}

/// Parses a list in the OONI layout (header line first).
pub fn parse_csv(text: &str) -> Result<Vec<Fingerprint>, FingerprintError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, h))
            if h.trim()
                .starts_with("name,scope,other_names,location_found") => {}
        Some((i, _)) => return Err(line_err(i + 1, format!("the header must be {HEADER:?}"))),
        None => return Ok(Vec::new()),
    }
    let mut out = Vec::new();
    for (i, l) in lines {
        let fields = csv_fields(l).map_err(|m| line_err(i + 1, m))?;
        let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
        out.push(row(&refs).map_err(|m| line_err(i + 1, m))?);
    }
    Ok(out)
}

/// The lists a verdict is computed with.
#[derive(Clone, Debug, Default)]
pub struct Fingerprints {
    pub rows: Vec<Fingerprint>,
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = match &self.location {
            Location::Body => "body".to_string(),
            Location::Header(h) => format!("header {h}"),
            Location::Dns => "DNS answer".to_string(),
        };
        write!(f, "{} ({at}", self.name)?;
        if !self.source.is_empty() {
            write!(f, ", source {}", self.source)?;
        }
        f.write_str(")")
    }
}

static BUILTIN_HTTP: &str = include_str!("fingerprints/http.csv");
static BUILTIN_DNS: &str = include_str!("fingerprints/dns.csv");

impl Fingerprints {
    /// The built-in lists.
    pub fn builtin() -> &'static Fingerprints {
        static F: std::sync::OnceLock<Fingerprints> = std::sync::OnceLock::new();
        F.get_or_init(|| {
            let mut rows = parse_csv(BUILTIN_HTTP).unwrap_or_default();
            rows.extend(parse_csv(BUILTIN_DNS).unwrap_or_default());
            Fingerprints { rows }
        })
    }

    /// The built-in lists plus `extra` (a campaign's own).
    pub fn with_extra(extra: &[Fingerprint]) -> Fingerprints {
        let mut rows = Self::builtin().rows.clone();
        rows.extend(extra.iter().cloned());
        Fingerprints { rows }
    }

    /// The first HTTP fingerprint a response matches.
    pub fn http_match<'a>(
        &self,
        body_head: &str,
        headers: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    ) -> Option<&Fingerprint> {
        self.rows.iter().find(|f| match &f.location {
            Location::Body => f.matches(body_head),
            Location::Header(h) => headers
                .clone()
                .any(|(n, v)| n.eq_ignore_ascii_case(h) && f.matches(v)),
            Location::Dns => false,
        })
    }

    /// The first DNS fingerprint an answer (address or name) matches.
    pub fn dns_match(&self, answer: &str) -> Option<&Fingerprint> {
        let answer = answer.trim_end_matches('.');
        self.rows
            .iter()
            .find(|f| f.location == Location::Dns && f.matches(answer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_lists_parse_whole() {
        let http = parse_csv(BUILTIN_HTTP).expect("http list");
        let dns = parse_csv(BUILTIN_DNS).expect("dns list");
        assert!(http.len() >= 20, "{}", http.len());
        assert!(dns.len() >= 10, "{}", dns.len());
        assert_eq!(Fingerprints::builtin().rows.len(), http.len() + dns.len());
        assert!(http.iter().all(|f| f.location != Location::Dns));
        assert!(dns.iter().all(|f| f.location == Location::Dns));
    }

    #[test]
    fn quoted_fields_and_matching() {
        let rows = parse_csv(&format!(
            "{HEADER}\nx.1,nat,,body,contains,\"a \"\"quoted\"\", pattern\",5,\"AE,SA\",lab,,\n\
             x.2,isp,,header.Server,prefix,Protected by,5,AE,lab,,\n\
             x.3,isp,,dns,full,10.10.34.34,5,IR,lab,,\n"
        ))
        .expect("parses");
        assert_eq!(rows[0].pattern, "a \"quoted\", pattern");
        assert_eq!(rows[0].expected_countries, vec!["AE", "SA"]);
        let fp = Fingerprints { rows };
        let hdr = [("server", "Protected by WireFilter")];
        assert_eq!(
            fp.http_match("", hdr.iter().map(|(a, b)| (*a, *b)))
                .map(|f| f.name.as_str()),
            Some("x.2")
        );
        assert_eq!(
            fp.http_match("<p>a \"quoted\", pattern</p>", std::iter::empty())
                .map(|f| f.name.as_str()),
            Some("x.1")
        );
        assert!(fp
            .http_match("an ordinary page", std::iter::empty())
            .is_none());
        assert_eq!(
            fp.dns_match("10.10.34.34").map(|f| f.name.as_str()),
            Some("x.3")
        );
        assert!(fp.dns_match("10.10.34.3").is_none());
    }

    #[test]
    fn bad_rows_name_their_line() {
        let e = parse_csv(&format!("{HEADER}\nx,nat,,somewhere,contains,p,5,,,,\n"))
            .expect_err("bad location");
        assert_eq!(e.to_string().split(':').next(), Some("line 2"));
        assert!(parse_csv("a,b,c\n").is_err());
        assert!(parse_csv(&format!("{HEADER}\nx,nat,,body,regex,p,5,,,,\n")).is_err());
        assert!(parse_csv(&format!("{HEADER}\nx,nat,,body,contains,\"open\n")).is_err());
        assert!(parse_csv(&format!("{HEADER}\n,nat,,body,contains,p,5,,,,\n")).is_err());
    }
}
