//! `vantagectl changes`: change events, the "since when" (a target, in one
//! country and AS, went from one state to another and held it), oldest
//! onset first; `--watch` keeps asking and prints the new ones.

use std::time::Duration;

use anyhow::{Context, Result};
use tonic::transport::Channel;
use vantage_proto::v1::query_service_client::QueryServiceClient;
use vantage_proto::v1::{ChangeEvent, ChangesRequest};

use crate::common::{asn, dash, human, print_list, Output};

/// `--since`: a duration back from now ("7d", "12h") or a time as the API
/// takes it (RFC 3339, a date, Unix microseconds).
pub(crate) fn since_value(v: &str) -> Result<String> {
    match humantime::parse_duration(v) {
        Ok(d) => {
            let t = std::time::SystemTime::now()
                .checked_sub(d)
                .context("--since reaches before 1970")?;
            Ok(humantime::format_rfc3339_seconds(t).to_string())
        }
        Err(_) => Ok(v.to_string()),
    }
}

fn time(us: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_micros(us.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn state(status: &str, mechanism: &str) -> String {
    if mechanism.is_empty() {
        status.to_string()
    } else {
        format!("{status} ({mechanism})")
    }
}

/// One line per event: the onset interval, the series and the change.
fn table(rows: &[ChangeEvent], header: bool) -> String {
    use std::fmt::Write;
    let tw = rows
        .iter()
        .map(|r| r.target.chars().count())
        .max()
        .unwrap_or(6)
        .clamp(6, 60);
    let mut out = String::new();
    if header {
        let _ = writeln!(
            out,
            "{:<20}  {:<20}  {:<tw$}  {:<7}  {:>8}  {:<9}  FROM -> TO",
            "AFTER", "BEFORE", "TARGET", "COUNTRY", "ASN", "CHANGE"
        );
    }
    for r in rows {
        let _ = writeln!(
            out,
            "{:<20}  {:<20}  {:<tw$}  {:<7}  {:>8}  {:<9}  {} -> {}",
            time(r.after_us),
            time(r.before_us),
            r.target,
            dash(&r.country),
            asn(r.asn),
            r.change,
            state(&r.from_status, &r.from_mechanism),
            state(&r.to_status, &r.to_mechanism),
        );
    }
    out
}

pub(crate) async fn run(
    ch: Channel,
    output: Output,
    mut req: ChangesRequest,
    watch: Option<Duration>,
) -> Result<()> {
    let mut q = QueryServiceClient::new(ch);
    let mut first = true;
    loop {
        // Every page from where the last one ended.
        loop {
            let r = q.changes(req.clone()).await.map_err(human)?.into_inner();
            if !r.changes.is_empty() || first {
                print_list(output, &r.changes, |rows| {
                    print!("{}", table(rows, first));
                })?;
                first = false;
            }
            if let Some(last) = r.changes.last() {
                req.cursor = next_cursor(&r.next_cursor, last);
            }
            if r.next_cursor.is_empty() {
                break;
            }
        }
        let Some(every) = watch else {
            return Ok(());
        };
        tokio::time::sleep(every).await;
    }
}

/// The cursor after `last`: the server's when it gave one, else the
/// event's own (a watch goes on from the last event it printed).
fn next_cursor(given: &str, last: &ChangeEvent) -> String {
    if !given.is_empty() {
        return given.to_string();
    }
    use base64::Engine;
    let k = vantage_coordinator::changes::order_key(last);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_duration_or_a_time_and_the_watch_cursor_is_the_servers() {
        assert!(since_value("7d").unwrap().ends_with('Z'));
        assert_eq!(since_value("2026-01-01").unwrap(), "2026-01-01");
        let e = ChangeEvent {
            campaign_id: "c".into(),
            target: "tcp 192.0.2.1:443".into(),
            after_us: 5,
            after_run_id: "r".into(),
            ..Default::default()
        };
        let key = vantage_coordinator::changes::order_key(&e);
        use base64::Engine;
        assert_eq!(
            next_cursor("", &e),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
        );
        assert_eq!(next_cursor("given", &e), "given");
        let t = table(&[e], true);
        assert!(
            t.starts_with("AFTER") && t.contains("tcp 192.0.2.1:443"),
            "{t}"
        );
    }
}
