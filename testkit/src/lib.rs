//! Vantage's test kit: what the integration tests, the benchmarks and the
//! censorship lab (`deploy/lab`) share instead of each keeping a copy.
//!
//! - [`netns`]: network namespaces, veth pairs, addresses, routes, iptables
//!   rules and processes inside namespaces, cleaned up on drop; and the
//!   "is the lab available / `VANTAGE_SKIP_LAB`" check.

pub mod netns;
