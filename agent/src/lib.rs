//! The Vantage agent: probes, the durable outbox, the coordinator session and
//! the volunteer's configuration.

pub mod probes;
