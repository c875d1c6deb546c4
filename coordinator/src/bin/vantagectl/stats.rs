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
        for c in &r.counters {
            println!("{:<40} {}", c.name, c.value);
        }
    })
}
