//! Where each result sink stands, in `meta` (`sink/<name>/...`), and the
//! coordinator's own id that sinks write into their rows.
//!
//! A sink follows the commit sequence (`seq.rs`). Before it sends a batch
//! it records the batch's range (`inflight`: after `from`, up to `to`);
//! after the far side confirmed it, the cursor moves to `to` and the range
//! is cleared, in one batch. A sink that restarts with a range recorded
//! sends that exact range again: the same results, in the same order, so
//! the far side sees the identical block and can drop it as a retry.

use super::{Store, StoreError};

const COORDINATOR_ID_KEY: &[u8] = b"coordinator_id";

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
}
