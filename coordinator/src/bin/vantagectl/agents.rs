//! `vantagectl agents` (the list) and `vantagectl agent` (act on one).

use anyhow::Result;
use clap::Subcommand;
use tonic::transport::Channel;
use vantage_proto::v1::{AgentInfo, ListAgentsRequest, RevokeAgentRequest};

use crate::common::{admin, asn, human, print_list, when, Output};

#[derive(Subcommand)]
pub(crate) enum AgentCmd {
    /// Revoke an agent: its next connection is refused.
    Revoke { agent_id: String },
}

/// Agents with labels and last-seen times.
pub(crate) async fn list(ch: Channel, output: Output) -> Result<()> {
    let r = admin(ch).list_agents(ListAgentsRequest {}).await;
    let r = r.map_err(human)?.into_inner();
    print_list(output, &r.agents, print_table)
}

fn print_table(agents: &[AgentInfo]) {
    println!(
        "{:<36}  {:<7}  {:<9}  {:<2}  {:>8}  {:>8}  {:<14}  {:<16}  SESSION ENDED",
        "AGENT", "STATE", "CONNECTED", "CC", "ASN", "RESULTS", "LAST SEEN", "TAGS"
    );
    for a in agents {
        let l = a.labels.clone().unwrap_or_default();
        println!(
            "{:<36}  {:<7}  {:<9}  {:<2}  {:>8}  {:>8}  {:<14}  {:<16}  {}",
            a.agent_id,
            if a.revoked { "revoked" } else { "active" },
            if a.connected { "yes" } else { "no" },
            if l.country.is_empty() {
                "-"
            } else {
                &l.country
            },
            asn(l.asn),
            a.results,
            if a.connected {
                "now".into()
            } else {
                when(a.last_seen_us)
            },
            l.tags.join(","),
            // How the last session ended ("no answer to keepalive PINGs"
            // after a partition): only while the agent is away.
            if a.connected || a.session_end.is_empty() {
                "-"
            } else {
                &a.session_end
            }
        );
    }
}

pub(crate) async fn run(ch: Channel, cmd: &AgentCmd) -> Result<()> {
    let AgentCmd::Revoke { agent_id } = cmd;
    admin(ch)
        .revoke_agent(RevokeAgentRequest {
            agent_id: agent_id.clone(),
        })
        .await
        .map_err(human)?;
    println!("revoked {agent_id}");
    Ok(())
}
