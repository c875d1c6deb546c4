//! The Vantage coordinator: PKI and enrollment, agent sessions, the ingest
//! path, the sled store, the scheduler and the analysis that turns inside and
//! control results into verdicts.

pub mod alerts;
pub mod analysis;
pub mod api;
pub mod campaigns;
pub mod changes;
pub mod config;
pub mod dispatch;
pub mod errors;
pub mod export;
pub mod http;
pub mod hub;
pub mod ingest;
pub mod logging;
pub mod metrics;
pub(crate) mod outbound;
pub mod pki;
pub mod query;
pub mod scheduler;
pub mod server;
pub mod sink;
pub mod state;
pub mod store;
pub mod verdicts;
