//! The Vantage agent: probes, the durable outbox, the coordinator session and
//! the volunteer's configuration.

pub mod config;
pub mod enroll;
pub mod identity;
pub mod outbox;
pub mod probes;
pub mod session;
pub mod status;
