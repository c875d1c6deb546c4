//! Live agent sessions: who is connected and the channel that pushes
//! messages down their stream. Knows nothing about storage.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tonic::Status;
use vantage_proto::v1::CoordinatorMessage;

/// The sending half of one agent's stream. Messages are boxed: a tokio
/// channel allocates its slots 32 at a time, and 32 unboxed messages with
/// their `Status` are about 8 KiB held by every idle session (heaptrack,
/// BENCHMARKS.md); 32 boxes are 256 bytes.
pub type Outbound = mpsc::Sender<Box<Result<CoordinatorMessage, Status>>>;

#[derive(Default)]
pub struct Hub {
    sessions: Mutex<HashMap<String, (u64, Outbound)>>,
    serial: AtomicU64,
    /// Agents that may not open a session before the given time.
    barred: Mutex<HashMap<String, Instant>>,
    /// Agents whose session opened since the scheduler last looked, and
    /// when (µs): it re-sends them the tasks they were given and never
    /// acknowledged.
    arrivals: Mutex<HashMap<String, i64>>,
}

impl Hub {
    /// Registers a session; an older session of the same agent is replaced
    /// (and told so). Returns the session's serial.
    pub fn register(&self, agent_id: &str, tx: Outbound) -> u64 {
        let serial = self.serial.fetch_add(1, Ordering::Relaxed) + 1;
        let old = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(agent_id.to_string(), (serial, tx));
        if let Some((_, old)) = old {
            let _ = old.try_send(Box::new(Err(crate::errors::ServiceError::Aborted(
                "replaced by a newer session".into(),
            )
            .into())));
        }
        self.arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(agent_id.to_string(), vantage_proto::now_us());
        serial
    }

    /// Removes the session if it is still the one registered under `serial`.
    pub fn unregister(&self, agent_id: &str, serial: u64) {
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if s.get(agent_id).is_some_and(|(n, _)| *n == serial) {
            s.remove(agent_id);
        }
    }

    pub fn sender(&self, agent_id: &str) -> Option<Outbound> {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(agent_id)
            .map(|(_, tx)| tx.clone())
    }

    pub fn is_connected(&self, agent_id: &str) -> bool {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(agent_id)
    }

    pub fn connected(&self) -> Vec<String> {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Ends an agent's session with `status` (used on revocation).
    pub fn kick(&self, agent_id: &str, status: Status) {
        let removed = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(agent_id);
        if let Some((_, tx)) = removed {
            let _ = tx.try_send(Box::new(Err(status)));
        }
    }

    /// Refuses new sessions of `agent_id` for `how_long`.
    pub fn bar(&self, agent_id: &str, how_long: Duration) {
        let now = Instant::now();
        let mut b = self.barred.lock().unwrap_or_else(|p| p.into_inner());
        b.retain(|_, until| *until > now);
        b.insert(agent_id.to_string(), now + how_long);
    }

    /// How long `agent_id` must still wait before it may open a session.
    pub fn barred(&self, agent_id: &str) -> Option<Duration> {
        let b = self.barred.lock().unwrap_or_else(|p| p.into_inner());
        b.get(agent_id)
            .and_then(|until| until.checked_duration_since(Instant::now()))
    }

    /// The agents whose session opened since the last call, with the time
    /// it opened (µs).
    pub fn take_arrivals(&self) -> HashMap<String, i64> {
        std::mem::take(&mut *self.arrivals.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
