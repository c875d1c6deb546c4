//! Where each result sink stands, in `meta` (`sink/<name>/...`), and the
//! coordinator's own id that sinks write into their rows.
//!
//! A sink follows the commit sequence (`seq.rs`). Before it sends a batch
//! it records the batch's range (`inflight`: after `from`, up to `to`);
//! after the far side confirmed it, the cursor moves to `to` and the range
//! is cleared, in one batch. A sink that restarts with a range recorded
//! sends that exact range again: the same results, in the same order, so
//! the far side sees the identical block and can drop it as a retry.

use super::{run_key, Store, StoreError};

const COORDINATOR_ID_KEY: &[u8] = b"coordinator_id";
/// `sinkv/` campaign16 run-id -> revision (u32): runs whose verdicts wait
/// for the sink.
const VERDICTS_WAITING: &[u8] = b"sinkv/";
const VERDICTS_BACKFILLED: &[u8] = b"sink/clickhouse/verdicts_backfilled";

fn waiting_key(campaign_id: &str, run_id: &str) -> Option<Vec<u8>> {
    let mut key = VERDICTS_WAITING.to_vec();
    key.extend_from_slice(&run_key(campaign_id, run_id)?);
    Some(key)
}

/// A run whose verdicts wait for the sink: campaign id, run id, revision.
pub type WaitingVerdicts = (String, String, u32);

/// A sink's position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkPosition {
    /// Every result up to this commit sequence number was confirmed.
    pub cursor: u64,
    /// A batch sent (or about to be) and not confirmed: after `.0`, up to
    /// and including `.1`.
    pub inflight: Option<(u64, u64)>,
}

fn key(sink: &str, what: &str) -> Vec<u8> {
    format!("sink/{sink}/{what}").into_bytes()
}

fn number(v: &[u8], what: &str) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(v)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            tree: "meta",
            detail: format!("sink {what} of the wrong length"),
        })
}

impl Store {
    /// The id of this coordinator, made (a UUIDv7) at the first call and
    /// kept in the store.
    pub fn coordinator_id(&self) -> Result<String, StoreError> {
        let fresh = uuid::Uuid::now_v7().to_string();
        let r = self.meta.compare_and_swap(
            COORDINATOR_ID_KEY,
            None as Option<&[u8]>,
            Some(fresh.as_bytes()),
        )?;
        match r {
            Ok(()) => {
                self.sync()?;
                Ok(fresh)
            }
            Err(e) => Ok(String::from_utf8_lossy(e.current.as_deref().unwrap_or_default()).into()),
        }
    }

    /// Where sink `sink` stands.
    pub fn sink_position(&self, sink: &str) -> Result<SinkPosition, StoreError> {
        let cursor = match self.meta.get(key(sink, "cursor"))? {
            Some(v) => number(&v, "cursor")?,
            None => 0,
        };
        let inflight = match self.meta.get(key(sink, "inflight"))? {
            Some(v) if v.len() == 16 => {
                Some((number(&v[..8], "range")?, number(&v[8..], "range")?))
            }
            Some(_) => {
                return Err(StoreError::Corrupt {
                    tree: "meta",
                    detail: "sink range of the wrong length".into(),
                })
            }
            None => None,
        };
        Ok(SinkPosition { cursor, inflight })
    }

    /// Records, durably, the batch sink `sink` is about to send.
    pub fn sink_sending(&self, sink: &str, from: u64, to: u64) -> Result<(), StoreError> {
        let mut v = from.to_be_bytes().to_vec();
        v.extend_from_slice(&to.to_be_bytes());
        self.meta.insert(key(sink, "inflight"), v)?;
        self.sync()
    }

    /// The far side confirmed everything up to `to`: the cursor moves there
    /// and the recorded batch is cleared. Not synced: a confirmation lost in
    /// a crash only makes the sink send the same batch again.
    pub fn sink_confirmed(&self, sink: &str, to: u64) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        b.insert(key(sink, "cursor"), &to.to_be_bytes()[..]);
        b.remove(key(sink, "inflight"));
        self.meta.apply_batch(b)?;
        Ok(())
    }
}

impl Store {
    /// From now on a new revision of a run's verdicts waits for the sink;
    /// the first time, every run with stored verdicts is marked too.
    pub fn enable_verdict_sink(&self) -> Result<(), StoreError> {
        self.verdict_sink
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if self.meta.contains_key(VERDICTS_BACKFILLED)? {
            return Ok(());
        }
        for kv in self.verdicts.iter() {
            let (_, v) = kv?;
            let rec = super::records::decode_run_verdicts(&v, false)?;
            self.mark_verdicts_for_sink(&rec.campaign_id, &rec.run_id, rec.revision)?;
        }
        self.meta.insert(VERDICTS_BACKFILLED, &[][..])?;
        self.sync()
    }

    pub(super) fn mark_verdicts_for_sink(
        &self,
        campaign_id: &str,
        run_id: &str,
        revision: u32,
    ) -> Result<(), StoreError> {
        if let Some(key) = waiting_key(campaign_id, run_id) {
            self.meta.insert(key, &revision.to_be_bytes()[..])?;
        }
        Ok(())
    }

    /// Up to `n` runs whose verdicts wait for the sink.
    pub fn verdicts_to_sink(&self, n: usize) -> Result<Vec<WaitingVerdicts>, StoreError> {
        let mut out = Vec::new();
        for kv in self.meta.scan_prefix(VERDICTS_WAITING).take(n) {
            let (k, v) = kv?;
            let rest = &k[VERDICTS_WAITING.len()..];
            let (Some(campaign), Ok(revision)) = (
                rest.get(..16).and_then(|c| <[u8; 16]>::try_from(c).ok()),
                <[u8; 4]>::try_from(v.as_ref()),
            ) else {
                return Err(StoreError::Corrupt {
                    tree: "meta",
                    detail: "a verdict sink mark of the wrong shape".into(),
                });
            };
            out.push((
                uuid::Uuid::from_bytes(campaign).to_string(),
                String::from_utf8_lossy(&rest[16..]).into_owned(),
                u32::from_be_bytes(revision),
            ));
        }
        Ok(out)
    }

    /// The sink holds `revision` of a run's verdicts: its mark goes, unless
    /// a newer revision marked it meanwhile.
    pub fn verdicts_sunk(
        &self,
        campaign_id: &str,
        run_id: &str,
        revision: u32,
    ) -> Result<(), StoreError> {
        if let Some(key) = waiting_key(campaign_id, run_id) {
            let _ = self.meta.compare_and_swap(
                key,
                Some(&revision.to_be_bytes()[..]),
                None as Option<&[u8]>,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_survive_a_reopen_and_the_id_is_made_once() {
        let d = tempfile::tempdir().unwrap();
        let (id, pos) = {
            let s = Store::open(d.path()).unwrap();
            assert_eq!(s.sink_position("ch").unwrap(), SinkPosition::default());
            let id = s.coordinator_id().unwrap();
            assert_eq!(s.coordinator_id().unwrap(), id);
            s.sink_sending("ch", 0, 10).unwrap();
            s.sink_confirmed("ch", 10).unwrap();
            s.sink_sending("ch", 10, 25).unwrap();
            s.sync().unwrap();
            (id, s.sink_position("ch").unwrap())
        };
        assert_eq!(
            pos,
            SinkPosition {
                cursor: 10,
                inflight: Some((10, 25))
            }
        );
        let s = Store::open(d.path()).unwrap();
        assert_eq!(s.sink_position("ch").unwrap(), pos);
        assert_eq!(s.coordinator_id().unwrap(), id);
        assert_eq!(s.sink_position("other").unwrap(), SinkPosition::default());
    }

    #[test]
    fn verdict_marks_backfill_once_follow_revisions_and_clear_only_when_current() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let c = "0190a8b2-0000-7000-8000-0000000000c3";
        let run = |id: &str, revision| super::super::RunVerdicts {
            campaign_id: c.into(),
            run_id: id.into(),
            revision,
            ..Default::default()
        };
        // Stored before the sink: not marked until it is enabled.
        s.put_run_verdicts(&run("r1", 1), true).unwrap();
        assert!(s.verdicts_to_sink(10).unwrap().is_empty());
        s.enable_verdict_sink().unwrap();
        assert_eq!(
            s.verdicts_to_sink(10).unwrap(),
            [(c.to_string(), "r1".to_string(), 1)]
        );
        // A new revision replaces the mark; an unchanged recheck does not.
        s.put_run_verdicts(&run("r1", 2), true).unwrap();
        s.put_run_verdicts(&run("r2", 1), false).unwrap();
        assert_eq!(
            s.verdicts_to_sink(10).unwrap(),
            [(c.to_string(), "r1".to_string(), 2)]
        );
        // Sunk at revision 1 (sent before revision 2 came): the mark stays.
        s.verdicts_sunk(c, "r1", 1).unwrap();
        assert_eq!(s.verdicts_to_sink(10).unwrap().len(), 1);
        s.verdicts_sunk(c, "r1", 2).unwrap();
        assert!(s.verdicts_to_sink(10).unwrap().is_empty());
        // The backfill ran once.
        s.enable_verdict_sink().unwrap();
        assert!(s.verdicts_to_sink(10).unwrap().is_empty());
    }
}
