//! End-to-end tests, built as one binary to link once: real coordinator and
//! agent processes on loopback, real TLS, a real sled store in temp dirs.

#![allow(unreachable_pub)]

mod app_store;
mod campaigns;
mod changes;
mod cross;
mod dashboard;
mod deploy;
mod faults;
mod grpc_query;
mod harness;
mod hostile;
mod http;
mod openapi;
mod outbox_full;
mod partition;
mod recovery;
mod sequence;
mod sink_reads;
mod slow_clients;
mod spine;
mod targets;
mod webhooks;
