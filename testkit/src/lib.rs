//! Vantage's test kit, shared by the e2e tests, the benchmarks and the lab
//! (one of each, as linkerd2-proxy's `linkerd/app/integration` and
//! hickory-dns's `tests/test-support`): [`procs`] runs a coordinator and
//! agents as real processes in temp dirs; [`skip`] is the rule for tests
//! that need what the workspace does not build.

pub mod procs;
pub mod skip;
