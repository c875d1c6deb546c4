//! Vantage's test kit, shared by the e2e tests, the benchmarks and the lab
//! (one of each, as linkerd2-proxy's `linkerd/app/integration` and
//! hickory-dns's `tests/test-support`): [`procs`] runs a coordinator and
//! agents as real processes in temp dirs.

pub mod procs;
