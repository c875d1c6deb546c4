//! Compiles proto/vantage/v1/*.proto in pure Rust (protox), so no system
//! `protoc` is needed. Every message also derives serde, so the same types
//! serve campaign specs, JSON output and exports; a oneof is flattened into
//! its parent as `{"tcp": {...}}`.
use std::path::PathBuf;

const ONEOFS: &[&str] = &[
    ".vantage.v1.Measurement.result",
    ".vantage.v1.AgentMessage.msg",
    ".vantage.v1.CoordinatorMessage.msg",
];

/// Messages read from humans (campaign specs, CLI input): a misspelt field is
/// an error, never a silent default.
const STRICT: &[&str] = &[
    "Labels",
    "Consent",
    "DnsInput",
    "TcpInput",
    "TlsInput",
    "HttpInput",
    "WebInput",
    "QuicInput",
    "OpenVpnInput",
    "TorInput",
    "EncryptedInput",
    "WireGuardInput",
    "AppStoreInput",
];

/// Messages the HTTP API serves as JSON unchanged (see `OPENAPI` below).
const OPENAPI: &[&str] = &["VerdictEntry", "FleetAgent", "CampaignInfo", "ChangeEvent"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["vantage/v1/vantage.proto"], ["proto"])?;
    let mut b = tonic_prost_build::configure()
        // Small initial stream buffers (src/codec.rs).
        .codec_path("crate::codec::SmallBufferCodec")
        .bytes(".vantage.v1.SignedResult")
        .message_attribute(
            ".",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]",
        )
        .enum_attribute(
            ".",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(rename_all = \"snake_case\")]",
        );
    // Messages the coordinator's HTTP API writes as JSON as they are: with
    // the `openapi` feature they describe themselves in its OpenAPI document.
    for m in OPENAPI {
        b = b.message_attribute(
            format!(".vantage.v1.{m}"),
            "#[cfg_attr(feature = \"openapi\", derive(utoipa::ToSchema))]",
        );
    }
    for m in STRICT {
        b = b.message_attribute(format!(".vantage.v1.{m}"), "#[serde(deny_unknown_fields)]");
    }
    for o in ONEOFS {
        b = b.field_attribute(o, "#[serde(flatten)]");
    }
    // The descriptor set, for gRPC server reflection.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("vantage_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    b.compile_fds(fds)?;

    // prost applies a field attribute to the oneof's variants too (they share
    // the path prefix); flatten is only meant for the field itself.
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("vantage.v1.rs");
    let src = std::fs::read_to_string(&out)?;
    let mut fixed = String::with_capacity(src.len());
    let mut in_enum = false;
    let lines: Vec<&str> = src.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        // ProbeInput is written as its oneof ({"tcp": {...}}) beside an
        // optional name, through lib.rs's probe_input_serde, so a misspelt
        // field inside is an error that names it (a flattened Option would
        // swallow it silently).
        if line.trim() == "#[serde(default)]"
            && lines[i + 1..]
                .iter()
                .take(3)
                .any(|l| l.starts_with("pub struct ProbeInput "))
        {
            fixed.push_str(
                "#[serde(from = \"crate::probe_input_serde::Repr\", into = \"crate::probe_input_serde::Repr\")]\n",
            );
            continue;
        }
        let t = line.trim_start();
        if t.starts_with("pub enum ") {
            in_enum = true;
        } else if in_enum && t == "}" {
            in_enum = false;
        }
        if in_enum && t == "#[serde(flatten)]" {
            continue;
        }
        fixed.push_str(line);
        fixed.push('\n');
    }
    std::fs::write(out, fixed)?;
    Ok(())
}
