//! `vantagectl webhook add|list|remove|test`: change events POSTed to a
//! URL, signed with HMAC-SHA256 (the coordinator's `alerts::webhooks`
//! says how to verify).

use anyhow::Result;
use clap::Subcommand;
use tonic::transport::Channel;
use vantage_proto::v1::{
    AddWebhookRequest, ListWebhooksRequest, RemoveWebhookRequest, TestWebhookRequest, Webhook,
    WebhookFilter,
};

use crate::common::{admin, human, print_list, when, Output};

#[derive(Subcommand)]
pub(crate) enum WebhookCmd {
    /// Subscribe a URL to change events; prints the signing secret once.
    Add {
        /// http:// or https:// URL the events are POSTed to.
        url: String,
        /// Only this campaign's events.
        #[arg(long)]
        campaign: Option<String>,
        /// Only events in these countries (ISO 3166, e.g. CN,IR).
        #[arg(long, value_delimiter = ',')]
        country: Vec<String>,
        /// Only events of these targets (target keys, as in verdicts).
        #[arg(long)]
        target: Vec<String>,
        /// Only these kinds of change: blocked, unblocked, down, up, mechanism.
        #[arg(long, value_delimiter = ',')]
        change: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Webhooks with their delivery counts and last error.
    List,
    /// Remove a webhook; its queued deliveries are dropped.
    Remove { id: String },
    /// Queue a signed `ping` delivery to a webhook now.
    Test { id: String },
}

pub(crate) async fn run(ch: Channel, out: Output, cmd: &WebhookCmd) -> Result<()> {
    let mut a = admin(ch);
    match cmd {
        WebhookCmd::Add {
            url,
            campaign,
            country,
            target,
            change,
            description,
        } => {
            let r = a
                .add_webhook(AddWebhookRequest {
                    url: url.clone(),
                    filter: Some(WebhookFilter {
                        campaign_id: campaign.clone().unwrap_or_default(),
                        countries: country.iter().map(|c| c.to_uppercase()).collect(),
                        targets: target.clone(),
                        changes: change.clone(),
                    }),
                    description: description.clone(),
                })
                .await
                .map_err(human)?
                .into_inner();
            match out {
                Output::Table => {
                    let w = r.webhook.unwrap_or_default();
                    println!("webhook {} -> {}", w.id, w.url);
                    println!("secret  {}", r.secret);
                    println!("key id  {}", w.key_id);
                    println!(
                        "Keep the secret: it is not shown again. Each POST carries \
                         Vantage-Signature: t=<unix s>,k=<key id>,v1=<hex HMAC-SHA256(secret, \"<t>.<body>\")>."
                    );
                }
                _ => println!("{}", serde_json::to_string(&r)?),
            }
        }
        WebhookCmd::List => {
            let r = a
                .list_webhooks(ListWebhooksRequest {})
                .await
                .map_err(human)?
                .into_inner();
            print_list(out, &r.webhooks, print_table)?;
        }
        WebhookCmd::Remove { id } => {
            let r = a
                .remove_webhook(RemoveWebhookRequest { id: id.clone() })
                .await
                .map_err(human)?
                .into_inner();
            println!("removed {id} ({} queued deliveries dropped)", r.dropped);
        }
        WebhookCmd::Test { id } => {
            let r = a
                .test_webhook(TestWebhookRequest { id: id.clone() })
                .await
                .map_err(human)?
                .into_inner();
            println!("queued ping {} to {id}", r.delivery_id);
        }
    }
    Ok(())
}

fn print_table(hooks: &[Webhook]) {
    println!(
        "{:<36}  {:>7}  {:>9}  {:>6}  {:>4}  {:<12}  {:<40}  LAST ERROR",
        "WEBHOOK", "PENDING", "DELIVERED", "FAILED", "DEAD", "LAST OK", "URL"
    );
    for w in hooks {
        println!(
            "{:<36}  {:>7}  {:>9}  {:>6}  {:>4}  {:<12}  {:<40}  {}",
            w.id,
            w.pending,
            w.delivered,
            w.failed_attempts,
            w.dead,
            when(w.last_success_us),
            w.url,
            if w.last_error.is_empty() {
                "-"
            } else {
                &w.last_error
            }
        );
    }
}
