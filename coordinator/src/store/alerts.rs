//! Change events as recorded, webhooks and their delivery queue, in the
//! `alerts` tree (`crate::alerts` drives them):
//!
//! - `c` -> the commit sequence number the change tracker has looked at;
//! - `l/` campaign16 event16 -> the change event as last recorded
//!   (protobuf `ChangeEvent`, with its id and revision);
//! - `h/` webhook16 -> the webhook (JSON);
//! - `q/` due_us(8, big-endian) delivery16 -> a delivery waiting to be
//!   sent (JSON), in the order they are due;
//! - `d/` delivery16 -> a delivery given up on (JSON).
//!
//! New and revised events, the deliveries they make and the tracker's
//! cursor are written in one batch and synced, so a crash between them
//! loses nothing and sends nothing twice by itself (a retry after a lost
//! answer can: delivery is at least once, with an idempotency key).

use prost::Message;
use serde::{Deserialize, Serialize};
use vantage_proto::v1::{ChangeEvent, WebhookFilter};

use super::{records, uuid_key, Store, StoreError};

const CURSOR: &[u8] = b"c";
const LEDGER: &[u8] = b"l/";
const HOOK: &[u8] = b"h/";
const QUEUE: &[u8] = b"q/";
const DEAD: &[u8] = b"d/";

/// A webhook as stored.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct WebhookRecord {
    pub id: String,
    pub url: String,
    /// The HMAC-SHA256 key, hex.
    pub secret: String,
    pub campaign_id: String,
    pub countries: Vec<String>,
    pub targets: Vec<String>,
    pub changes: Vec<String>,
    pub description: String,
    pub created_us: i64,
    pub delivered: u64,
    pub failed_attempts: u64,
    pub dead: u64,
    pub last_error: String,
    pub last_success_us: i64,
}

impl WebhookRecord {
    /// Whether change event `e` is one this webhook asked for.
    pub fn wants(&self, e: &ChangeEvent) -> bool {
        (self.campaign_id.is_empty() || self.campaign_id == e.campaign_id)
            && (self.countries.is_empty() || self.countries.contains(&e.country))
            && (self.targets.is_empty() || self.targets.contains(&e.target))
            && (self.changes.is_empty() || self.changes.contains(&e.change))
    }

    pub fn filter(&self) -> WebhookFilter {
        WebhookFilter {
            campaign_id: self.campaign_id.clone(),
            countries: self.countries.clone(),
            targets: self.targets.clone(),
            changes: self.changes.clone(),
        }
    }
}

/// One POST to make (and remake until it succeeds or is given up).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Delivery {
    /// UUIDv7 of this delivery.
    pub id: String,
    pub webhook: String,
    /// The idempotency key the receiver sees (`<event id>.<revision>`, or
    /// the delivery id for a ping): the same on every attempt.
    pub key: String,
    /// The exact body, built once, so every attempt sends the same bytes.
    pub body: String,
    pub attempts: u32,
    pub first_us: i64,
    pub last_error: String,
}

/// A queued delivery and where it sits in the queue.
pub type Queued = (Vec<u8>, Delivery);

fn ledger_prefix(campaign_id: &str) -> Option<Vec<u8>> {
    let mut k = LEDGER.to_vec();
    k.extend_from_slice(&uuid_key(campaign_id)?);
    Some(k)
}

fn ledger_key(e: &ChangeEvent) -> Option<Vec<u8>> {
    let mut k = ledger_prefix(&e.campaign_id)?;
    let id = hex::decode(&e.event_id).ok()?;
    k.extend_from_slice(&id);
    Some(k)
}

fn keyed(prefix: &[u8], id: &str) -> Result<Vec<u8>, StoreError> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&uuid_key(id).ok_or_else(|| StoreError::NotFound(id.to_string()))?);
    Ok(k)
}

fn queue_key(due_us: i64, id: &str) -> Result<Vec<u8>, StoreError> {
    let mut k = QUEUE.to_vec();
    k.extend_from_slice(&(due_us.max(0) as u64).to_be_bytes());
    k.extend_from_slice(&uuid_key(id).ok_or_else(|| StoreError::NotFound(id.to_string()))?);
    Ok(k)
}

impl Store {
    /// The commit sequence number the change tracker has looked at.
    pub fn alerts_cursor(&self) -> Result<u64, StoreError> {
        Ok(super::counter_value(self.alerts.get(CURSOR)?.as_deref()))
    }

    /// The change events of a campaign as last recorded.
    pub fn recorded_changes(&self, campaign_id: &str) -> Result<Vec<ChangeEvent>, StoreError> {
        let Some(prefix) = ledger_prefix(campaign_id) else {
            return Ok(Vec::new());
        };
        self.alerts
            .scan_prefix(prefix)
            .map(|kv| {
                let (_, v) = kv?;
                ChangeEvent::decode(v.as_ref()).map_err(|e| StoreError::Corrupt {
                    tree: "alerts",
                    detail: format!("change event: {e}"),
                })
            })
            .collect()
    }

    /// Records new and revised change events and the deliveries they make
    /// (due now), and moves the tracker's cursor to `cursor`, in one
    /// synced batch.
    pub fn record_changes(
        &self,
        events: &[ChangeEvent],
        deliveries: &[Delivery],
        cursor: u64,
        now_us: i64,
    ) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        for e in events {
            if let Some(k) = ledger_key(e) {
                b.insert(k, e.encode_to_vec());
            }
        }
        for d in deliveries {
            b.insert(queue_key(now_us, &d.id)?, records::to_json(d));
        }
        b.insert(CURSOR, &cursor.to_be_bytes()[..]);
        self.alerts.apply_batch(b)?;
        self.sync()
    }

    pub fn put_webhook(&self, w: &WebhookRecord) -> Result<(), StoreError> {
        self.alerts
            .insert(keyed(HOOK, &w.id)?, records::to_json(w))?;
        self.sync()
    }

    pub fn webhook(&self, id: &str) -> Result<Option<WebhookRecord>, StoreError> {
        let Ok(k) = keyed(HOOK, id) else {
            return Ok(None);
        };
        self.alerts
            .get(k)?
            .map(|v| records::from_json("alerts", &v))
            .transpose()
    }

    pub fn webhooks(&self) -> Result<Vec<WebhookRecord>, StoreError> {
        self.alerts
            .scan_prefix(HOOK)
            .map(|kv| records::from_json("alerts", &kv?.1))
            .collect()
    }

    /// Removes a webhook and its queued deliveries; how many were dropped,
    /// or none when there is no such webhook.
    pub fn remove_webhook(&self, id: &str) -> Result<Option<u64>, StoreError> {
        let Ok(k) = keyed(HOOK, id) else {
            return Ok(None);
        };
        if self.alerts.remove(k)?.is_none() {
            return Ok(None);
        }
        let mut dropped = 0;
        let mut b = sled::Batch::default();
        for kv in self.alerts.scan_prefix(QUEUE) {
            let (k, v) = kv?;
            let d: Delivery = records::from_json("alerts", &v)?;
            if d.webhook == id {
                b.remove(k);
                dropped += 1;
            }
        }
        self.alerts.apply_batch(b)?;
        self.sync()?;
        Ok(Some(dropped))
    }

    /// Queues one delivery, due now.
    pub fn queue_delivery(&self, d: &Delivery, now_us: i64) -> Result<(), StoreError> {
        self.alerts
            .insert(queue_key(now_us, &d.id)?, records::to_json(d))?;
        self.sync()
    }

    /// Up to `n` deliveries due at `now_us`, the earliest first.
    pub fn due_deliveries(&self, now_us: i64, n: usize) -> Result<Vec<Queued>, StoreError> {
        let mut end = QUEUE.to_vec();
        end.extend_from_slice(&((now_us.max(0) as u64) + 1).to_be_bytes());
        self.alerts
            .range(QUEUE.to_vec()..end)
            .take(n)
            .map(|kv| {
                let (k, v) = kv?;
                Ok((k.to_vec(), records::from_json("alerts", &v)?))
            })
            .collect()
    }

    /// When the next delivery is due, if any is queued.
    pub fn next_due_us(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .alerts
            .scan_prefix(QUEUE)
            .next()
            .transpose()?
            .map(|(k, _)| {
                let due: [u8; 8] = k[QUEUE.len()..QUEUE.len() + 8]
                    .try_into()
                    .unwrap_or_default();
                u64::from_be_bytes(due) as i64
            }))
    }

    /// Deliveries queued and given up, per webhook id.
    pub fn delivery_counts(
        &self,
    ) -> Result<std::collections::HashMap<String, (u64, u64)>, StoreError> {
        let mut out: std::collections::HashMap<String, (u64, u64)> = Default::default();
        for (prefix, dead) in [(QUEUE, false), (DEAD, true)] {
            for kv in self.alerts.scan_prefix(prefix) {
                let d: Delivery = records::from_json("alerts", &kv?.1)?;
                let c = out.entry(d.webhook).or_default();
                if dead {
                    c.1 += 1;
                } else {
                    c.0 += 1;
                }
            }
        }
        Ok(out)
    }

    /// What became of an attempt at the delivery queued under `key`:
    /// done (`None`), retried at `Some(due)`, or given up (`dead`). The
    /// webhook's record is updated with it, in the same batch.
    pub fn delivery_attempted(
        &self,
        key: &[u8],
        d: &Delivery,
        retry_at: Option<i64>,
        dead: bool,
        hook: &WebhookRecord,
    ) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        b.remove(key);
        if dead {
            b.insert(keyed(DEAD, &d.id)?, records::to_json(d));
        } else if let Some(due) = retry_at {
            b.insert(queue_key(due, &d.id)?, records::to_json(d));
        }
        if self.alerts.contains_key(keyed(HOOK, &hook.id)?)? {
            b.insert(keyed(HOOK, &hook.id)?, records::to_json(hook));
        }
        self.alerts.apply_batch(b)?;
        self.sync()
    }

    /// Drops a queued delivery whose webhook is gone.
    pub fn drop_delivery(&self, key: &[u8]) -> Result<(), StoreError> {
        self.alerts.remove(key)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(hook: &str) -> Delivery {
        Delivery {
            id: uuid::Uuid::now_v7().to_string(),
            webhook: hook.into(),
            key: "k".into(),
            body: "{}".into(),
            ..Default::default()
        }
    }

    #[test]
    fn deliveries_come_out_when_due_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let hook = WebhookRecord {
            id: uuid::Uuid::now_v7().to_string(),
            url: "http://127.0.0.1:1/".into(),
            ..Default::default()
        };
        {
            let s = Store::open(dir.path()).unwrap();
            s.put_webhook(&hook).unwrap();
            let e = ChangeEvent {
                campaign_id: uuid::Uuid::now_v7().to_string(),
                event_id: "00112233445566778899aabbccddeeff".into(),
                revision: 1,
                ..Default::default()
            };
            s.record_changes(std::slice::from_ref(&e), &[delivery(&hook.id)], 7, 100)
                .unwrap();
            assert_eq!(s.recorded_changes(&e.campaign_id).unwrap(), vec![e]);
            s.queue_delivery(&delivery(&hook.id), 300).unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.alerts_cursor().unwrap(), 7);
        assert_eq!(s.due_deliveries(99, 10).unwrap().len(), 0);
        let due = s.due_deliveries(100, 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(s.next_due_us().unwrap(), Some(100));
        // Retried later: due again only then.
        let (k, d) = &due[0];
        s.delivery_attempted(k, d, Some(500), false, &hook).unwrap();
        assert_eq!(s.due_deliveries(400, 10).unwrap().len(), 1);
        assert_eq!(s.due_deliveries(500, 10).unwrap().len(), 2);
        assert_eq!(s.delivery_counts().unwrap()[&hook.id], (2, 0));
        let (k, d) = &s.due_deliveries(300, 10).unwrap()[0];
        s.delivery_attempted(k, d, None, true, &hook).unwrap();
        assert_eq!(s.delivery_counts().unwrap()[&hook.id], (1, 1));
        assert_eq!(s.remove_webhook(&hook.id).unwrap(), Some(1));
        assert_eq!(s.remove_webhook(&hook.id).unwrap(), None);
        assert!(s.due_deliveries(i64::MAX - 1, 10).unwrap().is_empty());
    }
}
