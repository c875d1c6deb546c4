//! The agent's runtime: one long-lived mTLS `Session` stream to the
//! coordinator, reconnecting with exponential backoff and jitter; tasks run
//! under the volunteer's consent and limits; every result is signed, put in
//! the outbox and sent from there, and removed only when acked.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use rand::Rng;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use vantage_proto::client::{connect_any, ClientIdentity, ConnectOptions};
use vantage_proto::v1::agent_service_client::AgentServiceClient;
use vantage_proto::v1::{
    agent_message, coordinator_message, AgentMessage, Consent, Heartbeat, Hello, Labels,
    Measurement, ResultBatch, Task, TaskAck,
};

use crate::config::AgentConfig;
use crate::identity::{self, Identity};
use crate::outbox::Outbox;
use crate::probes::{self, ProbeContext, TargetPolicy};

/// Results per batch sent to the coordinator.
const BATCH: usize = 256;
/// Results sent but not yet acknowledged, at most.
const IN_FLIGHT: usize = 4 * BATCH;

/// Everything the runtime needs.
pub struct Agent {
    pub dir: PathBuf,
    pub identity: Identity,
    pub key: SigningKey,
    pub config: AgentConfig,
    pub outbox: Outbox,
    wake: Notify,
    probes: Semaphore,
    recent_tasks: std::sync::Mutex<VecDeque<Instant>>,
    /// Ids of the last [`REMEMBERED_TASKS`] tasks accepted: the coordinator
    /// re-sends a task whose acknowledgement it never saw (a session that
    /// died, a restart), and a task is run once.
    accepted_tasks: std::sync::Mutex<RecentIds>,
}

/// Runtime errors that end `run`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Outbox(#[from] crate::outbox::OutboxError),
}

impl Agent {
    /// As [`Agent::open`] for `run`.
    pub fn open_to_run(dir: PathBuf) -> Result<Arc<Agent>, AgentError> {
        if let Some(old) = crate::outbox::legacy_outbox(&dir) {
            tracing::warn!(
                path = %old.display(),
                "an outbox from an earlier version (sled) is here; this version does not read it: \
                 results still in it are delivered only by running that version once (then remove it)"
            );
        }
        Self::open(dir)
    }

    pub fn open(dir: PathBuf) -> Result<Arc<Agent>, AgentError> {
        let identity = Identity::load(&dir)?;
        let key = identity::load_key(&dir)?;
        let config = AgentConfig::load(&dir)?;
        // `vantage-agent status` may hold the outbox for a moment when the
        // agent is not running yet: wait for it rather than fail.
        let mut tries = 0;
        let outbox = loop {
            match Outbox::open(&dir, config.limits.outbox_max_entries) {
                Ok(o) => break o,
                Err(e) if tries < 50 => {
                    tries += 1;
                    tracing::debug!("outbox busy ({e}); retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e.into()),
            }
        };
        Ok(Arc::new(Agent {
            probes: Semaphore::new(config.limits.max_concurrency as usize),
            dir,
            identity,
            key,
            config,
            outbox,
            wake: Notify::new(),
            recent_tasks: Default::default(),
            accepted_tasks: Default::default(),
        }))
    }

    fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            ca_sha256: self.identity.ca_sha256.clone(),
            identity: Some(ClientIdentity {
                cert_pem: self.identity.client_cert_pem.clone(),
                key_pem: identity::key_pem(&self.key),
            }),
            connect_timeout: Duration::from_secs(10),
            bind: None,
        }
    }

    fn hello(&self) -> AgentMessage {
        AgentMessage {
            msg: Some(agent_message::Msg::Hello(Hello {
                software_version: vantage_proto::SOFTWARE_VERSION.into(),
                capabilities: vantage_proto::PROBE_KINDS
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                consent: Some(Consent {
                    kinds: self.config.consent.kinds.clone(),
                    max_concurrency: self.config.limits.max_concurrency,
                    max_tasks_per_hour: self.config.limits.max_tasks_per_hour,
                    share_network_labels: self.config.consent.share_network_labels,
                }),
                outbox_depth: self.outbox.len(),
            })),
        }
    }

    /// Runs until `stop` resolves: keeps the session up, runs tasks, drains
    /// the outbox.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut backoff = Duration::from_millis(500);
        loop {
            let started = Instant::now();
            let outcome = tokio::select! {
                _ = &mut stop => return,
                r = self.clone().session() => r,
            };
            crate::status::record(&self.dir, &self.outbox, crate::status::Event::Disconnected);
            match outcome {
                Ok(()) => tracing::info!("session ended by the coordinator"),
                Err(e) => tracing::warn!("session failed: {e}"),
            }
            if started.elapsed() > Duration::from_secs(30) {
                backoff = Duration::from_millis(500);
            }
            // Full jitter: sleep a random time up to the current backoff.
            let sleep = rand::thread_rng().gen_range(backoff / 2..=backoff);
            tracing::info!("reconnecting in {:.1}s", sleep.as_secs_f64());
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(sleep) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(60));
        }
    }

    async fn session(self: Arc<Self>) -> Result<(), String> {
        let channel = connect_any(&self.identity.coordinators, &self.connect_options())
            .await
            .map_err(|e| e.to_string())?;
        let mut client = AgentServiceClient::new(channel)
            .max_decoding_message_size(8 << 20)
            .max_encoding_message_size(8 << 20);
        let (tx, rx) = mpsc::channel::<AgentMessage>(64);
        tx.send(self.hello()).await.map_err(|e| e.to_string())?;
        let mut inbound = client
            .session(ReceiverStream::new(rx))
            .await
            .map_err(|s| format!("{}: {}", s.code(), s.message()))?
            .into_inner();
        tracing::info!("session open");
        crate::status::record(&self.dir, &self.outbox, crate::status::Event::Connected);

        let mut in_flight: HashSet<[u8; 16]> = HashSet::new();
        let mut heartbeat = tokio::time::interval(Duration::from_secs(30));
        let mut seq = 0u64;
        loop {
            if in_flight.len() < IN_FLIGHT {
                let batch = self
                    .outbox
                    .pending(BATCH.min(IN_FLIGHT - in_flight.len()), &in_flight)
                    .map_err(|e| e.to_string())?;
                if !batch.is_empty() {
                    let mut results = Vec::with_capacity(batch.len());
                    for (k, env) in batch {
                        in_flight.insert(k);
                        results.push(env);
                    }
                    tx.send(AgentMessage {
                        msg: Some(agent_message::Msg::Results(ResultBatch { results })),
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                    continue;
                }
            }
            tokio::select! {
                m = inbound.message() => {
                    let m = m.map_err(|s| format!("{}: {}", s.code(), s.message()))?;
                    let Some(m) = m else { return Ok(()) };
                    match m.msg {
                        Some(coordinator_message::Msg::Welcome(w)) => {
                            tracing::info!(agent = %w.agent_id, "welcomed by the coordinator");
                        }
                        Some(coordinator_message::Msg::Task(t)) => {
                            let ack = self.clone().accept(t);
                            tx.send(AgentMessage { msg: Some(agent_message::Msg::TaskAck(ack)) })
                                .await
                                .map_err(|e| e.to_string())?;
                        }
                        Some(coordinator_message::Msg::Ack(a)) => {
                            let mut done = Vec::with_capacity(a.accepted.len() + a.rejected.len());
                            for id in &a.accepted {
                                if let Some(k) = vantage_proto::envelope::parse_id(id) {
                                    done.push(k);
                                }
                            }
                            for r in &a.rejected {
                                tracing::error!(id = %r.id, reason = %r.reason, "coordinator rejected a result; dropping it");
                                if let Some(k) = vantage_proto::envelope::parse_id(&r.id) {
                                    done.push(k);
                                }
                            }
                            self.outbox.remove(&done).map_err(|e| e.to_string())?;
                            let (accepted, rejected) = (a.accepted.len() as u64, a.rejected.len() as u64);
                            crate::status::record(&self.dir, &self.outbox, crate::status::Event::Acked { accepted, rejected });
                            for k in &done {
                                in_flight.remove(k);
                            }
                        }
                        Some(coordinator_message::Msg::Heartbeat(_)) | None => {}
                    }
                }
                _ = self.wake.notified() => {}
                _ = heartbeat.tick() => {
                    crate::status::record(&self.dir, &self.outbox, crate::status::Event::Heartbeat);
                    seq += 1;
                    tx.send(AgentMessage {
                        msg: Some(agent_message::Msg::Heartbeat(Heartbeat {
                            seq,
                            outbox_depth: self.outbox.len(),
                            outbox_dropped: self.outbox.dropped(),
                        })),
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                }
            }
        }
    }

    /// Decides whether to run a task, and starts it if so.
    fn accept(self: Arc<Self>, task: Task) -> TaskAck {
        let input = task.input.clone().unwrap_or_default();
        let kind = input.kind_name();
        let refuse = |reason: String| {
            tracing::info!(task = %task.task_id, %reason, "task refused");
            TaskAck {
                task_id: task.task_id.clone(),
                accepted: false,
                reason,
            }
        };
        if !self.config.consent.kinds.iter().any(|k| k == kind) {
            return refuse(format!(
                "consent: the volunteer has not enabled {kind} probes"
            ));
        }
        if self
            .accepted_tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&task.task_id)
        {
            tracing::info!(task = %task.task_id, "task received again; it runs once");
            return TaskAck {
                task_id: task.task_id.clone(),
                accepted: true,
                reason: String::new(),
            };
        }
        {
            let mut recent = self.recent_tasks.lock().unwrap_or_else(|p| p.into_inner());
            let hour_ago = Instant::now().checked_sub(Duration::from_secs(3600));
            while recent.front().is_some_and(|t| Some(*t) < hour_ago) {
                recent.pop_front();
            }
            if recent.len() as u32 >= self.config.limits.max_tasks_per_hour {
                return refuse("limit: max_tasks_per_hour reached".into());
            }
            recent.push_back(Instant::now());
        }
        self.accepted_tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(task.task_id.clone());
        let ack = TaskAck {
            task_id: task.task_id.clone(),
            accepted: true,
            reason: String::new(),
        };
        tokio::spawn(async move {
            if let Err(e) = self.execute(task).await {
                tracing::error!("could not record a result: {e}");
            }
        });
        ack
    }

    async fn execute(&self, task: Task) -> Result<(), crate::outbox::OutboxError> {
        let _permit = self.probes.acquire().await;
        let input = task.input.clone().unwrap_or_default();
        let now = vantage_proto::now_us();
        let cap = Duration::from_secs(self.config.limits.max_probe_seconds as u64);
        let until_deadline = Duration::from_micros((task.deadline_us - now).max(0) as u64);
        let mut ctx = ProbeContext::with_budget(
            TargetPolicy {
                allow_private_targets: self.config.allow_private_targets,
            },
            until_deadline.min(cap),
        );
        ctx.max_read_bytes = self.config.limits.max_read_bytes;
        let start_us = vantage_proto::now_us();
        let out = probes::run(&input, &ctx).await;
        let labels = self.config.consent.share_network_labels.then(|| Labels {
            country: self.identity.country.clone(),
            asn: self.identity.asn,
            tags: Vec::new(),
        });
        let m = Measurement {
            id: vantage_proto::envelope::new_id(),
            agent_id: self.identity.agent_id.clone(),
            campaign_id: task.campaign_id,
            task_id: task.task_id,
            run_id: task.run_id,
            start_us,
            end_us: vantage_proto::now_us(),
            software_version: vantage_proto::SOFTWARE_VERSION.into(),
            labels,
            input: Some(input),
            steps: out.steps,
            result: Some(out.result),
        };
        self.record(&m)
    }

    /// `count` signed synthetic `tcp` measurements of about `size` bytes
    /// (the padding sits in the step name), for tests and benchmarks.
    pub fn synthetic(
        &self,
        count: usize,
        size: usize,
    ) -> Vec<(String, vantage_proto::v1::SignedResult)> {
        use vantage_proto::v1::{measurement, probe_input, ProbeInput, Step, TcpInput, TcpResult};
        let pad = "x".repeat(size.saturating_sub(200));
        (0..count)
            .map(|i| {
                let now = vantage_proto::now_us();
                let m = Measurement {
                    id: vantage_proto::envelope::new_id(),
                    agent_id: self.identity.agent_id.clone(),
                    start_us: now,
                    end_us: now,
                    software_version: vantage_proto::SOFTWARE_VERSION.into(),
                    input: Some(ProbeInput {
                        kind: Some(probe_input::Kind::Tcp(TcpInput {
                            host: "192.0.2.1".into(),
                            port: 443,
                        })),
                        ..Default::default()
                    }),
                    steps: vec![Step {
                        name: format!("synthetic-{i}-{pad}"),
                        ..Default::default()
                    }],
                    result: Some(measurement::Result::Tcp(TcpResult {
                        ip: "192.0.2.1".into(),
                        port: 443,
                        ..Default::default()
                    })),
                    ..Default::default()
                };
                (m.id.clone(), vantage_proto::envelope::sign(&self.key, &m))
            })
            .collect()
    }

    /// Signs a measurement and stores it in the outbox; the session sends it.
    pub fn record(&self, m: &Measurement) -> Result<(), crate::outbox::OutboxError> {
        let env = vantage_proto::envelope::sign(&self.key, m);
        self.outbox.push(&m.id, &env)?;
        self.wake.notify_one();
        Ok(())
    }
}

/// How many accepted task ids an agent remembers.
const REMEMBERED_TASKS: usize = 4096;

/// The most recent [`REMEMBERED_TASKS`] ids, oldest forgotten first.
#[derive(Default)]
struct RecentIds {
    set: std::collections::HashSet<String>,
    order: VecDeque<String>,
}

impl RecentIds {
    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    fn insert(&mut self, id: String) {
        if self.set.insert(id.clone()) {
            self.order.push_back(id);
        }
        while self.order.len() > REMEMBERED_TASKS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_forget_the_oldest_first() {
        let mut r = RecentIds::default();
        for i in 0..REMEMBERED_TASKS + 2 {
            r.insert(i.to_string());
        }
        r.insert("5".into());
        assert!(!r.contains("0") && !r.contains("1"));
        assert!(r.contains("2") && r.contains(&(REMEMBERED_TASKS + 1).to_string()));
        assert_eq!(r.order.len(), REMEMBERED_TASKS);
        assert_eq!(r.set.len(), REMEMBERED_TASKS);
    }
}
