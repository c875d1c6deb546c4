//! `vantagectl export` (a campaign's results as jsonl, ooni-jsonl, csv or
//! parquet) and `vantagectl verify-export` (every signature re-checked
//! offline).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::ValueEnum;
use futures::StreamExt;
use tonic::transport::Channel;
use vantage_coordinator::export;
use vantage_proto::v1::query_service_client::QueryServiceClient;
use vantage_proto::v1::{ListResultsRequest, VerdictsRequest};

use crate::common::human;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ExportFormat {
    Jsonl,
    OoniJsonl,
    Csv,
    Parquet,
}

pub(crate) async fn run(
    ch: Channel,
    campaign_id: &str,
    format: ExportFormat,
    out: Option<&PathBuf>,
    after_seq: Option<u64>,
) -> Result<()> {
    let mut q = QueryServiceClient::new(ch);
    // OONI's web_connectivity says whether a page was blocked: that
    // is the campaign's verdict (inside vs control), when there is one.
    let verdicts = if format == ExportFormat::OoniJsonl {
        match q
            .verdicts(VerdictsRequest {
                campaign_id: campaign_id.to_string(),
            })
            .await
        {
            Ok(r) => export::VerdictIndex::new(r.into_inner().verdicts),
            Err(e) => {
                eprintln!(
                    "warning: no verdicts ({}): blocking/accessible follow each \
                     measurement alone",
                    e.message()
                );
                export::VerdictIndex::default()
            }
        }
    } else {
        export::VerdictIndex::default()
    };
    let mut stream = q
        .list_results(ListResultsRequest {
            campaign_id: campaign_id.to_string(),
            after_seq,
            ..Default::default()
        })
        .await
        .map_err(human)?
        .into_inner();
    if format == ExportFormat::Parquet
        && out.is_none()
        && std::io::IsTerminal::is_terminal(&std::io::stdout())
    {
        anyhow::bail!("parquet is binary: write it to a file with -o FILE (or pipe it)");
    }
    let mut w: Box<dyn Write + Send> = match out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    if format == ExportFormat::Csv {
        writeln!(w, "{}", export::CSV_HEADER)?;
    }
    let mut pq = None;
    if format == ExportFormat::Parquet {
        pq = Some(export::ParquetExport::new(w)?);
        w = Box::new(std::io::sink());
    }
    let mut n = 0u64;
    let mut last_seq = after_seq;
    while let Some(item) = stream.next().await {
        let sr = item.map_err(human)?;
        if after_seq.is_some() {
            last_seq = Some(sr.seq);
        }
        let m = vantage_proto::envelope::decode(&sr.envelope.clone().unwrap_or_default())?;
        match format {
            ExportFormat::Jsonl => writeln!(w, "{}", export::jsonl(&sr, &m))?,
            ExportFormat::OoniJsonl => writeln!(
                w,
                "{}",
                export::ooni_with_verdict(&sr, &m, verdicts.get(&m))
            )?,
            ExportFormat::Csv => writeln!(w, "{}", export::csv_row(&sr, &m))?,
            ExportFormat::Parquet => {
                if let Some(pq) = pq.as_mut() {
                    pq.push(&sr, &m)?;
                }
            }
        }
        n += 1;
        if n.is_multiple_of(10_000) {
            eprintln!("exported {n} results ...");
        }
    }
    if let Some(pq) = pq {
        pq.finish()?;
    }
    w.flush()?;
    eprintln!("exported {n} results");
    if let Some(seq) = last_seq {
        // The campaign's later results: stored after this number.
        eprintln!("next export since this one: --after-seq {seq}");
    }
    Ok(())
}

/// Re-checks every signature of a jsonl export or of ClickHouse rows (see
/// [`export::verify_export`]) against the agent keys of `vantagectl agents
/// --output json`; fails when any does not verify.
pub(crate) fn verify(file: &Path, agents: &Path) -> Result<()> {
    let keys = export::agent_keys(
        &std::fs::read_to_string(agents)
            .with_context(|| format!("reading {}", agents.display()))?,
    )?;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let r = export::verify_export(&text, &keys);
    for (line, id, why) in &r.failed {
        println!("line {line}: {id}: {why}");
    }
    println!("{} verified, {} failed", r.verified, r.failed.len());
    if !r.failed.is_empty() {
        anyhow::bail!(
            "{} result(s) in {} do not verify",
            r.failed.len(),
            file.display()
        );
    }
    Ok(())
}
