//! What every command shares: the connection to the coordinator, gRPC
//! errors as sentences, output formatting, and the closed-pipe exit.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::ValueEnum;
use serde::Serialize;
use tonic::transport::Channel;
use vantage_coordinator::config::Config;
use vantage_coordinator::pki::files;
use vantage_proto::client::{connect_any, ClientIdentity, ConnectOptions};
use vantage_proto::v1::admin_service_client::AdminServiceClient;

/// Output format for read commands.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Table,
    Json,
    Jsonl,
}

/// Connects with the admin certificate of the data directory `data_dir`,
/// to `coordinator` or the first advertised address that answers.
pub(crate) async fn connect(
    data_dir: Option<&PathBuf>,
    coordinator: Option<&String>,
) -> Result<Channel> {
    let dir = data_dir.ok_or_else(|| {
        anyhow!("no coordinator data directory: pass --data-dir or set VANTAGE_DATA_DIR")
    })?;
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .with_context(|| format!("reading {}", dir.join(f).display()))
    };
    let ca = vantage_proto::client::parse_certs(&read(files::CA_CERT)?)?;
    let addrs = match coordinator {
        Some(a) => vec![a.clone()],
        None => Config::load(dir)?.advertise,
    };
    let opts = ConnectOptions {
        ca_sha256: vantage_proto::cert_fingerprint(&ca[0]),
        identity: Some(ClientIdentity {
            cert_pem: read(files::ADMIN_CERT)?,
            key_pem: read(files::ADMIN_KEY)?,
        }),
        connect_timeout: Duration::from_secs(5),
        bind: None,
    };
    connect_any(&addrs, &opts)
        .await
        .with_context(|| format!("cannot reach the coordinator at {}", addrs.join(", ")))
}

/// The admin service over `ch`.
pub(crate) fn admin(ch: Channel) -> AdminServiceClient<Channel> {
    AdminServiceClient::new(ch)
}

/// Turns a gRPC status into a sentence.
pub(crate) fn human(s: tonic::Status) -> anyhow::Error {
    let what = match s.code() {
        tonic::Code::Unavailable => "the coordinator is unavailable",
        tonic::Code::PermissionDenied => "permission denied",
        tonic::Code::Unauthenticated => "not authenticated",
        tonic::Code::InvalidArgument => "invalid request",
        tonic::Code::NotFound => "not found",
        _ => "request failed",
    };
    anyhow!("{what}: {}", s.message())
}

/// A time in microseconds since the epoch as "how long ago".
pub(crate) fn when(us: i64) -> String {
    if us <= 0 {
        return "never".into();
    }
    let ago = (vantage_proto::now_us() - us).max(0) / 1_000_000;
    match ago {
        0..=59 => format!("{ago}s ago"),
        60..=3599 => format!("{}m ago", ago / 60),
        3600..=86399 => format!("{}h ago", ago / 3600),
        _ => format!("{}d ago", ago / 86400),
    }
}

/// "-" for an empty field.
pub(crate) fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s.to_string()
    }
}

/// "AS4134", or "-" for no ASN.
pub(crate) fn asn(n: u32) -> String {
    if n == 0 {
        "-".to_string()
    } else {
        format!("AS{n}")
    }
}

/// A single answer: `table` for the table format, else one JSON document
/// (pretty with `pretty`, one line otherwise).
pub(crate) fn print_one<T: Serialize>(
    output: Output,
    value: &T,
    pretty: bool,
    table: impl FnOnce(),
) -> Result<()> {
    match output {
        Output::Table => table(),
        _ if pretty => println!("{}", serde_json::to_string_pretty(value)?),
        _ => println!("{}", serde_json::to_string(value)?),
    }
    Ok(())
}

/// A list: `table` for the table format, one JSON array, or one JSON
/// document per line.
pub(crate) fn print_list<T: Serialize>(
    output: Output,
    items: &[T],
    table: impl FnOnce(&[T]),
) -> Result<()> {
    match output {
        Output::Table => table(items),
        Output::Json => println!("{}", serde_json::to_string_pretty(items)?),
        Output::Jsonl => {
            for i in items {
                println!("{}", serde_json::to_string(i)?);
            }
        }
    }
    Ok(())
}

pub(crate) fn base64_std(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// What a shell reports for a process ended by SIGPIPE (128 + 13), the
/// exit every Unix filter takes when `| head` stops reading.
pub(crate) const EXIT_CLOSED_PIPE: i32 = 141;

/// Whether an error is stdout's reader having gone away.
pub(crate) fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `println!` panics when stdout's reader is gone (`vantagectl ... | head`;
/// Rust ignores SIGPIPE): end quietly with the shell's SIGPIPE status
/// instead of a panic message. Every other panic keeps the default report.
pub(crate) fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(EXIT_CLOSED_PIPE);
        }
        default(info);
    }));
}
