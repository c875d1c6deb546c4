//! `vantagectl stats`: the coordinator's counters.

use anyhow::Result;
use tonic::transport::Channel;
use vantage_proto::v1::StatsRequest;

use crate::common::{admin, human, print_one, Output};

pub(crate) async fn run(ch: Channel, output: Output) -> Result<()> {
    let r = admin(ch).stats(StatsRequest {}).await;
    let r = r.map_err(human)?.into_inner();
    print_one(output, &r, true, || {
        println!("results stored    {}", r.results_stored);
        println!("agents            {}", r.agents);
        println!("agents connected  {}", r.agents_connected);
        if let Some(k) = &r.sink {
            println!(
                "sink {:<12} lag {} results ({:.1} s), confirmed to #{} of #{}, {} rows and {} errors since start{}{}",
                k.name,
                k.lag_results,
                k.lag_seconds,
                k.cursor,
                k.last_seq,
                k.rows,
                k.errors,
                if k.retired > 0 {
                    format!(", {} removed from sled (kept in ClickHouse)", k.retired)
                } else {
                    String::new()
                },
                if k.last_error.is_empty() {
                    String::new()
                } else {
                    format!("; last error: {}", k.last_error)
                }
            );
        }
        for c in &r.counters {
            println!("{:<40} {}", c.name, c.value);
        }
    })
}
