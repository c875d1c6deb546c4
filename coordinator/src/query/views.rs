//! The answers of the read layer: the JSON shapes of HTTP API v1, and how
//! they are built from stored records. Where a protobuf message has exactly
//! the shape the HTTP API promises (an agent: `FleetAgent`, a campaign:
//! `CampaignInfo`, a verdict: `VerdictEntry`) the read layer builds that
//! message once, gRPC `QueryService` sends it and the HTTP API writes it as
//! JSON; its `.proto` comments document both (and the OpenAPI document,
//! through vantage-proto's `openapi` feature). The other answers (a
//! campaign's runs, results, pages) have JSON shapes of their own here.

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use prost::Message;
use serde::Serialize;
use utoipa::ToSchema;
use vantage_proto::v1::{
    measurement, CampaignStatusResponse, Measurement, StoredResult, VerdictRow,
};
pub(crate) use vantage_proto::v1::{CampaignInfo, FleetAgent, VerdictEntry};

use crate::store::{AgentRecord, CampaignRecord};

#[derive(Serialize, ToSchema)]
pub(crate) struct AgentList {
    pub agents: Vec<FleetAgent>,
}

pub(crate) fn agent_view(a: AgentRecord, connected: bool) -> FleetAgent {
    FleetAgent {
        agent_id: a.agent_id,
        country: a.country,
        asn: a.asn,
        tags: a.tags,
        connected,
        revoked: a.revoked,
        enrolled_us: a.enrolled_us,
        last_seen_us: a.last_seen_us,
        software_version: a.software_version,
        consent_kinds: a.consent_kinds,
        public_key: a.public_key,
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CampaignList {
    pub campaigns: Vec<CampaignInfo>,
}

/// Task progress of one group (`inside` or `control`) in a run.
#[derive(Serialize, ToSchema)]
pub(crate) struct GroupView {
    pub group: String,
    pub agents: u32,
    pub tasks: u32,
    pub done: u32,
    pub refused: u32,
    pub expired: u32,
    pub pending: u32,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RunView {
    pub run_id: String,
    pub index: u32,
    pub dispatch_at_us: i64,
    /// `scheduled`, `dispatched`, `done` or `cancelled`.
    pub state: String,
    pub groups: Vec<GroupView>,
    /// Failure string -> count.
    pub failures: BTreeMap<String, u64>,
    /// "group agent: reason" for agents not used.
    pub skipped: Vec<String>,
    /// Probe kind -> tasks not given to matching agents because their
    /// volunteers have not consented to that kind.
    pub consent_skipped: BTreeMap<String, u64>,
}

/// A campaign with its runs.
#[derive(Serialize, ToSchema)]
pub(crate) struct CampaignDetail {
    pub campaign: CampaignInfo,
    pub runs: Vec<RunView>,
}

pub(crate) fn campaign_detail(s: CampaignStatusResponse) -> CampaignDetail {
    CampaignDetail {
        campaign: s.campaign.unwrap_or_default(),
        runs: s
            .runs
            .into_iter()
            .map(|r| RunView {
                run_id: r.run_id,
                index: r.index,
                dispatch_at_us: r.dispatch_at_us,
                state: r.state,
                groups: r
                    .groups
                    .into_iter()
                    .map(|g| GroupView {
                        group: g.group,
                        agents: g.agents,
                        tasks: g.tasks,
                        done: g.done,
                        refused: g.refused,
                        expired: g.expired,
                        pending: g.pending,
                    })
                    .collect(),
                failures: r.failures.into_iter().map(|c| (c.name, c.value)).collect(),
                skipped: r.skipped,
                consent_skipped: r
                    .consent_skipped
                    .into_iter()
                    .map(|c| (c.name, c.value))
                    .collect(),
            })
            .collect(),
    }
}

/// The signed envelope exactly as received: anyone can re-verify it with
/// the agent's public key.
#[derive(Serialize, ToSchema)]
pub(crate) struct EnvelopeView {
    /// The prost-encoded `Measurement` as signed (base64).
    pub measurement: String,
    /// Ed25519 over `"vantage/measurement/v1\0" || measurement` (base64).
    pub signature: String,
}

/// One stored, verified result.
#[derive(Serialize, ToSchema)]
pub(crate) struct ResultView {
    /// UUIDv7 chosen by the agent; also the stream's event id.
    pub id: String,
    pub agent_id: String,
    pub campaign_id: String,
    pub task_id: String,
    pub run_id: String,
    pub start_us: i64,
    pub end_us: i64,
    /// When the coordinator received it.
    pub received_us: i64,
    /// As the volunteer consented to share it (empty otherwise).
    pub country: String,
    pub asn: u32,
    /// Probe kind (`tcp`, `dns`, ...).
    pub kind: String,
    /// The target key verdicts use (`tcp 192.0.2.1:443`).
    pub target: String,
    /// Every failure string in the result (OONI vocabulary), or
    /// `refused: <reason>` when the agent refused the task.
    pub failures: Vec<String>,
    /// The decoded measurement (JSON form of `vantage.v1.Measurement`).
    #[schema(value_type = Object)]
    pub measurement: serde_json::Value,
    pub envelope: EnvelopeView,
}

/// Every failure string in a measurement, in document order, once each.
pub(crate) fn failures_of(m: &Measurement) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(o) => {
                if let Some(serde_json::Value::Object(f)) = o.get("failure") {
                    if let Some(serde_json::Value::String(s)) = f.get("failure") {
                        if !s.is_empty() && !out.contains(s) {
                            out.push(s.clone());
                        }
                    }
                }
                for v in o.values() {
                    walk(v, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(measurement::Result::Refused(r)) = &m.result {
        out.push(format!("refused: {}", r.reason));
        return out;
    }
    if let Ok(v) = serde_json::to_value(m) {
        walk(&v, &mut out);
    }
    out
}

/// A decoded stored result, ready to filter and show.
#[derive(Clone)]
pub(crate) struct Decoded {
    pub stored: StoredResult,
    pub m: Measurement,
}

/// Decodes stored bytes; `None` for a record that does not decode (logged).
pub(crate) fn decode(bytes: &[u8]) -> Option<Decoded> {
    let stored = match StoredResult::decode(bytes) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("read API: undecodable stored result: {e}");
            return None;
        }
    };
    let m = stored
        .envelope
        .as_ref()
        .map(vantage_proto::envelope::decode)?;
    match m {
        Ok(m) => Some(Decoded { stored, m }),
        Err(e) => {
            tracing::warn!("read API: undecodable measurement: {e}");
            None
        }
    }
}

impl Decoded {
    pub(crate) fn kind(&self) -> &'static str {
        self.m
            .input
            .as_ref()
            .map(|i| i.kind_name())
            .unwrap_or("none")
    }

    pub(crate) fn view(self) -> ResultView {
        let b64 = base64::engine::general_purpose::STANDARD;
        let env = self.stored.envelope.unwrap_or_default();
        let labels = self.m.labels.clone().unwrap_or_default();
        ResultView {
            kind: self
                .m
                .input
                .as_ref()
                .map(|i| i.kind_name())
                .unwrap_or("none")
                .into(),
            target: crate::analysis::target_key(&self.m),
            failures: failures_of(&self.m),
            measurement: serde_json::to_value(&self.m).unwrap_or_default(),
            envelope: EnvelopeView {
                measurement: b64.encode(&env.measurement),
                signature: b64.encode(&env.signature),
            },
            id: self.m.id,
            agent_id: self.stored.agent_id,
            campaign_id: self.m.campaign_id,
            task_id: self.m.task_id,
            run_id: self.m.run_id,
            start_us: self.m.start_us,
            end_us: self.m.end_us,
            received_us: self.stored.received_us,
            country: labels.country,
            asn: labels.asn,
        }
    }
}

/// A page of results.
#[derive(Serialize, ToSchema)]
pub(crate) struct ResultPage {
    pub results: Vec<ResultView>,
    /// Pass as `cursor` for the next page; null when there is none.
    pub next_cursor: Option<String>,
    /// With `after_seq`: the commit sequence number of the last result
    /// examined; pass it as `after_seq` to go on (also when this page was
    /// the last: later results come after it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    /// Set when the store failed part-way through a streamed page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct VerdictList {
    pub verdicts: Vec<VerdictEntry>,
}

/// A stored verdict row as the read layer shows it: with its campaign and
/// its run's dispatch time, without the computation's bookkeeping
/// (`computed_us`, `revision`). Both faces serve this one row.
pub(crate) fn verdict(campaign_id: &str, dispatch_at_us: i64, v: VerdictRow) -> VerdictEntry {
    VerdictEntry {
        campaign_id: campaign_id.to_string(),
        dispatch_at_us,
        run_id: v.run_id,
        target: v.target,
        name: v.name,
        kind: v.kind,
        agent_id: v.agent_id,
        country: v.country,
        asn: v.asn,
        status: v.status,
        mechanism: v.mechanism,
        confidence: v.confidence,
        evidence: v.evidence,
        reason: v.reason,
    }
}

/// Verdicts of one campaign (computed from the stored results).
pub(crate) fn campaign_verdicts(
    shared: &crate::state::Shared,
    rec: &CampaignRecord,
) -> Result<Vec<VerdictEntry>, crate::errors::ServiceError> {
    let runs: HashMap<&str, i64> = rec
        .runs
        .iter()
        .map(|r| (r.run_id.as_str(), r.dispatch_at_us))
        .collect();
    Ok(crate::campaigns::verdicts(shared, &rec.campaign_id)?
        .verdicts
        .into_iter()
        .map(|v| {
            let at = runs.get(v.run_id.as_str()).copied().unwrap_or(0);
            verdict(&rec.campaign_id, at, v)
        })
        .collect())
}
