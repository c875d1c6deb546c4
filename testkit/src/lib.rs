//! Vantage's test kit, shared by the e2e tests, the benchmarks and the
//! censorship lab (`deploy/lab`) instead of each keeping a copy (one of
//! each, as linkerd2-proxy's `linkerd/app/integration` and hickory-dns's
//! `tests/test-support`):
//!
//! - [`procs`]: a coordinator and agents as real processes in temp dirs;
//! - [`netns`]: network namespaces, veth pairs, addresses, routes, iptables
//!   rules and processes inside namespaces, cleaned up on drop, and the
//!   "is the lab available" check;
//! - [`skip`]: the rule for tests that need what the workspace does not
//!   build (`VANTAGE_SKIP_LAB`).

pub mod clickhouse;
pub mod netns;
pub mod procs;
pub mod skip;
