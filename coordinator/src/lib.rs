//! The Vantage coordinator: PKI and enrollment, agent sessions, the ingest
//! path, the sled store, the scheduler and the analysis that turns inside and
//! control results into verdicts.

pub mod analysis;
pub mod scheduler;
