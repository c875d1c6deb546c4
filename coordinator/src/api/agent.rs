//! `AgentService`: enrollment (token + proof of key possession -> client
//! certificate) and the long-lived session stream.

use std::pin::Pin;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use vantage_proto::envelope;
use vantage_proto::token::EnrollToken;
use vantage_proto::v1::agent_service_server::AgentService;
use vantage_proto::v1::{
    agent_message, coordinator_message, AgentMessage, CoordinatorMessage, EnrollRequest,
    EnrollResponse, Heartbeat, Welcome,
};

use super::peer_fingerprint;
use crate::errors::ServiceError;
use crate::ingest::{ingest, AgentIdentity};
use crate::state::Shared;
use crate::store::{uuid_key, AgentRecord, TaskAssignment};

pub const HEARTBEAT_INTERVAL_S: u32 = 30;

pub struct AgentApi {
    pub shared: Shared,
}

fn refuse(shared: &Shared, what: &str, reason: &str) -> ServiceError {
    tracing::warn!("{what} refused: {reason}");
    shared.count(&format!("{what}_refused/{}", reason.replace(' ', "_")));
    ServiceError::PermissionDenied(format!("{what} refused: {reason}"))
}

impl AgentApi {
    fn enroll_inner(&self, req: EnrollRequest) -> Result<EnrollResponse, ServiceError> {
        let s = &self.shared;
        let token = EnrollToken::decode(&req.token).map_err(|e| {
            s.count("enroll_refused/malformed_token");
            ServiceError::InvalidArgument(format!("enrollment refused: {e}"))
        })?;
        if token.ca != s.ca.fingerprint {
            return Err(refuse(
                s,
                "enrollment",
                "token was issued by another coordinator",
            ));
        }
        let pk: [u8; 32] = req
            .public_key
            .as_slice()
            .try_into()
            .map_err(|_| ServiceError::InvalidArgument("public key must be 32 bytes".into()))?;
        let key = VerifyingKey::from_bytes(&pk).map_err(|_| {
            ServiceError::InvalidArgument("public key is not an Ed25519 point".into())
        })?;
        if key.is_weak() {
            return Err(refuse(s, "enrollment", "weak public key"));
        }
        if !envelope::verify_enroll_proof(&key, &req.token, &req.proof) {
            return Err(refuse(
                s,
                "enrollment",
                "proof of key possession does not verify",
            ));
        }
        let now = vantage_proto::now_us();
        let rec = match s
            .store
            .consume_token(&EnrollToken::secret_hash(&token.secret), now)?
        {
            Ok(r) => r,
            Err(reason) => return Err(refuse(s, "enrollment", reason)),
        };
        let agent_id = envelope::new_id();
        let (cert_pem, fp) =
            s.ca.sign_agent(&agent_id, &pk)
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let labels = req.labels.unwrap_or_default();
        let mut tags = labels.tags;
        tags.extend(rec.tags);
        tags.retain(|t| !t.trim().is_empty());
        tags.sort();
        tags.dedup();
        let country = labels.country.to_ascii_uppercase();
        if !(country.is_empty()
            || (country.len() == 2 && country.bytes().all(|b| b.is_ascii_alphabetic())))
        {
            return Err(ServiceError::InvalidArgument(format!(
                "country {country:?} is not an ISO 3166-1 alpha-2 code"
            )));
        }
        s.store.put_agent(&AgentRecord {
            agent_id: agent_id.clone(),
            public_key: hex::encode(pk),
            country,
            asn: labels.asn,
            tags,
            cert_fingerprint: fp,
            enrolled_us: now,
            software_version: req.software_version,
            ..Default::default()
        })?;
        tracing::info!(agent = %agent_id, "agent enrolled");
        Ok(EnrollResponse {
            agent_id,
            client_cert_pem: cert_pem,
            ca_cert_pem: s.ca.cert_pem.clone(),
        })
    }

    fn authenticate<T>(
        &self,
        req: &Request<T>,
    ) -> Result<(AgentRecord, AgentIdentity), ServiceError> {
        let s = &self.shared;
        let Some(fp) = peer_fingerprint(req) else {
            return Err({
                tracing::warn!("session refused: no client certificate");
                s.count("session_refused/no_certificate");
                ServiceError::Unauthenticated("session refused: no client certificate".into())
            });
        };
        let Some(rec) = s.store.agent_by_cert(&fp)? else {
            return Err(refuse(s, "session", "unknown certificate"));
        };
        if rec.revoked {
            return Err(refuse(s, "session", "agent revoked"));
        }
        let key = hex::decode(&rec.public_key)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .and_then(|b| VerifyingKey::from_bytes(&b).ok())
            .ok_or_else(|| ServiceError::Internal("stored agent key is corrupt".into()))?;
        let key16 = uuid_key(&rec.agent_id)
            .ok_or_else(|| ServiceError::Internal("stored agent id is corrupt".into()))?;
        let id = AgentIdentity {
            agent_id: rec.agent_id.clone(),
            key16,
            key,
        };
        Ok((rec, id))
    }
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<CoordinatorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for AgentApi {
    async fn enroll(
        &self,
        req: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let shared = self.shared.clone();
        let inner = req.into_inner();
        let api = AgentApi { shared };
        // Token consumption and certificate signing touch the disk.
        let r = tokio::task::spawn_blocking(move || api.enroll_inner(inner))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(r))
    }

    type SessionStream = SessionStream;

    async fn session(
        &self,
        req: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let (_rec, id) = self.authenticate(&req)?;
        let shared = self.shared.clone();
        let (tx, rx) = mpsc::channel(1024);
        let _ = tx
            .send(Ok(msg(coordinator_message::Msg::Welcome(Welcome {
                agent_id: id.agent_id.clone(),
                server_time_us: vantage_proto::now_us(),
                heartbeat_interval_s: HEARTBEAT_INTERVAL_S,
            }))))
            .await;
        let serial = shared.hub.register(&id.agent_id, tx.clone());
        tracing::info!(agent = %id.agent_id, "session opened");
        let mut inbound = req.into_inner();
        tokio::spawn(async move {
            loop {
                let next = tokio::time::timeout(
                    Duration::from_secs(3 * HEARTBEAT_INTERVAL_S as u64),
                    inbound.message(),
                )
                .await;
                match next {
                    Ok(Ok(Some(m))) => {
                        if let Err(e) = handle(&shared, &id, &tx, m).await {
                            tracing::error!(agent = %id.agent_id, "session ended: {e}");
                            let _ = tx.send(Err(Status::unavailable(e.to_string()))).await;
                            break;
                        }
                    }
                    Ok(Ok(None)) => break,
                    Ok(Err(status)) => {
                        tracing::info!(agent = %id.agent_id, "session stream error: {}", status.message());
                        break;
                    }
                    Err(_) => {
                        tracing::warn!(agent = %id.agent_id, "session idle too long; closing");
                        break;
                    }
                }
            }
            shared.hub.unregister(&id.agent_id, serial);
            let _ = shared
                .store
                .update_agent(&id.agent_id, |r| r.last_seen_us = vantage_proto::now_us());
            tracing::info!(agent = %id.agent_id, "session closed");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn msg(m: coordinator_message::Msg) -> CoordinatorMessage {
    CoordinatorMessage { msg: Some(m) }
}

async fn handle(
    shared: &Shared,
    id: &AgentIdentity,
    tx: &crate::hub::Outbound,
    m: AgentMessage,
) -> Result<(), crate::store::StoreError> {
    match m.msg {
        Some(agent_message::Msg::Hello(h)) => {
            let consent = h.consent.unwrap_or_default();
            shared.store.update_agent(&id.agent_id, |r| {
                r.last_seen_us = vantage_proto::now_us();
                r.software_version = h.software_version.clone();
                r.consent_kinds = consent.kinds.clone();
                r.max_concurrency = consent.max_concurrency;
                r.max_tasks_per_hour = consent.max_tasks_per_hour;
            })?;
        }
        Some(agent_message::Msg::Heartbeat(h)) => {
            shared
                .store
                .update_agent(&id.agent_id, |r| r.last_seen_us = vantage_proto::now_us())?;
            let _ = tx
                .send(Ok(msg(coordinator_message::Msg::Heartbeat(Heartbeat {
                    seq: h.seq,
                    ..Default::default()
                }))))
                .await;
        }
        Some(agent_message::Msg::TaskAck(a)) => {
            let state = if a.accepted {
                TaskAssignment::Accepted
            } else {
                tracing::info!(agent = %id.agent_id, task = %a.task_id, reason = %a.reason, "task refused by agent");
                shared.count("task_refused_by_agent");
                TaskAssignment::Refused
            };
            crate::dispatch::mark(shared, &a.task_id, &id.agent_id, state)?;
        }
        Some(agent_message::Msg::Results(batch)) => {
            let done = ingest(shared, id, batch.results).await?;
            let _ = tx
                .send(Ok(msg(coordinator_message::Msg::Ack(done.ack))))
                .await;
            for t in done.tasks {
                crate::dispatch::mark(shared, &t, &id.agent_id, TaskAssignment::Done)?;
            }
        }
        None => {
            shared.count("rejected/empty_message");
        }
    }
    Ok(())
}
