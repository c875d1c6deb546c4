//! `AgentService`: enrollment (token + proof of key possession -> client
//! certificate) and the long-lived session stream.
//!
//! Enrollment failures are rate-limited per source address (IPv6 by /64)
//! and in total, before any work is done: a token secret has 256 bits, so
//! guessing is hopeless anyway, but each attempt costs a signature check and
//! a store lookup. Addresses live only in memory, in the limiter; they are
//! never stored or logged here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

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
/// Bad signatures a session may send before it is ended. Each costs extra
/// verification (`envelope::verify_batch`), so a hostile or broken agent
/// is stopped here; an honest agent never signs badly.
pub const MAX_BAD_SIGNATURES_PER_SESSION: usize = 16;
/// How long an agent whose session was ended for bad signatures must wait
/// before it may open another: at most one batch of bad signatures per
/// agent per minute reaches the verifier.
pub const BAD_SIGNATURE_PENALTY: Duration = Duration::from_secs(60);

pub struct AgentApi {
    pub shared: Shared,
}

fn refuse(shared: &Shared, what: &str, reason: &str) -> ServiceError {
    tracing::warn!("{what} refused: {reason}");
    shared.count(&format!("{what}_refused/{}", reason.replace(' ', "_")));
    ServiceError::PermissionDenied(format!("{what} refused: {reason}"))
}

/// Failed enrollments a source may make in a burst...
pub const ENROLL_FAILURE_BURST: f64 = 10.0;
/// ...and how fast its allowance refills afterwards (one every 5 s).
pub const ENROLL_FAILURE_REFILL_PER_S: f64 = 0.2;
/// Failed enrollments allowed from all sources together, in a burst...
pub const ENROLL_GLOBAL_BURST: f64 = 200.0;
/// ...and refilled per second.
pub const ENROLL_GLOBAL_REFILL_PER_S: f64 = 20.0;
/// Sources tracked at most; beyond that, sources with a full allowance are
/// forgotten (and, if that is not enough, all of them).
const MAX_TRACKED_SOURCES: usize = 65_536;

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant, cap: f64, per_s: f64) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * per_s).min(cap);
        self.at = now;
    }

    fn wait_s(&self, per_s: f64) -> u64 {
        ((1.0 - self.tokens).max(0.0) / per_s).ceil().max(1.0) as u64
    }
}

/// Token buckets of failed enrollment attempts: a source with an empty
/// bucket (or everyone, when the global bucket is empty) is refused before
/// its request is looked at. Successful enrollments cost nothing, so a lab
/// enrolling many agents from one address is not slowed down.
#[derive(Default)]
pub struct EnrollLimiter {
    sources: HashMap<IpAddr, Bucket>,
    global: Option<Bucket>,
}

/// The limiter key of an address: IPv4 as is (also when IPv4-mapped),
/// IPv6 by its /64.
fn source_key(ip: Option<IpAddr>) -> IpAddr {
    match ip {
        None => IpAddr::from([0u8; 16]),
        Some(IpAddr::V4(v4)) => IpAddr::V4(v4),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut o = v6.octets();
                o[8..].fill(0);
                IpAddr::from(o)
            }
        },
    }
}

impl EnrollLimiter {
    fn global(&mut self, now: Instant) -> &mut Bucket {
        let g = self.global.get_or_insert(Bucket {
            tokens: ENROLL_GLOBAL_BURST,
            at: now,
        });
        g.refill(now, ENROLL_GLOBAL_BURST, ENROLL_GLOBAL_REFILL_PER_S);
        g
    }

    fn source(&mut self, ip: Option<IpAddr>, now: Instant) -> &mut Bucket {
        let b = self.sources.entry(source_key(ip)).or_insert(Bucket {
            tokens: ENROLL_FAILURE_BURST,
            at: now,
        });
        b.refill(now, ENROLL_FAILURE_BURST, ENROLL_FAILURE_REFILL_PER_S);
        b
    }

    /// `Err(seconds to wait)` when `ip` (or everyone) used up its failures.
    pub fn check(&mut self, ip: Option<IpAddr>, now: Instant) -> Result<(), u64> {
        let g = *self.global(now);
        if g.tokens < 1.0 {
            return Err(g.wait_s(ENROLL_GLOBAL_REFILL_PER_S));
        }
        let b = self.source(ip, now);
        if b.tokens < 1.0 {
            return Err(b.wait_s(ENROLL_FAILURE_REFILL_PER_S));
        }
        Ok(())
    }

    /// Records one failed attempt from `ip`.
    pub fn failed(&mut self, ip: Option<IpAddr>, now: Instant) {
        let g = self.global(now);
        g.tokens = (g.tokens - 1.0).max(0.0);
        let b = self.source(ip, now);
        b.tokens = (b.tokens - 1.0).max(0.0);
        if self.sources.len() > MAX_TRACKED_SOURCES {
            self.sources.retain(|_, b| {
                b.refill(now, ENROLL_FAILURE_BURST, ENROLL_FAILURE_REFILL_PER_S);
                b.tokens < ENROLL_FAILURE_BURST
            });
            if self.sources.len() > MAX_TRACKED_SOURCES {
                self.sources.clear();
            }
        }
    }
}

/// One coordinator serves per process, so one limiter per process.
static ENROLL_LIMITER: LazyLock<Mutex<EnrollLimiter>> = LazyLock::new(Default::default);

fn limiter() -> std::sync::MutexGuard<'static, EnrollLimiter> {
    ENROLL_LIMITER.lock().unwrap_or_else(|p| p.into_inner())
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
        let pk: [u8; 32] = req.public_key.as_slice().try_into().map_err(|_| {
            s.count("enrollment_refused/bad_public_key");
            ServiceError::InvalidArgument("public key must be 32 bytes".into())
        })?;
        let key = VerifyingKey::from_bytes(&pk).map_err(|_| {
            s.count("enrollment_refused/bad_public_key");
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
        // Checked before the token is consumed, so a typo costs no use.
        let labels = req.labels.unwrap_or_default();
        let country = labels.country.to_ascii_uppercase();
        if !(country.is_empty()
            || (country.len() == 2 && country.bytes().all(|b| b.is_ascii_alphabetic())))
        {
            s.count("enrollment_refused/bad_country");
            return Err(ServiceError::InvalidArgument(format!(
                "country {country:?} is not an ISO 3166-1 alpha-2 code"
            )));
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
        let mut tags = labels.tags;
        tags.extend(rec.tags);
        tags.retain(|t| !t.trim().is_empty());
        tags.sort();
        tags.dedup();
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
        let source = req.remote_addr().map(|a| a.ip());
        if let Err(wait_s) = limiter().check(source, Instant::now()) {
            tracing::warn!("enrollment refused: too many failed attempts (retry in {wait_s} s)");
            shared.count("enrollment_refused/rate_limited");
            return Err(ServiceError::ResourceExhausted(format!(
                "enrollment refused: too many failed attempts from this address; \
                 retry in {wait_s} s"
            ))
            .into());
        }
        let inner = req.into_inner();
        let api = AgentApi { shared };
        // Token consumption and certificate signing touch the disk.
        let r = tokio::task::spawn_blocking(move || api.enroll_inner(inner))
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        match r {
            Ok(r) => Ok(Response::new(r)),
            Err(e) => {
                limiter().failed(source, Instant::now());
                Err(e.into())
            }
        }
    }

    type SessionStream = SessionStream;

    async fn session(
        &self,
        req: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let (_rec, id) = self.authenticate(&req)?;
        let shared = self.shared.clone();
        if let Some(wait) = shared.hub.barred(&id.agent_id) {
            shared.count("session_refused/bad_signatures");
            let retry_after_s = wait.as_secs().max(1);
            return Err(ServiceError::RateLimited {
                message: format!(
                    "session refused: too many bad signatures; retry in {retry_after_s} s"
                ),
                retry_after_s,
            }
            .into());
        }
        let (tx, rx) = mpsc::channel(1024);
        let _ = tx
            .send(msg(coordinator_message::Msg::Welcome(Welcome {
                agent_id: id.agent_id.clone(),
                server_time_us: vantage_proto::now_us(),
                heartbeat_interval_s: HEARTBEAT_INTERVAL_S,
            })))
            .await;
        let serial = shared.hub.register(&id.agent_id, tx.clone());
        tracing::info!(agent = %id.agent_id, "session opened");
        let mut inbound = req.into_inner();
        tokio::spawn(async move {
            let mut bad_signatures = 0usize;
            let mut last_heard = Instant::now();
            // A connection whose peer stops answering the keepalive PINGs
            // ends the stream like a close; silence that long tells them
            // apart (a live agent sends at least its heartbeats).
            let keepalive = Duration::from_secs(
                shared.config.http2_keepalive_interval_s.max(1)
                    + shared.config.http2_keepalive_timeout_s.max(1),
            );
            let ended = loop {
                let next = tokio::time::timeout(
                    Duration::from_secs(3 * HEARTBEAT_INTERVAL_S as u64),
                    inbound.message(),
                )
                .await;
                if matches!(next, Ok(Ok(Some(_)))) {
                    last_heard = Instant::now();
                }
                match next {
                    Ok(Ok(Some(m))) => {
                        if let Err(e) = handle(&shared, &id, &tx, m, &mut bad_signatures).await {
                            tracing::warn!(agent = %id.agent_id, "session ended: {e}");
                            let why = e.to_string();
                            let _ = tx.send(Box::new(Err(e.into()))).await;
                            break why;
                        }
                    }
                    Ok(Ok(None)) if last_heard.elapsed() >= keepalive => {
                        break format!(
                            "no answer to keepalive PINGs (silent for {} s)",
                            last_heard.elapsed().as_secs()
                        );
                    }
                    Ok(Ok(None)) => break "closed by the agent".to_string(),
                    Ok(Err(status)) if status.code() == tonic::Code::OutOfRange => {
                        // tonic refuses a message over `max_message_bytes`
                        // from its length prefix, before buffering it.
                        tracing::warn!(agent = %id.agent_id, "message refused: {}", status.message());
                        shared.count("rejected/message_too_large");
                        let _ = tx.send(Box::new(Err(status))).await;
                        break "message too large".to_string();
                    }
                    Ok(Err(status)) => {
                        tracing::info!(agent = %id.agent_id, "session stream error: {}", status.message());
                        break session_end(status.message());
                    }
                    Err(_) => {
                        tracing::warn!(agent = %id.agent_id, "session idle too long; closing");
                        break format!("idle for {} s", 3 * HEARTBEAT_INTERVAL_S);
                    }
                }
            };
            shared.hub.unregister(&id.agent_id, serial);
            let _ = shared.store.update_agent(&id.agent_id, |r| {
                r.last_seen_us = vantage_proto::now_us();
                r.session_end = ended.clone();
            });
            tracing::info!(agent = %id.agent_id, %ended, "session closed");
        });
        Ok(Response::new(Box::pin(tokio_stream::StreamExt::map(
            ReceiverStream::new(rx),
            |m| *m,
        ))))
    }
}

/// Why a session's stream broke, in a volunteer's words: a connection that
/// stopped answering the coordinator's HTTP/2 PINGs (a partition, a
/// pulled cable, a stopped process) says so.
fn session_end(stream_error: &str) -> String {
    let e = stream_error.to_ascii_lowercase();
    if e.contains("keep-alive") || e.contains("keepalive") || e.contains("ping") {
        "no answer to keepalive PINGs".into()
    } else {
        format!("connection lost: {stream_error}")
    }
}

/// `m` as sent down a session (`hub::Outbound`).
fn msg(m: coordinator_message::Msg) -> Box<Result<CoordinatorMessage, Status>> {
    Box::new(Ok(CoordinatorMessage { msg: Some(m) }))
}

/// Handles one message. `Err` ends the session with that status: the store
/// failed (nothing was acked, the agent will resend), or the agent was
/// revoked while its session was open (revocation also ends the session from
/// the hub; this check makes sure nothing it sends afterwards is taken).
async fn handle(
    shared: &Shared,
    id: &AgentIdentity,
    tx: &crate::hub::Outbound,
    m: AgentMessage,
    bad_signatures: &mut usize,
) -> Result<(), ServiceError> {
    let unavailable = |e: crate::store::StoreError| ServiceError::Unavailable(e.to_string());
    let current = shared.store.agent(&id.agent_id).map_err(unavailable)?;
    if current.is_none_or(|r| r.revoked) {
        shared.count("session_refused/agent_revoked");
        return Err(ServiceError::PermissionDenied(
            "session refused: agent revoked".into(),
        ));
    }
    *bad_signatures += handle_message(shared, id, tx, m)
        .await
        .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
    if *bad_signatures > MAX_BAD_SIGNATURES_PER_SESSION {
        shared.count("session_ended/bad_signatures");
        shared.hub.bar(&id.agent_id, BAD_SIGNATURE_PENALTY);
        return Err(ServiceError::PermissionDenied(format!(
            "session ended: {} bad signatures (at most {MAX_BAD_SIGNATURES_PER_SESSION}); \
             retry in {} s",
            bad_signatures,
            BAD_SIGNATURE_PENALTY.as_secs()
        )));
    }
    Ok(())
}

/// Handles one message; returns how many bad signatures it carried.
async fn handle_message(
    shared: &Shared,
    id: &AgentIdentity,
    tx: &crate::hub::Outbound,
    m: AgentMessage,
) -> Result<usize, crate::ingest::IngestError> {
    let mut bad_signatures = 0;
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
                .send(msg(coordinator_message::Msg::Heartbeat(Heartbeat {
                    seq: h.seq,
                    ..Default::default()
                })))
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
            bad_signatures = done.bad_signatures;
            let _ = tx.send(msg(coordinator_message::Msg::Ack(done.ack))).await;
            crate::dispatch::queue_marks(shared, done.tasks, &id.agent_id, TaskAssignment::Done);
        }
        None => {
            shared.count("rejected/empty_message");
        }
    }
    Ok(bad_signatures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_enrollments_are_limited_per_source_and_refill() {
        let mut l = EnrollLimiter::default();
        let t0 = Instant::now();
        let a: Option<IpAddr> = Some("192.0.2.7".parse().unwrap());
        let b: Option<IpAddr> = Some("198.51.100.1".parse().unwrap());
        for _ in 0..ENROLL_FAILURE_BURST as usize {
            assert!(l.check(a, t0).is_ok());
            l.failed(a, t0);
        }
        assert_eq!(l.check(a, t0), Err(5), "one more failure allowed every 5 s");
        assert!(l.check(b, t0).is_ok(), "other sources are unaffected");
        // IPv4-mapped IPv6 is the same source; IPv6 counts by /64.
        let mapped: Option<IpAddr> = Some("::ffff:192.0.2.7".parse().unwrap());
        assert!(l.check(mapped, t0).is_err());
        assert!(l.check(a, t0 + Duration::from_secs(5)).is_ok());
        let v6a: Option<IpAddr> = Some("2001:db8:1:2::1".parse().unwrap());
        let v6b: Option<IpAddr> = Some("2001:db8:1:2:ffff::9".parse().unwrap());
        for _ in 0..ENROLL_FAILURE_BURST as usize {
            l.failed(v6a, t0);
        }
        assert!(l.check(v6b, t0).is_err());
    }

    #[test]
    fn the_global_bucket_stops_distributed_guessing() {
        let mut l = EnrollLimiter::default();
        let t0 = Instant::now();
        for i in 0..ENROLL_GLOBAL_BURST as u32 {
            l.failed(Some(IpAddr::from(i.to_be_bytes())), t0);
        }
        let fresh: Option<IpAddr> = Some("203.0.113.200".parse().unwrap());
        assert!(l.check(fresh, t0).is_err());
        assert!(l.check(fresh, t0 + Duration::from_secs(1)).is_ok());
    }
}
