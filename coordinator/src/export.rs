//! Export formats for stored results, and offline re-verification of an
//! export. Pure functions over decoded results; `vantagectl export` and
//! `vantagectl verify-export` do the I/O.
//!
//! - `jsonl`: one line per result with the decoded measurement AND the
//!   signed envelope exactly as stored (base64), so anyone can re-verify it.
//! - `ooni-jsonl`: OONI's base data format (`probe_cc`, `probe_asn`,
//!   `test_name`, `test_keys`, `measurement_start_time`, failure strings),
//!   so existing OONI tooling can read it.
//! - `csv`: one row per result with the headline fields.

use std::collections::HashMap;

use base64::Engine;
use ed25519_dalek::VerifyingKey;
use serde_json::{json, Value};
use vantage_proto::v1::{Measurement, SignedResult, StoredResult};

/// Export failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("agents file: {0}")]
    Agents(String),
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The `jsonl` line for a stored result.
pub fn jsonl(sr: &StoredResult, m: &Measurement) -> Value {
    let env = sr.envelope.clone().unwrap_or_default();
    json!({
        "agent_id": sr.agent_id,
        "received_us": sr.received_us,
        "measurement": m,
        "envelope": {
            "measurement_b64": B64.encode(&env.measurement),
            "signature_b64": B64.encode(&env.signature),
        }
    })
}

fn ooni_time(us: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(us.max(0) as u64);
    // "2026-11-22T19:00:00Z" -> OONI's "2026-11-22 19:00:00".
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .trim_end_matches('Z')
        .replace('T', " ")
}

/// OONI's test name for a probe kind (nettest names where one exists).
pub fn ooni_test_name(kind: &str) -> &'static str {
    match kind {
        "web" => "web_connectivity",
        "dns" => "dnscheck",
        "dns_injection" => "dns_injection",
        "tcp" => "tcp_connect",
        "tls" => "tls_handshake",
        "http" => "http_requests",
        "quic" => "quic_handshake",
        "openvpn" => "openvpn",
        "tor" => "tor",
        "encrypted" => "fully_encrypted",
        "wireguard" => "wireguard",
        _ => "unknown",
    }
}

/// First failure string in the result (OONI puts one in `test_keys.failure`).
fn failure_of(v: &Value) -> Value {
    match v {
        Value::Object(o) => {
            if let Some(Value::Object(f)) = o.get("failure") {
                if let Some(s) = f.get("failure").and_then(|s| s.as_str()) {
                    if !s.is_empty() {
                        return Value::String(s.to_string());
                    }
                }
            }
            o.values()
                .map(failure_of)
                .find(|x| !x.is_null())
                .unwrap_or(Value::Null)
        }
        Value::Array(a) => a
            .iter()
            .map(failure_of)
            .find(|x| !x.is_null())
            .unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// The OONI base-format record for a result.
pub fn ooni(sr: &StoredResult, m: &Measurement) -> Value {
    let kind = m.input.as_ref().map(|i| i.kind_name()).unwrap_or("none");
    let mut keys = serde_json::to_value(m).unwrap_or(Value::Null);
    let input = crate::analysis::target_key(m);
    let labels = m.labels.clone().unwrap_or_default();
    let result = keys
        .as_object_mut()
        .and_then(|o| {
            let k = vantage_proto::PROBE_KINDS
                .iter()
                .chain(["refused"].iter())
                .find(|k| o.contains_key(**k))?;
            o.remove(*k)
        })
        .unwrap_or(Value::Null);
    let failure = failure_of(&result);
    json!({
        "data_format_version": "0.2.0",
        "measurement_uid": m.id,
        "report_id": format!("{}_{}", m.run_id, sr.agent_id),
        "input": input,
        "measurement_start_time": ooni_time(m.start_us),
        "test_start_time": ooni_time(m.start_us),
        "test_runtime": (m.end_us - m.start_us) as f64 / 1e6,
        "probe_cc": if labels.country.is_empty() { "ZZ".to_string() } else { labels.country.clone() },
        "probe_asn": if labels.asn == 0 { "AS0".to_string() } else { format!("AS{}", labels.asn) },
        "probe_ip": "127.0.0.1",
        "software_name": "vantage",
        "software_version": m.software_version,
        "test_name": ooni_test_name(kind),
        "test_version": "0.1.0",
        "annotations": { "campaign_id": m.campaign_id, "task_id": m.task_id, "agent_id": sr.agent_id },
        "test_keys": { "failure": failure, "steps": m.steps, "result": result },
    })
}

/// CSV header and row.
pub const CSV_HEADER: &str =
    "id,agent_id,country,asn,kind,target,start_us,end_us,failure,campaign_id,run_id,task_id";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn csv_row(sr: &StoredResult, m: &Measurement) -> String {
    let labels = m.labels.clone().unwrap_or_default();
    let v = serde_json::to_value(m).unwrap_or(Value::Null);
    let failure = failure_of(&v).as_str().unwrap_or("").to_string();
    [
        m.id.clone(),
        sr.agent_id.clone(),
        labels.country,
        labels.asn.to_string(),
        m.input
            .as_ref()
            .map(|i| i.kind_name())
            .unwrap_or("none")
            .to_string(),
        crate::analysis::target_key(m),
        m.start_us.to_string(),
        m.end_us.to_string(),
        failure,
        m.campaign_id.clone(),
        m.run_id.clone(),
        m.task_id.clone(),
    ]
    .iter()
    .map(|f| csv_field(f))
    .collect::<Vec<_>>()
    .join(",")
}

/// Agent keys from `vantagectl agents --output json`.
pub fn agent_keys(json_text: &str) -> Result<HashMap<String, VerifyingKey>, ExportError> {
    let v: Value =
        serde_json::from_str(json_text).map_err(|e| ExportError::Agents(e.to_string()))?;
    let arr = v
        .as_array()
        .ok_or_else(|| ExportError::Agents("expected a JSON array of agents".into()))?;
    let mut out = HashMap::new();
    for a in arr {
        let id = a["agent_id"].as_str().unwrap_or_default().to_string();
        let pk: Vec<u8> = a["public_key"]
            .as_array()
            .map(|b| {
                b.iter()
                    .filter_map(|x| x.as_u64().map(|x| x as u8))
                    .collect()
            })
            .unwrap_or_default();
        let key = <[u8; 32]>::try_from(pk.as_slice())
            .ok()
            .and_then(|b| VerifyingKey::from_bytes(&b).ok())
            .ok_or_else(|| ExportError::Agents(format!("agent {id}: bad public key")))?;
        out.insert(id, key);
    }
    Ok(out)
}

/// Outcome of re-verifying an export.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub verified: usize,
    /// (line, id, reason)
    pub failed: Vec<(usize, String, String)>,
}

/// Re-checks every envelope of a `jsonl` export against the agents' keys:
/// the signature over the stored bytes, and that the decoded measurement is
/// the one those bytes hold.
pub fn verify_export(text: &str, keys: &HashMap<String, VerifyingKey>) -> VerifyReport {
    let mut r = VerifyReport::default();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let n = i + 1;
        let fail = |r: &mut VerifyReport, id: &str, why: &str| {
            r.failed.push((n, id.to_string(), why.to_string()))
        };
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            fail(&mut r, "", "not JSON");
            continue;
        };
        let id = v["measurement"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let agent = v["agent_id"].as_str().unwrap_or_default();
        let (Some(mb), Some(sb)) = (
            v["envelope"]["measurement_b64"]
                .as_str()
                .and_then(|s| B64.decode(s).ok()),
            v["envelope"]["signature_b64"]
                .as_str()
                .and_then(|s| B64.decode(s).ok()),
        ) else {
            fail(&mut r, &id, "no envelope");
            continue;
        };
        let Some(key) = keys.get(agent) else {
            fail(&mut r, &id, "unknown agent");
            continue;
        };
        let env = SignedResult {
            measurement: mb.into(),
            signature: sb.into(),
        };
        if vantage_proto::envelope::verify(key, &env).is_err() {
            fail(&mut r, &id, "signature does not verify");
            continue;
        }
        match vantage_proto::envelope::decode(&env) {
            Ok(m) if m.id == id && m.agent_id == agent => r.verified += 1,
            Ok(_) => fail(&mut r, &id, "decoded fields differ from the signed bytes"),
            Err(_) => fail(&mut r, &id, "signed bytes do not decode"),
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use vantage_proto::v1::{probe_input::Kind, ProbeInput, TcpInput};

    fn stored(key: &SigningKey, agent: &str) -> (StoredResult, Measurement) {
        let m = Measurement {
            id: vantage_proto::envelope::new_id(),
            agent_id: agent.into(),
            start_us: 1_795_000_000_000_000,
            end_us: 1_795_000_000_500_000,
            input: Some(ProbeInput {
                kind: Some(Kind::Tcp(TcpInput {
                    host: "192.0.2.1".into(),
                    port: 443,
                })),
            }),
            result: Some(vantage_proto::v1::measurement::Result::Tcp(
                vantage_proto::v1::TcpResult {
                    failure: Some(vantage_proto::failure::failure(
                        "connection_reset",
                        "connect",
                    )),
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        let env = vantage_proto::envelope::sign(key, &m);
        (
            StoredResult {
                envelope: Some(env),
                agent_id: agent.into(),
                received_us: 1,
            },
            m,
        )
    }

    #[test]
    fn ooni_record_has_the_base_fields() {
        let k = SigningKey::from_bytes(&[3; 32]);
        let (sr, m) = stored(&k, "a");
        let o = ooni(&sr, &m);
        assert_eq!(o["test_name"], "tcp_connect");
        assert_eq!(o["probe_cc"], "ZZ");
        assert_eq!(o["measurement_start_time"], "2026-11-18 11:06:40");
        assert_eq!(o["test_keys"]["failure"], "connection_reset");
        let row = csv_row(&sr, &m);
        assert!(
            row.ends_with(",,,") && row.contains("connection_reset"),
            "{row}"
        );
        assert_eq!(row.split(',').count(), CSV_HEADER.split(',').count());
    }

    #[test]
    fn verify_export_finds_the_tampered_line() {
        let k = SigningKey::from_bytes(&[4; 32]);
        let keys = HashMap::from([("a".to_string(), k.verifying_key())]);
        let lines: Vec<String> = (0..3)
            .map(|_| {
                let (sr, m) = stored(&k, "a");
                jsonl(&sr, &m).to_string()
            })
            .collect();
        let good = lines.join("\n");
        assert_eq!(
            verify_export(&good, &keys),
            VerifyReport {
                verified: 3,
                failed: vec![]
            }
        );
        let mut v: Value = serde_json::from_str(&lines[1]).unwrap();
        let mut bytes = B64
            .decode(v["envelope"]["measurement_b64"].as_str().unwrap())
            .unwrap();
        bytes[5] ^= 1;
        v["envelope"]["measurement_b64"] = Value::String(B64.encode(bytes));
        let bad = [lines[0].clone(), v.to_string(), lines[2].clone()].join("\n");
        let r = verify_export(&bad, &keys);
        assert_eq!(r.verified, 2);
        assert_eq!(r.failed.len(), 1);
        assert_eq!(r.failed[0].0, 2);
    }
}
