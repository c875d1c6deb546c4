//! `vantage-coordinator`: init a data directory, serve, back up and restore.
//!
//! Settings come from `coordinator.toml` in the data directory; each can be
//! overridden by an environment variable, and a flag overrides both
//! (flag > environment > file > default).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use vantage_coordinator::config::Config;
use vantage_coordinator::logging::{self, LogFormat};
use vantage_coordinator::store::backup::{self, STORE_DIR};
use vantage_coordinator::store::Store;
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
        #[arg(long, env = "VANTAGE_LISTEN", default_value = "127.0.0.1:7443")]
        listen: String,
        /// Address(es) agents dial (default: the listen address); each host
        /// goes into the server certificate.
        #[arg(long, env = "VANTAGE_ADVERTISE", value_delimiter = ',')]
        advertise: Vec<String>,
        /// Extra DNS names or IPs for the server certificate.
        #[arg(long, value_delimiter = ',')]
        san: Vec<String>,
    },
    /// Serve gRPC over TLS until SIGINT or SIGTERM.
    Serve {
        #[arg(long, env = "VANTAGE_DATA_DIR")]
        data_dir: PathBuf,
        /// Read settings from this file instead of DATA_DIR/coordinator.toml.
        #[arg(long, env = "VANTAGE_CONFIG")]
        config: Option<PathBuf>,
        /// Override the listen address ("ip:port").
        #[arg(long, env = "VANTAGE_LISTEN")]
        listen: Option<String>,
        /// Override the addresses carried in new enrollment tokens
        /// (comma-separated).
        #[arg(long, env = "VANTAGE_ADVERTISE", value_delimiter = ',')]
        advertise: Vec<String>,
        /// Override the largest accepted gRPC message, bytes.
        #[arg(long, env = "VANTAGE_MAX_MESSAGE_BYTES")]
        max_message_bytes: Option<usize>,
        /// Override the TLS handshake timeout, seconds.
        #[arg(long, env = "VANTAGE_HANDSHAKE_TIMEOUT_S")]
        handshake_timeout_s: Option<u64>,
        /// Serve the read-only HTTP API, dashboard and /metrics here ("ip:port").
        #[arg(long, env = "VANTAGE_HTTP_LISTEN")]
        http_listen: Option<String>,
        /// Print the effective settings (after overrides) and exit.
        #[arg(long)]
        print_config: bool,
    },
    /// Back up the store (every tree) and the data directory's config and
    /// credentials into one checksummed file. While the coordinator serves,
    /// the snapshot is streamed from it (result commits pause meanwhile);
    /// when it is stopped, the store is read directly.
    Backup {
        #[arg(long, env = "VANTAGE_DATA_DIR")]
        data_dir: PathBuf,
        /// The backup file to write (refused if it exists, unless --force).
        #[arg(long)]
        to: PathBuf,
        /// Overwrite an existing backup file.
        #[arg(long)]
        force: bool,
    },
    /// Restore a backup into a new, empty data directory. A corrupt or
    /// truncated backup is refused before anything is written.
    Restore {
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        /// The data directory to create (must not exist, or be empty).
        #[arg(long, env = "VANTAGE_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Check a backup file (structure, counts and checksum) and summarise it.
    VerifyBackup {
        /// The backup file.
        file: PathBuf,
    },
    /// Print a shell completion script on stdout.
    #[command(hide = true)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout.
    #[command(hide = true)]
    Manpage,
}

fn summary_line(s: &backup::Summary) -> String {
    format!(
        "{} files, {} trees, {} entries",
        s.files, s.trees, s.entries
    )
}

/// `vantage-coordinator backup`: offline, the store opened by this process.
fn backup_offline(data_dir: &Path, to: &Path, force: bool) -> Result<()> {
    if to.exists() && !force {
        bail!("{} exists; pass --force to overwrite it", to.display());
    }
    let parent = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same(&parent, data_dir) {
        bail!("write the backup outside the data directory it backs up");
    }
    if !data_dir.join(vantage_coordinator::config::FILE).exists() {
        bail!(
            "{} is not a coordinator data directory (no {})",
            data_dir.display(),
            vantage_coordinator::config::FILE
        );
    }
    let store = Store::open(&data_dir.join(STORE_DIR)).with_context(|| {
        format!(
            "cannot open the store in {}. If the coordinator is running, stop it first \
             (systemctl stop vantage-coordinator): a serving coordinator holds an exclusive \
             lock on its store",
            data_dir.display()
        )
    })?;
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    let tmp = parent.join(format!(".{name}.partial"));
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let result = store
        .export(Some(data_dir), &file)
        .map_err(anyhow::Error::from)
        .and_then(|s| {
            file.sync_all().context("syncing the backup")?;
            Ok(s)
        });
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.context("writing the backup"));
        }
    };
    std::fs::rename(&tmp, to).with_context(|| format!("renaming to {}", to.display()))?;
    if let Ok(d) = std::fs::File::open(&parent) {
        let _ = d.sync_all();
    }
    let check = backup::verify(std::fs::File::open(to)?)
        .with_context(|| format!("re-reading {}", to.display()))?;
    if check.entries != summary.entries {
        bail!("the backup read back differs from what was written");
    }
    println!("Backed up {} to {}", data_dir.display(), to.display());
    println!("  {}", summary_line(&summary));
    Ok(())
}

/// `vantage-coordinator backup` while serving: the snapshot streams from the
/// running coordinator over the admin connection.
async fn backup_live(data_dir: &Path, to: &Path, force: bool) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    use vantage_proto::client::{connect_any, ClientIdentity, ConnectOptions};
    if to.exists() && !force {
        bail!("{} exists; pass --force to overwrite it", to.display());
    }
    let read = |f: &str| {
        std::fs::read_to_string(data_dir.join(f))
            .with_context(|| format!("reading {}", data_dir.join(f).display()))
    };
    let ca = vantage_proto::client::parse_certs(&read("ca.pem")?)?;
    let config = Config::load(data_dir)?;
    let opts = ConnectOptions {
        ca_sha256: vantage_proto::cert_fingerprint(&ca[0]),
        identity: Some(ClientIdentity {
            cert_pem: read("admin.pem")?,
            key_pem: read("admin.key")?,
        }),
        connect_timeout: std::time::Duration::from_secs(10),
        bind: None,
    };
    let ch = connect_any(&config.advertise, &opts)
        .await
        .context("the store is in use, but the coordinator cannot be reached for a live backup")?;
    let mut stream = vantage_proto::v1::admin_service_client::AdminServiceClient::new(ch)
        .backup(vantage_proto::v1::BackupRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("live backup refused: {}", s.message()))?
        .into_inner();
    let parent = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = parent.join(format!(
        ".{}.partial",
        to.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let mut file = tokio::fs::File::create(&tmp)
        .await
        .with_context(|| format!("creating {}", tmp.display()))?;
    let copied: Result<()> = async {
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(|s| anyhow::anyhow!("live backup failed: {}", s.message()))?
        {
            file.write_all(&chunk.data).await?;
        }
        file.sync_all().await?;
        Ok(())
    }
    .await;
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let summary = match backup::verify(std::fs::File::open(&tmp)?) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(anyhow::Error::from(e).context("the streamed backup does not verify"));
        }
    };
    std::fs::rename(&tmp, to).with_context(|| format!("renaming to {}", to.display()))?;
    println!(
        "Backed up the running coordinator ({}) to {}",
        data_dir.display(),
        to.display()
    );
    println!("  {}", summary_line(&summary));
    Ok(())
}

fn restore(from: &Path, data_dir: &Path) -> Result<()> {
    if std::fs::read_dir(data_dir).is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "refusing to restore into {}: the directory is not empty",
            data_dir.display()
        );
    }
    let open = || std::fs::File::open(from).with_context(|| format!("opening {}", from.display()));
    backup::verify(open()?).with_context(|| format!("{} cannot be restored", from.display()))?;
    let summary = Store::import(data_dir, open()?)
        .with_context(|| format!("restoring {}", from.display()))?;
    println!("Restored {} into {}", from.display(), data_dir.display());
    println!("  {}", summary_line(&summary));
    println!(
        "  start it with: vantage-coordinator serve --data-dir {}",
        data_dir.display()
    );
    Ok(())
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
        Cmd::Serve {
            data_dir,
            config: config_file,
            listen,
            advertise,
            max_message_bytes,
            handshake_timeout_s,
            http_listen,
            print_config,
        } => {
            let mut config = match &config_file {
                None => Config::load(&data_dir)?,
                Some(f) => {
                    let text = std::fs::read_to_string(f)
                        .with_context(|| format!("reading {}", f.display()))?;
                    Config::parse(&text).map_err(|m| anyhow::anyhow!("{}: {m}", f.display()))?
                }
            };
            if let Some(l) = listen {
                config.listen = l;
            }
            if !advertise.is_empty() {
                config.advertise = advertise;
            }
            if let Some(n) = max_message_bytes {
                config.max_message_bytes = n;
            }
            if let Some(n) = handshake_timeout_s {
                config.handshake_timeout_s = n;
            }
            if let Some(h) = http_listen {
                config.http_listen = Some(h);
            }
            if print_config {
                print!("{}", toml::to_string_pretty(&config)?);
                return Ok(());
            }
            let listener = server::bind(&config.listen).await?;
            let addr = server::local_addr(&listener)
                .map(|a| a.to_string())
                .unwrap_or_default();
            let shared = server::open_state(&data_dir, config)?;
            tracing::info!(%addr, ca = %shared.ca.fingerprint, "coordinator serving");
            let shutdown = async {
                vantage_proto::shutdown_signal().await;
                tracing::info!("shutting down");
            };
            server::serve(shared, listener, shutdown).await?;
        }
        Cmd::Backup {
            data_dir,
            to,
            force,
        } => {
            let locked = Store::open(&data_dir.join(STORE_DIR)).is_err();
            if locked && data_dir.join(vantage_coordinator::config::FILE).exists() {
                backup_live(&data_dir, &to, force).await?
            } else {
                backup_offline(&data_dir, &to, force)?
            }
        }
        Cmd::Restore { from, data_dir } => restore(&from, &data_dir)?,
        Cmd::VerifyBackup { file } => {
            let f = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            let s = backup::verify(f).with_context(|| format!("{}", file.display()))?;
            println!("{}: valid backup", file.display());
            println!(
                "  created {}; {}",
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH
                        + std::time::Duration::from_micros(s.created_us.max(0) as u64)
                ),
                summary_line(&s)
            );
        }
        Cmd::Completions { shell } => clap_complete::generate(
            shell,
            &mut Cli::command(),
            "vantage-coordinator",
            &mut std::io::stdout(),
        ),
        Cmd::Manpage => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?,
    }
    Ok(())
}
