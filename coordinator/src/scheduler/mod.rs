//! Campaign specs, run expansion and agent selection: pure functions, no
//! I/O. The runtime that uses them is `crate::campaigns`.

mod select;
mod spec;

pub use select::{select_agents, AgentView, Selection};
pub use spec::{
    expand_runs, parse_spec, CampaignSpec, GroupSelector, RunPlan, Schedule, SpecError, SpecFormat,
    MAX_RUNS,
};
