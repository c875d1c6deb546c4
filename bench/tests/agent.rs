//! `vantage-bench agent` measures what it says: a real agent (the
//! workspace's debug build here) enrolled with a real coordinator, idle,
//! then web tasks against the bench's slow server, which sees exactly the
//! agent's `max_concurrency` requests at once and no more.

use vantage_bench::agent::{agent, AgentOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_bench_measures_a_real_agent_at_its_concurrency_limit() {
    vantage_proto::install_crypto_provider();
    let r = agent(AgentOptions {
        builds: vec!["host".into()],
        idle_seconds: 2.0,
        web_tasks: 24,
        concurrency: 8,
        server_delay_ms: 1_000,
        page_kib: 16,
    })
    .await
    .expect("agent bench");
    assert_eq!(r.builds.len(), 1);
    let b = &r.builds[0];
    assert_eq!(b.emulator, None);
    assert_eq!(b.web_results, 24, "every web task answered: {b:?}");
    assert_eq!(
        b.web_max_in_flight, 8,
        "24 tasks at once, max_concurrency 8, 1 s per answer: {b:?}"
    );
    assert!(b.web_seconds >= 3.0, "three rounds of 1 s answers: {b:?}");
    assert!(b.binary_bytes > 1 << 20, "{b:?}");
    assert!(
        b.idle_rss_kib > 1024 && b.web_peak_rss_kib >= b.idle_rss_kib,
        "{b:?}"
    );
    assert!(b.idle_seconds >= 2.0, "{b:?}");
}
