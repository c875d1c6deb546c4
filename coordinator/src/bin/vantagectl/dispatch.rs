//! `vantagectl dispatch`: one ad-hoc probe to connected agents.

use anyhow::{anyhow, Context, Result};
use tonic::transport::Channel;
use vantage_proto::v1::{DispatchRequest, ProbeInput};

use crate::common::{admin, human, print_one, Output};

pub(crate) async fn run(
    ch: Channel,
    output: Output,
    input: &str,
    agents: &[String],
    deadline: u32,
) -> Result<()> {
    let input: ProbeInput = serde_json::from_str(input).context("the probe input is not valid")?;
    // What every agent would refuse, refused here; agents get the
    // normalised input (IDNA host names).
    let input = vantage_proto::validate::validate(&input)
        .map_err(|e| anyhow!("the probe input is refused: {e}"))?;
    let r = admin(ch)
        .dispatch(DispatchRequest {
            input: Some(input),
            agent_ids: agents.to_vec(),
            deadline_s: deadline,
        })
        .await
        .map_err(human)?
        .into_inner();
    print_one(output, &r, false, || {
        println!("{}", r.task_id);
        eprintln!("sent to {} agent(s)", r.sent_to.len());
        for s in &r.skipped {
            eprintln!("skipped {s}");
        }
    })
}
