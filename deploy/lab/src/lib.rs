//! Vantage censorship lab: network namespaces joined by veth pairs in
//! 198.19.0.0/16, real Debian servers as targets, and real kernel
//! censorship in a firewall namespace, applied only to traffic from the
//! inside segment. See `deploy/lab/README.md`.
//!
//! Nothing here sends traffic beyond the lab's own namespaces: no namespace
//! has a default route, only 198.19.0.0/16 via the firewall.

pub mod censor;
pub mod dns_injector;
pub mod fleet;
pub mod lab;
pub mod nfqueue;
pub mod pki;
pub mod plan;
pub mod quic_censor;
pub mod servers_rs;
pub mod store;
pub mod sys;
pub mod targets;
pub mod wireguard_peer;
