//! `vantagectl results`: stored results (signed envelopes), oldest first.

use anyhow::Result;
use futures::StreamExt;
use tonic::transport::Channel;
use vantage_proto::v1::query_service_client::QueryServiceClient;
use vantage_proto::v1::ListResultsRequest;

use crate::common::{base64_std, human, Output};

pub(crate) async fn run(ch: Channel, output: Output, req: ListResultsRequest) -> Result<()> {
    let mut stream = QueryServiceClient::new(ch)
        .list_results(req)
        .await
        .map_err(human)?
        .into_inner();
    while let Some(item) = stream.next().await {
        let sr = item.map_err(human)?;
        let env = sr.envelope.clone().unwrap_or_default();
        let m = vantage_proto::envelope::decode(&env)?;
        match output {
            Output::Table => {
                let v = serde_json::to_value(&m)?;
                let obs = v
                    .as_object()
                    .and_then(|o| {
                        vantage_proto::PROBE_KINDS
                            .iter()
                            .chain(["refused"].iter())
                            .find_map(|k| o.get(*k).map(|x| format!("{k} {x}")))
                    })
                    .unwrap_or_default();
                println!("{}  {}  {}", m.id, m.agent_id, obs);
            }
            _ => println!(
                "{}",
                serde_json::json!({
                    "agent_id": sr.agent_id,
                    "received_us": sr.received_us,
                    "measurement": m,
                    "envelope": {
                        "measurement_b64": base64_std(&env.measurement),
                        "signature_b64": base64_std(&env.signature),
                    }
                })
            ),
        }
    }
    Ok(())
}
