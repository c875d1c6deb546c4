//! Campaign specs, run expansion and agent selection: pure functions, no
//! I/O and no clock of their own. The runtime that uses them (storing
//! campaigns, leasing tasks) is `crate::campaigns`.
//!
//! - `spec`: parse and validate a spec; every refusal names line and field.
//! - `expand`: a schedule becomes runs with jittered dispatch times.
//! - `select`: which agents make up the inside and control groups.

mod expand;
mod select;
mod spec;

pub use expand::{expand_runs, RunPlan};
pub use select::{
    matches, select_agents, select_agents_for, select_groups, AgentView, Selection, SkipReason,
    GROUP,
};
pub use spec::{
    parse_spec, CampaignSpec, FingerprintSpec, GroupSelector, Schedule, SpecError, SpecFormat,
    CHANGE_AFTER_RUNS, DEFAULT_DEADLINE, MAX_DEADLINE, MAX_RUNS, MAX_TARGETS,
};
