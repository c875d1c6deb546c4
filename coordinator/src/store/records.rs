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
    /// "active", "paused", "cancelled" or "done".
    pub state: String,
    pub created_us: i64,
    /// The spec as accepted (JSON form).
    pub spec: serde_json::Value,
    pub runs: Vec<RunRecord>,
}

/// One run of a campaign.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
pub struct RunRecord {
    pub run_id: String,
    pub index: u32,
    pub dispatch_at_us: i64,
    pub deadline_us: i64,
    /// "scheduled", "dispatched", "done" or "cancelled" (runs stored
    /// before said "complete" for done: read with `campaigns::run_state`).
    pub state: String,
    pub inside: Vec<String>,
    pub control: Vec<String>,
    /// One task per target, in target order.
    pub tasks: Vec<String>,
    /// "agent: reason" for agents not used.
    pub skipped: Vec<String>,
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
    pub verdicts: Vec<vantage_proto::v1::VerdictRow>,
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
