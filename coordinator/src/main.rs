//! `vantage-coordinator`: init a data directory, serve.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use vantage_coordinator::config::Config;
use vantage_coordinator::logging::{self, LogFormat};
use vantage_coordinator::{pki, server};

#[derive(Parser)]
#[command(name = "vantage-coordinator", version, about = "Vantage coordinator")]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create the CA, server certificate, admin credentials and config in a
    /// new data directory. Refuses to overwrite an existing CA.
    Init {
        #[arg(long, env = "VANTAGE_DATA_DIR")]
        data_dir: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7443")]
        listen: String,
        /// Address(es) agents dial (default: the listen address); each host
        /// goes into the server certificate.
        #[arg(long, value_delimiter = ',')]
        advertise: Vec<String>,
        /// Extra DNS names or IPs for the server certificate.
        #[arg(long, value_delimiter = ',')]
        san: Vec<String>,
    },
    /// Serve gRPC over TLS.
    Serve {
        #[arg(long, env = "VANTAGE_DATA_DIR")]
        data_dir: PathBuf,
        /// Override the listen address from coordinator.toml.
        #[arg(long)]
        listen: Option<String>,
    },
}

fn host_of(addr: &str) -> String {
    addr.rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']').to_string())
        .unwrap_or_else(|| addr.to_string())
}

#[tokio::main]
async fn main() -> Result<()> {
    vantage_proto::install_crypto_provider();
    let cli = Cli::parse();
    logging::init(cli.log_format, "info");
    match cli.cmd {
        Cmd::Init {
            data_dir,
            listen,
            advertise,
            san,
        } => {
            let advertise = if advertise.is_empty() {
                vec![listen.clone()]
            } else {
                advertise
            };
            let mut sans: Vec<String> = advertise.iter().map(|a| host_of(a)).collect();
            sans.push(host_of(&listen));
            sans.extend(san);
            sans.push("localhost".into());
            sans.sort();
            sans.dedup();
            sans.retain(|s| s != "0.0.0.0" && s != "::");
            let report = pki::init(&data_dir, &sans)?;
            Config::new(listen.clone(), advertise.clone())
                .save(&data_dir)
                .context("writing coordinator.toml")?;
            println!("Initialised {}", data_dir.display());
            println!("  listen:         {listen}");
            println!("  advertised:     {}", advertise.join(", "));
            println!("  certificate:    {}", report.sans.join(", "));
            println!("  CA fingerprint: sha256:{}", report.fingerprint);
            println!(
                "  admin creds:    {}/admin.pem, admin.key",
                data_dir.display()
            );
        }
        Cmd::Serve { data_dir, listen } => {
            let mut config = Config::load(&data_dir)?;
            if let Some(l) = listen {
                config.listen = l;
            }
            let listener = server::bind(&config.listen).await?;
            let addr = server::local_addr(&listener)
                .map(|a| a.to_string())
                .unwrap_or_default();
            let shared = server::open_state(&data_dir, config)?;
            tracing::info!(%addr, ca = %shared.ca.fingerprint, "coordinator serving");
            let shutdown = async {
                let _ = tokio::signal::ctrl_c().await;
                tracing::info!("shutting down");
            };
            server::serve(shared, listener, shutdown).await?;
        }
    }
    Ok(())
}
