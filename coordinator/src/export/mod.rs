//! Export formats for stored results, and offline re-verification of an
//! export. Pure functions over decoded results; `vantagectl export` and
//! `vantagectl verify-export` do the I/O.
//!
//! - `jsonl`: one line per result with the decoded measurement AND the
//!   signed envelope exactly as stored (base64), so anyone can re-verify it.
//! - `ooni-jsonl`: OONI's measurement format, one measurement per line, in
//!   [`ooni`] (its own module): the base envelope (`probe_cc`, `test_name`,
//!   `measurement_start_time`, ...) and OONI's test keys (`queries`,
//!   `tcp_connect`, `tls_handshakes`, `requests`, `network_events`, and
//!   web_connectivity's `blocking`/`accessible`), with the signed envelope
//!   and the decoded measurement under `test_keys.x_vantage`.
//! - `csv`: one row per result with the headline fields.
//! - `parquet`: the csv columns, typed (times as UTC microsecond timestamps,
//!   absent country/ASN/failure as nulls), plus the signed envelope bytes
//!   (`measurement`, `signature`) and `received_us`; Snappy-compressed row
//!   groups of [`PARQUET_ROWS_PER_GROUP`] rows, written as results stream in.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use base64::Engine;
use ed25519_dalek::VerifyingKey;
use serde_json::{json, Value};
use vantage_proto::v1::{Measurement, SignedResult, StoredResult};

mod ooni;

pub use ooni::{ooni, ooni_test_name, ooni_with_verdict, VerdictIndex};

/// Export failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("agents file: {0}")]
    Agents(String),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
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

/// First failure string in the result.
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

/// CSV header and row.
pub const CSV_HEADER: &str =
    "id,agent_id,country,asn,kind,target,name,start_us,end_us,failure,campaign_id,run_id,task_id";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The headline fields of a result, shared by the csv and parquet exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub id: String,
    pub agent_id: String,
    /// Empty when the volunteer withholds it.
    pub country: String,
    /// 0 when withheld.
    pub asn: u32,
    pub kind: String,
    pub target: String,
    /// The campaign's name for the target; empty when it has none.
    pub name: String,
    pub start_us: i64,
    pub end_us: i64,
    /// First failure string; empty when the probe succeeded.
    pub failure: String,
    pub campaign_id: String,
    pub run_id: String,
    pub task_id: String,
}

impl Row {
    pub fn of(sr: &StoredResult, m: &Measurement) -> Row {
        let labels = m.labels.clone().unwrap_or_default();
        let v = serde_json::to_value(m).unwrap_or(Value::Null);
        Row {
            id: m.id.clone(),
            agent_id: sr.agent_id.clone(),
            country: labels.country,
            asn: labels.asn,
            kind: m
                .input
                .as_ref()
                .map(|i| i.kind_name())
                .unwrap_or("none")
                .to_string(),
            target: crate::analysis::target_key(m),
            name: m.input.as_ref().map(|i| i.name.clone()).unwrap_or_default(),
            start_us: m.start_us,
            end_us: m.end_us,
            failure: failure_of(&v).as_str().unwrap_or("").to_string(),
            campaign_id: m.campaign_id.clone(),
            run_id: m.run_id.clone(),
            task_id: m.task_id.clone(),
        }
    }
}

pub fn csv_row(sr: &StoredResult, m: &Measurement) -> String {
    let r = Row::of(sr, m);
    [
        r.id,
        r.agent_id,
        r.country,
        r.asn.to_string(),
        r.kind,
        r.target,
        r.name,
        r.start_us.to_string(),
        r.end_us.to_string(),
        r.failure,
        r.campaign_id,
        r.run_id,
        r.task_id,
    ]
    .iter()
    .map(|f| csv_field(f))
    .collect::<Vec<_>>()
    .join(",")
}

// ------------------------------------------------------------------ parquet

/// The parquet schema, column for column in the order written. Times are
/// microseconds since the Unix epoch, typed as UTC timestamps so pandas,
/// DuckDB and Spark read them as times; `measurement` and `signature` are
/// the envelope exactly as stored, so every row can be re-verified against
/// the agent's key.
pub const PARQUET_SCHEMA: &str = "
message vantage_result {
  REQUIRED BYTE_ARRAY id (STRING);
  REQUIRED BYTE_ARRAY agent_id (STRING);
  OPTIONAL BYTE_ARRAY country (STRING);
  OPTIONAL INT64 asn;
  REQUIRED BYTE_ARRAY kind (STRING);
  REQUIRED BYTE_ARRAY target (STRING);
  OPTIONAL BYTE_ARRAY name (STRING);
  REQUIRED INT64 start_us (TIMESTAMP(MICROS, true));
  REQUIRED INT64 end_us (TIMESTAMP(MICROS, true));
  OPTIONAL BYTE_ARRAY failure (STRING);
  REQUIRED BYTE_ARRAY campaign_id (STRING);
  REQUIRED BYTE_ARRAY run_id (STRING);
  REQUIRED BYTE_ARRAY task_id (STRING);
  REQUIRED INT64 received_us (TIMESTAMP(MICROS, true));
  REQUIRED BYTE_ARRAY measurement;
  REQUIRED BYTE_ARRAY signature;
}
";

/// Rows buffered per row group (results are about 1 KiB with their
/// envelope, so a group is a few MiB before compression).
pub const PARQUET_ROWS_PER_GROUP: usize = 8192;

/// Streams results into a parquet file, one row group per
/// [`PARQUET_ROWS_PER_GROUP`] results; [`ParquetExport::finish`] writes the
/// footer.
pub struct ParquetExport<W: Write + Send> {
    writer: parquet::file::writer::SerializedFileWriter<W>,
    rows: Vec<(Row, StoredResult)>,
    per_group: usize,
    written: u64,
}

impl<W: Write + Send> ParquetExport<W> {
    pub fn new(out: W) -> Result<Self, ExportError> {
        Self::with_group_rows(out, PARQUET_ROWS_PER_GROUP)
    }

    /// As [`ParquetExport::new`] with `per_group` rows per row group.
    pub fn with_group_rows(out: W, per_group: usize) -> Result<Self, ExportError> {
        use parquet::file::properties::WriterProperties;
        let schema = Arc::new(parquet::schema::parser::parse_message_type(PARQUET_SCHEMA)?);
        let props = WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .set_created_by(format!("vantage {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
                "vantage.signature".to_string(),
                "Ed25519(agent key, \"vantage/measurement/v1\\0\" || measurement)".to_string(),
            )]))
            .build();
        Ok(ParquetExport {
            writer: parquet::file::writer::SerializedFileWriter::new(out, schema, Arc::new(props))?,
            rows: Vec::with_capacity(per_group.clamp(1, PARQUET_ROWS_PER_GROUP)),
            per_group: per_group.max(1),
            written: 0,
        })
    }

    /// Adds one result; writes a row group when enough are buffered.
    pub fn push(&mut self, sr: &StoredResult, m: &Measurement) -> Result<(), ExportError> {
        self.rows.push((Row::of(sr, m), sr.clone()));
        if self.rows.len() >= self.per_group {
            self.flush_group()?;
        }
        Ok(())
    }

    fn flush_group(&mut self) -> Result<(), ExportError> {
        use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        let text = |f: fn(&Row) -> &str| -> Vec<ByteArray> {
            rows.iter()
                .map(|(r, _)| ByteArray::from(f(r).as_bytes().to_vec()))
                .collect()
        };
        let env = |f: fn(&SignedResult) -> &[u8]| -> Vec<ByteArray> {
            rows.iter()
                .map(|(_, sr)| ByteArray::from(sr.envelope.as_ref().map(f).unwrap_or(&[]).to_vec()))
                .collect()
        };
        // Optional text: values for the present ones, definition levels for all.
        let optional = |f: fn(&Row) -> &str| -> (Vec<ByteArray>, Vec<i16>) {
            let vals = rows
                .iter()
                .map(|(r, _)| f(r))
                .filter(|s| !s.is_empty())
                .map(|s| ByteArray::from(s.as_bytes().to_vec()))
                .collect();
            let defs = rows
                .iter()
                .map(|(r, _)| i16::from(!f(r).is_empty()))
                .collect();
            (vals, defs)
        };
        let int = |f: fn(&Row) -> i64| -> Vec<i64> { rows.iter().map(|(r, _)| f(r)).collect() };
        let (country, country_def) = optional(|r| &r.country);
        let (failure, failure_def) = optional(|r| &r.failure);
        let (name, name_def) = optional(|r| &r.name);
        let asn: Vec<i64> = rows
            .iter()
            .filter(|(r, _)| r.asn != 0)
            .map(|(r, _)| i64::from(r.asn))
            .collect();
        let asn_def: Vec<i16> = rows.iter().map(|(r, _)| i16::from(r.asn != 0)).collect();

        enum Col {
            Text(Vec<ByteArray>, Option<Vec<i16>>),
            Int(Vec<i64>, Option<Vec<i16>>),
        }
        let columns = vec![
            Col::Text(text(|r| &r.id), None),
            Col::Text(text(|r| &r.agent_id), None),
            Col::Text(country, Some(country_def)),
            Col::Int(asn, Some(asn_def)),
            Col::Text(text(|r| &r.kind), None),
            Col::Text(text(|r| &r.target), None),
            Col::Text(name, Some(name_def)),
            Col::Int(int(|r| r.start_us), None),
            Col::Int(int(|r| r.end_us), None),
            Col::Text(failure, Some(failure_def)),
            Col::Text(text(|r| &r.campaign_id), None),
            Col::Text(text(|r| &r.run_id), None),
            Col::Text(text(|r| &r.task_id), None),
            Col::Int(rows.iter().map(|(_, sr)| sr.received_us).collect(), None),
            Col::Text(env(|e| &e.measurement), None),
            Col::Text(env(|e| &e.signature), None),
        ];
        let mut group = self.writer.next_row_group()?;
        for col in columns {
            let Some(mut w) = group.next_column()? else {
                return Err(parquet::errors::ParquetError::General(
                    "schema has fewer columns than the export writes".into(),
                )
                .into());
            };
            match col {
                Col::Text(v, d) => {
                    w.typed::<ByteArrayType>()
                        .write_batch(&v, d.as_deref(), None)?;
                }
                Col::Int(v, d) => {
                    w.typed::<Int64Type>().write_batch(&v, d.as_deref(), None)?;
                }
            }
            w.close()?;
        }
        group.close()?;
        self.written += rows.len() as u64;
        Ok(())
    }

    /// Writes the last row group and the footer; returns the rows written.
    pub fn finish(mut self) -> Result<u64, ExportError> {
        self.flush_group()?;
        self.writer.close()?;
        Ok(self.written)
    }
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

/// The signed bytes of one exported line, in either form
/// [`verify_export`] reads.
struct Exported {
    id: String,
    agent: String,
    /// `(measurement, signature)`, or why they are not there.
    envelope: Result<(Vec<u8>, Vec<u8>), &'static str>,
}

/// A `jsonl` export line, or a ClickHouse row exported as `JSONEachRow`
/// with `id, agent, hex(measurement) AS measurement_hex, hex(signature) AS
/// signature_hex`; `None` when it is neither.
fn exported(v: &Value) -> Option<Exported> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    if v.get("envelope").is_some() || v.get("measurement").is_some() {
        let b64 = |k: &str| v["envelope"][k].as_str().and_then(|s| B64.decode(s).ok());
        return Some(Exported {
            id: text(&v["measurement"]["id"]),
            agent: text(&v["agent_id"]),
            envelope: b64("measurement_b64")
                .zip(b64("signature_b64"))
                .ok_or("no envelope"),
        });
    }
    if v.get("measurement_hex").is_some() || v.get("signature_hex").is_some() {
        // ClickHouse's hex() is upper case; hex::decode takes either.
        let hex = |k: &str| v[k].as_str().and_then(|s| hex::decode(s).ok());
        return Some(Exported {
            id: text(&v["id"]),
            agent: text(&v["agent"]),
            envelope: hex("measurement_hex")
                .zip(hex("signature_hex"))
                .ok_or("measurement_hex or signature_hex is missing or not hex"),
        });
    }
    None
}

/// Re-checks every envelope of an export against the agents' keys: the
/// signature over the stored bytes, and that the result id and agent given
/// beside them are the ones those bytes hold. Each line is a `jsonl`
/// export line or a ClickHouse row (see [`exported`]).
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
        let Some(e) = exported(&v) else {
            fail(
                &mut r,
                v["id"].as_str().unwrap_or_default(),
                "neither a jsonl export line nor a ClickHouse row",
            );
            continue;
        };
        let id = e.id.as_str();
        let (mb, sb) = match e.envelope {
            Ok(b) => b,
            Err(why) => {
                fail(&mut r, id, why);
                continue;
            }
        };
        let Some(key) = keys.get(&e.agent) else {
            fail(&mut r, id, "unknown agent");
            continue;
        };
        let env = SignedResult {
            measurement: mb.into(),
            signature: sb.into(),
        };
        if vantage_proto::envelope::verify(key, &env).is_err() {
            fail(&mut r, id, "signature does not verify");
            continue;
        }
        match vantage_proto::envelope::decode(&env) {
            Ok(m) if m.id == id && m.agent_id == e.agent => r.verified += 1,
            Ok(_) => fail(&mut r, id, "decoded fields differ from the signed bytes"),
            Err(_) => fail(&mut r, id, "signed bytes do not decode"),
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
                ..Default::default()
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
                ..Default::default()
            },
            m,
        )
    }

    #[test]
    fn csv_row_has_every_column() {
        let k = SigningKey::from_bytes(&[3; 32]);
        let (sr, m) = stored(&k, "a");
        let row = csv_row(&sr, &m);
        assert!(
            row.ends_with(",,,") && row.contains("connection_reset"),
            "{row}"
        );
        assert_eq!(row.split(',').count(), CSV_HEADER.split(',').count());
    }

    /// Every column of every row, by name, read back with the parquet crate.
    fn read_parquet(f: std::fs::File) -> (usize, Vec<HashMap<String, parquet::record::Field>>) {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let r = SerializedFileReader::new(f).unwrap();
        let groups = r.metadata().num_row_groups();
        let rows = r
            .get_row_iter(None)
            .unwrap()
            .map(|row| {
                row.unwrap()
                    .get_column_iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .collect();
        (groups, rows)
    }

    #[test]
    fn parquet_round_trips_rows_nulls_and_envelopes() {
        use parquet::record::Field;
        let k = SigningKey::from_bytes(&[5; 32]);
        let mut made: Vec<(StoredResult, Measurement)> = (0..5)
            .map(|i| {
                let (mut sr, mut m) = stored(&k, "a");
                if i % 2 == 0 {
                    m.labels = Some(vantage_proto::v1::Labels {
                        country: "CN".into(),
                        asn: 4134,
                        tags: vec![],
                    });
                    m.result = None;
                    sr.envelope = Some(vantage_proto::envelope::sign(&k, &m));
                }
                sr.received_us = 1_795_000_001_000_000 + i;
                (sr, m)
            })
            .collect();
        made[3].1.campaign_id = "c,with \"quotes\"".into();
        if let Some(i) = made[3].1.input.as_mut() {
            i.name = "Blocked news site".into();
        }
        made[3].0.envelope = Some(vantage_proto::envelope::sign(&k, &made[3].1));
        let file = tempfile::tempfile().unwrap();
        let mut w = ParquetExport::with_group_rows(file.try_clone().unwrap(), 2).unwrap();
        for (sr, m) in &made {
            w.push(sr, m).unwrap();
        }
        assert_eq!(w.finish().unwrap(), 5);
        let (groups, rows) = read_parquet(file);
        assert_eq!((groups, rows.len()), (3, 5), "groups of 2, 2 and 1");
        for ((sr, m), row) in made.iter().zip(&rows) {
            let want = Row::of(sr, m);
            let text = |k: &str| match &row[k] {
                Field::Str(s) => s.clone(),
                other => panic!("{k}: {other:?}"),
            };
            let time = |k: &str| match &row[k] {
                Field::TimestampMicros(t) => *t,
                other => panic!("{k}: {other:?}"),
            };
            assert_eq!(text("id"), want.id);
            assert_eq!(text("agent_id"), "a");
            assert_eq!(text("kind"), "tcp");
            assert_eq!(text("target"), want.target);
            if want.name.is_empty() {
                assert_eq!(row["name"], Field::Null);
            } else {
                assert_eq!(text("name"), "Blocked news site");
            }
            assert_eq!(text("campaign_id"), want.campaign_id);
            assert_eq!(time("start_us"), m.start_us);
            assert_eq!(time("end_us"), m.end_us);
            assert_eq!(time("received_us"), sr.received_us);
            if want.country.is_empty() {
                assert_eq!(row["country"], Field::Null);
                assert_eq!(row["asn"], Field::Null);
                assert_eq!(text("failure"), "connection_reset");
            } else {
                assert_eq!(text("country"), "CN");
                assert_eq!(row["asn"], Field::Long(4134));
                assert_eq!(row["failure"], Field::Null);
            }
            // The envelope bytes re-verify and decode to the same measurement.
            let bytes = |k: &str| match &row[k] {
                Field::Bytes(b) => b.data().to_vec(),
                other => panic!("{k}: {other:?}"),
            };
            let env = SignedResult {
                measurement: bytes("measurement").into(),
                signature: bytes("signature").into(),
            };
            assert_eq!(&env, sr.envelope.as_ref().unwrap());
            vantage_proto::envelope::verify(&k.verifying_key(), &env).unwrap();
            assert_eq!(&vantage_proto::envelope::decode(&env).unwrap(), m);
        }
        // An empty export is still a valid file with the schema.
        let file = tempfile::tempfile().unwrap();
        let w = ParquetExport::new(file.try_clone().unwrap()).unwrap();
        assert_eq!(w.finish().unwrap(), 0);
        assert_eq!(read_parquet(file).1.len(), 0);
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

    /// A row of `SELECT id, agent, hex(measurement) AS measurement_hex,
    /// hex(signature) AS signature_hex ... FORMAT JSONEachRow`.
    fn clickhouse_row(sr: &StoredResult, m: &Measurement) -> Value {
        let env = sr.envelope.clone().unwrap();
        json!({
            "id": m.id,
            "agent": sr.agent_id,
            "measurement_hex": hex::encode_upper(&env.measurement),
            "signature_hex": hex::encode_upper(&env.signature),
        })
    }

    #[test]
    fn verify_export_reads_clickhouse_rows_and_finds_the_tampered_one() {
        let k = SigningKey::from_bytes(&[6; 32]);
        let keys = HashMap::from([("a".to_string(), k.verifying_key())]);
        let made: Vec<_> = (0..4).map(|_| stored(&k, "a")).collect();
        let rows: Vec<Value> = made.iter().map(|(sr, m)| clickhouse_row(sr, m)).collect();
        // Upper case as ClickHouse writes it, lower case, and a jsonl line
        // in the same file.
        let mut lower = rows[1].clone();
        for c in ["measurement_hex", "signature_hex"] {
            lower[c] = Value::String(lower[c].as_str().unwrap().to_ascii_lowercase());
        }
        let good = [
            rows[0].to_string(),
            lower.to_string(),
            jsonl(&made[2].0, &made[2].1).to_string(),
        ]
        .join("\n");
        assert_eq!(
            verify_export(&good, &keys),
            VerifyReport {
                verified: 3,
                failed: vec![]
            }
        );

        // One signed byte flipped; an id that is not the signed one; an
        // agent with no key; a signature that is not hex.
        let mut flipped = rows[1].clone();
        let mut bytes = hex::decode(flipped["measurement_hex"].as_str().unwrap()).unwrap();
        bytes[5] ^= 1;
        flipped["measurement_hex"] = Value::String(hex::encode_upper(bytes));
        let mut renamed = rows[2].clone();
        renamed["id"] = Value::String(made[3].1.id.clone());
        let mut stranger = rows[3].clone();
        stranger["agent"] = Value::String("b".into());
        let mut garbled = rows[3].clone();
        garbled["signature_hex"] = Value::String("XYZ".into());
        let bad = [
            rows[0].to_string(),
            flipped.to_string(),
            renamed.to_string(),
            stranger.to_string(),
            garbled.to_string(),
            r#"{"id":"x","agent":"a"}"#.to_string(),
        ]
        .join("\n");
        let r = verify_export(&bad, &keys);
        assert_eq!(r.verified, 1, "{r:?}");
        let reasons: Vec<(usize, &str, &str)> = r
            .failed
            .iter()
            .map(|(n, id, why)| (*n, id.as_str(), why.as_str()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (2, made[1].1.id.as_str(), "signature does not verify"),
                (
                    3,
                    made[3].1.id.as_str(),
                    "decoded fields differ from the signed bytes"
                ),
                (4, made[3].1.id.as_str(), "unknown agent"),
                (
                    5,
                    made[3].1.id.as_str(),
                    "measurement_hex or signature_hex is missing or not hex"
                ),
                (6, "x", "neither a jsonl export line nor a ClickHouse row"),
            ]
        );
    }
}
