//! `vantagectl verdicts`: a campaign's verdicts, one row per run, target
//! and inside agent.

use anyhow::Result;
use tonic::transport::Channel;
use vantage_proto::v1::query_service_client::QueryServiceClient;
use vantage_proto::v1::{VerdictRow, VerdictsRequest};

use crate::common::{asn, dash, human, print_list, Output};

pub(crate) async fn run(ch: Channel, output: Output, campaign_id: &str) -> Result<()> {
    let r = QueryServiceClient::new(ch)
        .verdicts(VerdictsRequest {
            campaign_id: campaign_id.to_string(),
        })
        .await
        .map_err(human)?
        .into_inner();
    print_list(output, &r.verdicts, |rows| {
        print!("{}", verdict_table(rows))
    })
}

/// The verdict table: one row per (run, target, inside agent). COUNTRY
/// and ASN are the inside agent's (verdicts judge inside results against
/// the controls); NAME appears when any target has one.
fn verdict_table(rows: &[VerdictRow]) -> String {
    use std::fmt::Write;
    let width = |f: fn(&VerdictRow) -> usize, min: usize, max: usize| {
        rows.iter().map(f).max().unwrap_or(min).clamp(min, max)
    };
    let tw = width(|r| r.target.chars().count(), 6, 60);
    let named = rows.iter().any(|r| !r.name.is_empty());
    let nw = width(|r| r.name.chars().count(), 4, 40);
    let mut out = String::new();
    if named {
        let _ = write!(out, "{:<nw$}  ", "NAME");
    }
    let _ = writeln!(
        out,
        "{:<tw$}  {:<7}  {:>8}  {:<12}  {:<16}  {:>4}  REASON",
        "TARGET", "COUNTRY", "ASN", "STATUS", "MECHANISM", "CONF"
    );
    for r in rows {
        if named {
            let _ = write!(out, "{:<nw$}  ", dash(&r.name));
        }
        let _ = writeln!(
            out,
            "{:<tw$}  {:<7}  {:>8}  {:<12}  {:<16}  {:>4.2}  {}",
            r.target,
            dash(&r.country),
            asn(r.asn),
            r.status,
            dash(&r.mechanism),
            r.confidence,
            r.reason
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target: &str, name: &str, country: &str) -> VerdictRow {
        VerdictRow {
            target: target.into(),
            name: name.into(),
            country: country.into(),
            asn: 4134,
            status: "blocked".into(),
            mechanism: "tcp.reset".into(),
            confidence: 0.9,
            ..Default::default()
        }
    }

    #[test]
    fn verdict_table_names_its_columns() {
        let plain = verdict_table(&[row("tcp 192.0.2.1:443", "", "CN")]);
        let head = plain.lines().next().unwrap();
        assert!(head.starts_with("TARGET "), "{plain}");
        assert!(head.contains("COUNTRY") && head.contains("ASN"), "{plain}");
        assert!(!head.contains("GROUP") && !head.contains("NAME"), "{plain}");
        assert!(plain.lines().nth(1).unwrap().contains("CN"), "{plain}");
        assert!(plain.contains("AS4134"), "{plain}");
        let named = verdict_table(&[
            row("tcp 192.0.2.1:443", "Signal relay", "CN"),
            row("tcp 192.0.2.2:443", "", ""),
        ]);
        let lines: Vec<&str> = named.lines().collect();
        assert!(lines[0].starts_with("NAME "), "{named}");
        assert!(lines[1].starts_with("Signal relay"), "{named}");
        assert!(lines[2].starts_with("- "), "no name, no country: {named}");
    }
}
