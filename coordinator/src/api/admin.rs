//! `AdminService`: tokens, agents, revocation, ad-hoc dispatch, stats. Every
//! call needs the admin client certificate.

use rand::RngCore;
use tonic::{Request, Response, Status};
use vantage_proto::token::EnrollToken;
use vantage_proto::v1::admin_service_server::AdminService;
use vantage_proto::v1::*;

use super::require_admin;
use crate::errors::ServiceError;
use crate::state::Shared;
use crate::store::TokenRecord;

pub struct AdminApi {
    pub shared: Shared,
}

/// Longest token lifetime: 30 days.
const MAX_TTL_S: u64 = 30 * 86400;

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn create_token(
        &self,
        req: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        require_admin(&self.shared, &req)?;
        let r = req.into_inner();
        let ttl = if r.ttl_s == 0 { 86400 } else { r.ttl_s };
        if ttl > MAX_TTL_S {
            return Err(ServiceError::InvalidArgument(format!(
                "token lifetime {ttl}s is longer than the 30-day maximum"
            ))
            .into());
        }
        let uses = if r.uses == 0 { 1 } else { r.uses };
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let token = EnrollToken {
            addrs: self.shared.config.advertise.clone(),
            ca: self.shared.ca.fingerprint.clone(),
            secret: hex::encode(secret),
        };
        let now = vantage_proto::now_us();
        let expires_us = now + ttl as i64 * 1_000_000;
        self.shared
            .store
            .put_token(
                &EnrollToken::secret_hash(&token.secret),
                &TokenRecord {
                    created_us: now,
                    expires_us,
                    uses_left: uses,
                    tags: r.tags,
                },
            )
            .map_err(ServiceError::from)?;
        Ok(Response::new(CreateTokenResponse {
            token: token.encode(),
            expires_us,
        }))
    }

    async fn list_agents(
        &self,
        req: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        require_admin(&self.shared, &req)?;
        let s = &self.shared;
        let agents = s.store.agents().map_err(ServiceError::from)?;
        let agents = agents
            .into_iter()
            .map(|a| AgentInfo {
                connected: s.hub.is_connected(&a.agent_id),
                results: crate::store::uuid_key(&a.agent_id)
                    .map(|k| s.store.indexed_results(b'a', k))
                    .unwrap_or(0),
                labels: Some(Labels {
                    country: a.country,
                    asn: a.asn,
                    tags: a.tags,
                }),
                enrolled_us: a.enrolled_us,
                last_seen_us: a.last_seen_us,
                session_end: a.session_end,
                revoked: a.revoked,
                software_version: a.software_version,
                public_key: hex::decode(&a.public_key).unwrap_or_default(),
                agent_id: a.agent_id,
            })
            .collect();
        Ok(Response::new(ListAgentsResponse { agents }))
    }

    async fn revoke_agent(
        &self,
        req: Request<RevokeAgentRequest>,
    ) -> Result<Response<RevokeAgentResponse>, Status> {
        require_admin(&self.shared, &req)?;
        let id = req.into_inner().agent_id;
        let s = &self.shared;
        let found = s
            .store
            .update_agent(&id, |r| r.revoked = true)
            .map_err(ServiceError::from)?;
        if found.is_none() {
            return Err(ServiceError::NotFound(format!("no agent with id {id}")).into());
        }
        s.store.sync().map_err(ServiceError::from)?;
        s.hub.kick(
            &id,
            ServiceError::PermissionDenied("agent revoked".into()).into(),
        );
        tracing::info!(agent = %id, "agent revoked");
        Ok(Response::new(RevokeAgentResponse {}))
    }

    async fn dispatch(
        &self,
        req: Request<DispatchRequest>,
    ) -> Result<Response<DispatchResponse>, Status> {
        require_admin(&self.shared, &req)?;
        let r = req.into_inner();
        let input = r
            .input
            .ok_or_else(|| ServiceError::InvalidArgument("dispatch needs a probe input".into()))?;
        // Refused here for what every agent would refuse; sent normalised.
        let input = vantage_proto::validate::validate(&input)
            .map_err(|e| ServiceError::InvalidArgument(format!("probe input: {e}")))?;
        let o = crate::dispatch::dispatch(&self.shared, input, r.agent_ids, r.deadline_s).await?;
        Ok(Response::new(DispatchResponse {
            task_id: o.task_id,
            sent_to: o.sent_to,
            skipped: o
                .skipped
                .into_iter()
                .map(|(a, r)| format!("{a}: {r}"))
                .collect(),
        }))
    }

    async fn stats(&self, req: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        require_admin(&self.shared, &req)?;
        let s = &self.shared;
        let counters = s.store.counters().map_err(ServiceError::from)?;
        let stored = s.store.result_count().map_err(ServiceError::from)?;
        let sink = match &s.sink {
            Some(sink) => {
                let lag = crate::sink::lag(&s.store, sink.name).map_err(ServiceError::from)?;
                Some(vantage_proto::v1::SinkStatus {
                    name: sink.name.into(),
                    coordinator_id: sink.coordinator_id.clone(),
                    cursor: lag.cursor,
                    last_seq: lag.last_seq,
                    lag_results: lag.results,
                    lag_seconds: lag.seconds,
                    rows: sink.rows.load(std::sync::atomic::Ordering::Relaxed),
                    errors: sink.errors.load(std::sync::atomic::Ordering::Relaxed),
                    last_error: sink.last_error(),
                    retired: sink.retired.load(std::sync::atomic::Ordering::Relaxed),
                    retired_seq: s.store.retired_seq().map_err(ServiceError::from)?,
                })
            }
            None => None,
        };
        Ok(Response::new(StatsResponse {
            sink,
            results_stored: stored,
            agents: s.store.agents().map(|a| a.len() as u64).unwrap_or(0),
            agents_connected: s.hub.connected().len() as u64,
            counters: counters
                .into_iter()
                .map(|(name, value)| Counter { name, value })
                .collect(),
        }))
    }

    async fn create_campaign(
        &self,
        req: Request<CreateCampaignRequest>,
    ) -> Result<Response<CreateCampaignResponse>, Status> {
        require_admin(&self.shared, &req)?;
        let r = crate::campaigns::create(&self.shared, req.into_inner()).await?;
        Ok(Response::new(r))
    }

    async fn list_campaigns(
        &self,
        req: Request<ListCampaignsRequest>,
    ) -> Result<Response<ListCampaignsResponse>, Status> {
        require_admin(&self.shared, &req)?;
        Ok(Response::new(crate::campaigns::list(&self.shared)?))
    }

    async fn campaign_status(
        &self,
        req: Request<CampaignStatusRequest>,
    ) -> Result<Response<CampaignStatusResponse>, Status> {
        require_admin(&self.shared, &req)?;
        Ok(Response::new(crate::campaigns::status(
            &self.shared,
            &req.into_inner().campaign_id,
        )?))
    }

    async fn set_campaign_state(
        &self,
        req: Request<SetCampaignStateRequest>,
    ) -> Result<Response<SetCampaignStateResponse>, Status> {
        require_admin(&self.shared, &req)?;
        let r = req.into_inner();
        let state = crate::campaigns::set_state(&self.shared, &r.campaign_id, &r.action)?;
        Ok(Response::new(SetCampaignStateResponse { state }))
    }

    async fn add_webhook(
        &self,
        req: Request<AddWebhookRequest>,
    ) -> Result<Response<AddWebhookResponse>, Status> {
        require_admin(&self.shared, &req)?;
        let r = crate::alerts::webhooks::add(&self.shared, req.into_inner())?;
        Ok(Response::new(r))
    }

    async fn list_webhooks(
        &self,
        req: Request<ListWebhooksRequest>,
    ) -> Result<Response<ListWebhooksResponse>, Status> {
        require_admin(&self.shared, &req)?;
        Ok(Response::new(crate::alerts::webhooks::list(&self.shared)?))
    }

    async fn remove_webhook(
        &self,
        req: Request<RemoveWebhookRequest>,
    ) -> Result<Response<RemoveWebhookResponse>, Status> {
        require_admin(&self.shared, &req)?;
        let id = req.into_inner().id;
        Ok(Response::new(crate::alerts::webhooks::remove(
            &self.shared,
            &id,
        )?))
    }

    async fn test_webhook(
        &self,
        req: Request<TestWebhookRequest>,
    ) -> Result<Response<TestWebhookResponse>, Status> {
        require_admin(&self.shared, &req)?;
        let id = req.into_inner().id;
        Ok(Response::new(crate::alerts::webhooks::test(
            &self.shared,
            &id,
        )?))
    }

    type BackupStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<BackupChunk, Status>> + Send>>;

    async fn backup(
        &self,
        req: Request<BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        require_admin(&self.shared, &req)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let _paused = shared.commit.pause();
            let writer = ChunkWriter {
                tx: tx.clone(),
                buf: Vec::with_capacity(CHUNK),
            };
            match shared.store.export(Some(&shared.data_dir), writer) {
                Ok(s) => tracing::info!(entries = s.entries, "live backup streamed"),
                Err(e) => {
                    tracing::error!("live backup failed: {e}");
                    let e = ServiceError::Internal(format!("backup failed: {e}"));
                    let _ = tx.blocking_send(Err(e.into()));
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

const CHUNK: usize = 1 << 20;

/// Streams what it is written in ~1 MiB chunks; fails when the client left.
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<Result<BackupChunk, Status>>,
    buf: Vec<u8>,
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(BackupChunk { data }))
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "backup client went away")
            })
    }
}

impl Drop for ChunkWriter {
    fn drop(&mut self) {
        let _ = std::io::Write::flush(self);
    }
}
