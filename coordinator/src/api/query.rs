//! `QueryService`: reads for dashboards and researchers. Large answers
//! stream from the store instead of being buffered.

use std::pin::Pin;

use futures::Stream;
use prost::Message;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use vantage_proto::v1::query_service_server::QueryService;
use vantage_proto::v1::{ListResultsRequest, StoredResult, VerdictsRequest, VerdictsResponse};

use super::require_admin;
use crate::errors::ServiceError;
use crate::state::Shared;
use crate::store::uuid_key;

pub struct QueryApi {
    pub shared: Shared,
}

type ResultStream = Pin<Box<dyn Stream<Item = Result<StoredResult, Status>> + Send>>;

fn filter_key(tag: u8, id: &str) -> Result<Option<(u8, [u8; 16])>, ServiceError> {
    if id.is_empty() {
        return Ok(None);
    }
    uuid_key(id)
        .map(|k| Some((tag, k)))
        .ok_or_else(|| ServiceError::InvalidArgument(format!("{id:?} is not a valid id")))
}

#[tonic::async_trait]
impl QueryService for QueryApi {
    type ListResultsStream = ResultStream;

    async fn list_results(
        &self,
        req: Request<ListResultsRequest>,
    ) -> Result<Response<Self::ListResultsStream>, Status> {
        require_admin(&self.shared, &req)?;
        let r = req.into_inner();
        let index = filter_key(b't', &r.task_id)?
            .or(filter_key(b'c', &r.campaign_id)?)
            .or(filter_key(b'a', &r.agent_id)?);
        let agent_filter = r.agent_id.clone();
        let limit = if r.limit == 0 {
            usize::MAX
        } else {
            r.limit as usize
        };
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let store = self.shared.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut sent = 0;
            for item in store.results(index) {
                if sent >= limit {
                    break;
                }
                let out = item
                    .map_err(|e| Status::internal(e.to_string()))
                    .and_then(|v| {
                        StoredResult::decode(v.as_ref())
                            .map_err(|e| Status::internal(e.to_string()))
                    });
                if let Ok(sr) = &out {
                    if !agent_filter.is_empty() && sr.agent_id != agent_filter {
                        continue;
                    }
                }
                sent += 1;
                if tx.blocking_send(out).is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn verdicts(
        &self,
        req: Request<VerdictsRequest>,
    ) -> Result<Response<VerdictsResponse>, Status> {
        require_admin(&self.shared, &req)?;
        let id = req.into_inner().campaign_id;
        Ok(Response::new(crate::campaigns::verdicts(
            &self.shared,
            &id,
        )?))
    }
}
