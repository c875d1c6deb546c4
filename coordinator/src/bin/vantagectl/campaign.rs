//! `vantagectl campaign`: create from a spec, list, status (and watch),
//! pause, resume, cancel.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Subcommand;
use tonic::transport::Channel;
use vantage_proto::v1::admin_service_client::AdminServiceClient;
use vantage_proto::v1::{
    CampaignInfo, CampaignStatusRequest, CampaignStatusResponse, CreateCampaignRequest,
    ListCampaignsRequest, SetCampaignStateRequest,
};

use crate::common::{human, print_one, Output};

#[derive(Subcommand)]
pub(crate) enum CampaignCmd {
    /// Validate a spec (TOML or JSON) and create the campaign; prints its id.
    Create {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// List campaigns.
    List,
    /// Per-run and per-group progress, and failures by reason.
    Status {
        campaign_id: String,
        /// Show a live progress bar until the latest run completes.
        #[arg(long)]
        watch: bool,
    },
    /// Pause a campaign (no new runs are dispatched).
    Pause { campaign_id: String },
    /// Resume a paused campaign.
    Resume { campaign_id: String },
    /// Cancel a campaign for good.
    Cancel { campaign_id: String },
}

type Admin = AdminServiceClient<Channel>;

pub(crate) async fn run(ch: Channel, output: Output, cmd: &CampaignCmd) -> Result<()> {
    let mut admin = AdminServiceClient::new(ch);
    let (campaign_id, action) = match cmd {
        CampaignCmd::Create { file } => return create(&mut admin, output, file).await,
        CampaignCmd::List => return list(&mut admin, output).await,
        CampaignCmd::Status { campaign_id, watch } => {
            return status(&mut admin, output, campaign_id, *watch).await
        }
        CampaignCmd::Pause { campaign_id } => (campaign_id, "pause"),
        CampaignCmd::Resume { campaign_id } => (campaign_id, "resume"),
        CampaignCmd::Cancel { campaign_id } => (campaign_id, "cancel"),
    };
    let r = admin
        .set_campaign_state(SetCampaignStateRequest {
            campaign_id: campaign_id.clone(),
            action: action.to_string(),
        })
        .await
        .map_err(human)?;
    println!("{}", r.into_inner().state);
    Ok(())
}

async fn create(admin: &mut Admin, output: Output, file: &PathBuf) -> Result<()> {
    let spec =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let format = match file.extension().and_then(|e| e.to_str()) {
        Some("json") => "json",
        _ => "toml",
    };
    let r = admin
        .create_campaign(CreateCampaignRequest {
            spec,
            format: format.into(),
        })
        .await
        .map_err(|s| anyhow!("{}: {}", file.display(), s.message()))?
        .into_inner();
    print_one(output, &r, false, || {
        println!("{}", r.campaign_id);
        eprintln!("{} run(s) scheduled", r.runs);
    })
}

async fn list(admin: &mut Admin, output: Output) -> Result<()> {
    let r = admin
        .list_campaigns(ListCampaignsRequest {})
        .await
        .map_err(human)?
        .into_inner();
    print_one(output, &r.campaigns, true, || print_list(&r.campaigns))
}

fn print_list(campaigns: &[CampaignInfo]) {
    println!(
        "{:<36}  {:<9}  {:>9}  {:>7}  NAME",
        "CAMPAIGN", "STATE", "RUNS", "TARGETS"
    );
    for c in campaigns {
        println!(
            "{:<36}  {:<9}  {:>4}/{:<4}  {:>7}  {}",
            c.campaign_id, c.state, c.runs_done, c.runs_total, c.targets, c.name
        );
    }
}

async fn status(admin: &mut Admin, output: Output, campaign_id: &str, watch: bool) -> Result<()> {
    let req = || CampaignStatusRequest {
        campaign_id: campaign_id.to_string(),
    };
    if !watch {
        let r = admin
            .campaign_status(req())
            .await
            .map_err(human)?
            .into_inner();
        return print_one(output, &r, true, || print_status(&r));
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} run {prefix} [{bar:40}] {pos}/{len} tasks {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    loop {
        let r = admin
            .campaign_status(req())
            .await
            .map_err(human)?
            .into_inner();
        let c = r.campaign.clone().unwrap_or_default();
        let current = r
            .runs
            .iter()
            .rev()
            .find(|x| x.state != "scheduled")
            .or(r.runs.first());
        if let Some(run) = current {
            let total: u32 = run.groups.iter().map(|g| g.tasks).sum();
            let done: u32 = run
                .groups
                .iter()
                .map(|g| g.done + g.refused + g.expired)
                .sum();
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_prefix(run.index.to_string());
            bar.set_message(format!("{} ({})", run.state, c.state));
            // "complete": a coordinator from before runs said "done".
            let finished = matches!(run.state.as_str(), "done" | "complete" | "cancelled");
            if finished || c.state == "cancelled" || c.state == "done" {
                bar.finish();
                print_status(&r);
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn print_status(s: &CampaignStatusResponse) {
    let c = s.campaign.clone().unwrap_or_default();
    println!(
        "{}  {}  {}  runs {}/{}  targets {}",
        c.campaign_id, c.name, c.state, c.runs_done, c.runs_total, c.targets
    );
    for r in &s.runs {
        println!("  run {} ({}) {}", r.index, r.run_id, r.state);
        for g in &r.groups {
            println!(
                "    {:<7} agents {:>3}  tasks {:>4}  done {:>4}  pending {:>4}  refused {:>3}  expired {:>3}",
                g.group, g.agents, g.tasks, g.done, g.pending, g.refused, g.expired
            );
        }
        for f in &r.failures {
            println!("    failure {:<40} {}", f.name, f.value);
        }
        for k in &r.skipped {
            println!("    skipped {k}");
        }
        for c in &r.consent_skipped {
            println!(
                "    not consented {:<12} {} task(s) (volunteers have not enabled {} probes in agent.toml)",
                c.name, c.value, c.name
            );
        }
    }
}
