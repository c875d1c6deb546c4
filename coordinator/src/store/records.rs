//! Records kept as JSON in sled (small, rarely written, easy to inspect).
//! Results are not here: they stay prost bytes exactly as received.

use std::collections::BTreeMap;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::StoreError;

/// An enrollment token, stored under the SHA-256 of its secret.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenRecord {
    pub created_us: i64,
    pub expires_us: i64,
    pub uses_left: u32,
    pub tags: Vec<String>,
}

/// An enrolled agent.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct AgentRecord {
    pub agent_id: String,
    /// Ed25519 public key, hex.
    pub public_key: String,
    pub country: String,
    pub asn: u32,
    pub tags: Vec<String>,
    pub cert_fingerprint: String,
    pub enrolled_us: i64,
    pub last_seen_us: i64,
    pub revoked: bool,
    pub software_version: String,
    /// Probe kinds the volunteer consented to (from the last hello).
    pub consent_kinds: Vec<String>,
    pub max_concurrency: u32,
    pub max_tasks_per_hour: u32,
    /// How the agent's last session ended ("closed by the agent", "no
    /// answer to keepalive PINGs", ...); empty while none has ended.
    #[serde(default)]
    pub session_end: String,
}

/// Where a task stands for one agent.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TaskAssignment {
    Sent,
    Accepted,
    Refused,
    Done,
    Expired,
}

/// A task pushed to agents.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TaskRecord {
    pub task_id: String,
    pub campaign_id: String,
    pub run_id: String,
    pub created_us: i64,
    pub deadline_us: i64,
    /// The probe input, as JSON.
    pub input: serde_json::Value,
    pub assignments: BTreeMap<String, TaskAssignment>,
}

#[cfg(test)]
impl TaskRecord {
    /// A task of run `r1` of `campaign_id`, sent to `agents` (unit tests).
    pub(crate) fn for_test(task_id: &str, campaign_id: &str, agents: &[&str]) -> TaskRecord {
        TaskRecord {
            task_id: task_id.into(),
            campaign_id: campaign_id.into(),
            run_id: "r1".into(),
            created_us: 1,
            deadline_us: 2,
            input: serde_json::Value::Null,
            assignments: agents
                .iter()
                .map(|a| (a.to_string(), TaskAssignment::Sent))
                .collect(),
        }
    }
}

/// A campaign: its validated spec, state and runs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CampaignRecord {
    pub campaign_id: String,
    pub name: String,
    pub description: String,
    pub state: CampaignState,
    pub created_us: i64,
    /// The spec as accepted.
    pub spec: crate::scheduler::CampaignSpec,
    pub runs: Vec<RunRecord>,
}

/// Where a campaign stands. Stored and shown as its lowercase name.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum CampaignState {
    /// Dispatching its runs as they fall due.
    #[default]
    Active,
    /// No new runs until resumed.
    Paused,
    /// Stopped for good.
    Cancelled,
    /// Every run done or cancelled.
    Done,
}

/// Where a run stands. Stored and shown as its lowercase name; finished is
/// "done" for runs and campaigns alike (`CampaignInfo.runs_done`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Waiting for its dispatch time.
    #[default]
    Scheduled,
    /// Tasks sent, results coming in.
    Dispatched,
    /// Nothing outstanding. Runs stored before the vocabulary was unified
    /// say "complete".
    #[serde(alias = "complete")]
    Done,
    /// Stopped for good.
    Cancelled,
}

impl CampaignState {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignState::Active => "active",
            CampaignState::Paused => "paused",
            CampaignState::Cancelled => "cancelled",
            CampaignState::Done => "done",
        }
    }
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Scheduled => "scheduled",
            RunState::Dispatched => "dispatched",
            RunState::Done => "done",
            RunState::Cancelled => "cancelled",
        }
    }

    /// Done or cancelled: nothing will happen to it any more.
    pub fn is_finished(self) -> bool {
        matches!(self, RunState::Done | RunState::Cancelled)
    }
}

/// The two groups of a campaign run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// Agents behind the network under test.
    Inside,
    /// Agents outside it, measuring the same targets at the same time.
    Control,
}

impl Group {
    /// "inside" or "control", as tasks and progress name the group.
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Inside => "inside",
            Group::Control => "control",
        }
    }
}

/// One run of a campaign.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
pub struct RunRecord {
    pub run_id: String,
    pub index: u32,
    pub dispatch_at_us: i64,
    pub deadline_us: i64,
    pub state: RunState,
    pub inside: Vec<String>,
    pub control: Vec<String>,
    /// One task per target, in target order.
    pub tasks: Vec<String>,
    /// "agent: reason" for agents not used.
    pub skipped: Vec<String>,
}

impl RunRecord {
    /// The group `agent` serves in this run (control when not inside).
    pub fn group_of(&self, agent: &str) -> Group {
        if self.inside.iter().any(|a| a == agent) {
            Group::Inside
        } else {
            Group::Control
        }
    }
}

/// The stored verdicts of one run: recomputed from the stored results when
/// results arrive for it (late controls included), never edited by hand.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
pub struct RunVerdicts {
    pub campaign_id: String,
    pub run_id: String,
    /// When these rows were computed.
    pub computed_us: i64,
    /// 1 for the first computation, +1 each time the rows changed.
    pub revision: u32,
    /// How many inside and control results they rest on.
    pub inside_results: u32,
    pub control_results: u32,
    /// The run's results by their first failure (`campaign status`),
    /// counted in the same pass as the rows.
    #[serde(default)]
    pub failures: BTreeMap<String, u64>,
    pub verdicts: Vec<vantage_proto::v1::VerdictRow>,
}

/// First byte of a run's verdicts stored since the rows are prost: then a
/// u32 (big-endian) header length, the header (the record without its
/// rows, JSON), and the rows as a prost `VerdictsResponse`. A header reads
/// without the rows (`campaign status`), and the rows decode several
/// times faster than JSON. Records from before start with `{`: JSON.
const RUN_VERDICTS_V1: u8 = 1;

pub(super) fn encode_run_verdicts(rec: &RunVerdicts) -> Vec<u8> {
    let header = to_json(&RunVerdicts {
        campaign_id: rec.campaign_id.clone(),
        run_id: rec.run_id.clone(),
        computed_us: rec.computed_us,
        revision: rec.revision,
        inside_results: rec.inside_results,
        control_results: rec.control_results,
        failures: rec.failures.clone(),
        verdicts: Vec::new(),
    });
    let mut out = Vec::with_capacity(5 + header.len() + 256 * rec.verdicts.len());
    out.push(RUN_VERDICTS_V1);
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(&header);
    // The field encoding of `VerdictsResponse { verdicts }`, without
    // cloning the rows into one.
    for row in &rec.verdicts {
        prost::encoding::message::encode(1, row, &mut out);
    }
    out
}

/// A run's stored verdicts; with `rows` false, everything but the rows.
pub(super) fn decode_run_verdicts(b: &[u8], rows: bool) -> Result<RunVerdicts, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        tree: "verdicts",
        detail,
    };
    if b.first() != Some(&RUN_VERDICTS_V1) {
        let mut rec: RunVerdicts = from_json("verdicts", b)?;
        if !rows {
            rec.verdicts = Vec::new();
        }
        return Ok(rec);
    }
    let len = b
        .get(1..5)
        .and_then(|l| <[u8; 4]>::try_from(l).ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| corrupt("run verdicts shorter than their header".into()))?
        as usize;
    let header = b
        .get(5..5 + len)
        .ok_or_else(|| corrupt(format!("run verdicts' header of {len} bytes cut short")))?;
    let mut rec: RunVerdicts = from_json("verdicts", header)?;
    if rows {
        use prost::Message;
        rec.verdicts = vantage_proto::v1::VerdictsResponse::decode(&b[5 + len..])
            .map_err(|e| corrupt(format!("run verdicts' rows: {e}")))?
            .verdicts;
    }
    Ok(rec)
}

pub(super) fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

pub(super) fn from_json<T: DeserializeOwned>(
    tree: &'static str,
    b: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::Corrupt {
        tree,
        detail: e.to_string(),
    })
}
