//! The commit sequence: every result stored gets the next number of one
//! dense, increasing sequence, given by the commit thread and written in
//! the same atomic sled batch as the result (`q` + number, big-endian ->
//! result id, in the results tree; the last number under `m/seq`).
//!
//! Incremental readers follow it, not result ids: ids are UUIDv7 chosen by
//! agents when they measure, so a result delivered late from an outbox
//! (the censored agent's normal case) has an id older than results already
//! read, and a reader following ids never sees it. The sequence says when
//! a result was stored; a reader that saw number n has seen every result
//! stored up to n.

use std::ops::Bound;

use super::{result_key, Store, StoreError, LAST_SEQ_KEY};

/// First byte of the sequence keys in the results tree.
const SEQ_TAG: u8 = b'q';

pub(super) fn seq_key(n: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = SEQ_TAG;
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

fn corrupt(detail: &str) -> StoreError {
    StoreError::Corrupt {
        tree: "results",
        detail: detail.into(),
    }
}

/// Results a backfill writes per sled batch.
const BACKFILL_BATCH: usize = 10_000;

impl Store {
    /// The last commit sequence number given (0: none yet).
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        match self.results.get(LAST_SEQ_KEY)? {
            None => Ok(0),
            Some(v) => <[u8; 8]>::try_from(v.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| corrupt("last sequence number of the wrong length")),
        }
    }

    /// Adds the sequence entries of `ids` (just stored, in commit order)
    /// to `batch`, numbered after `last`, and records the new last number
    /// when `record` (the backfill records it only at its end); returns it.
    pub(super) fn add_seq(
        batch: &mut sled::Batch,
        last: u64,
        ids: impl IntoIterator<Item = [u8; 16]>,
        record: bool,
    ) -> u64 {
        let mut n = last;
        for id in ids {
            n += 1;
            batch.insert(&seq_key(n)[..], &id[..]);
        }
        if record {
            batch.insert(LAST_SEQ_KEY, &n.to_be_bytes()[..]);
        }
        n
    }

    /// Stored results after sequence number `after`, in commit order: the
    /// number, the result id and its `StoredResult` bytes.
    pub fn results_after_seq(
        &self,
        after: u64,
    ) -> impl Iterator<Item = Result<(u64, [u8; 16], sled::IVec), StoreError>> + '_ {
        let start = Bound::Excluded(seq_key(after).to_vec());
        self.results
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .take_while(|kv| {
                kv.as_ref()
                    .map_or(true, |(k, _)| k.first() == Some(&SEQ_TAG))
            })
            .map(move |kv| {
                let (k, v) = kv?;
                let n = k
                    .get(1..)
                    .and_then(|s| <[u8; 8]>::try_from(s).ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| corrupt("sequence key of the wrong length"))?;
                let id = <[u8; 16]>::try_from(v.as_ref())
                    .map_err(|_| corrupt("sequence entry of the wrong length"))?;
                let ptr = self
                    .results
                    .get(result_key(&id))?
                    .ok_or_else(|| corrupt("sequence entry of a result not stored"))?;
                Ok((n, id, self.values.resolve(ptr)?))
            })
    }

    /// Numbers the results of a store written before the sequence existed,
    /// in id order, once (at open). Every result stored has a number after
    /// this; nothing happens when the sequence is already there.
    pub(super) fn backfill_seq(&self) -> Result<(), StoreError> {
        if self.results.get(LAST_SEQ_KEY)?.is_some() || self.result_count()? == 0 {
            return Ok(());
        }
        let mut last = 0u64;
        let mut ids = Vec::with_capacity(BACKFILL_BATCH);
        let flush =
            |ids: &mut Vec<[u8; 16]>, last: &mut u64, end: bool| -> Result<(), StoreError> {
                let mut batch = sled::Batch::default();
                *last = Store::add_seq(&mut batch, *last, ids.drain(..), end);
                self.results.apply_batch(batch)?;
                Ok(())
            };
        for kv in self.results.scan_prefix(b"r") {
            let (k, _) = kv?;
            let id = k
                .get(1..)
                .and_then(|s| <[u8; 16]>::try_from(s).ok())
                .ok_or_else(|| corrupt("result key of the wrong length"))?;
            ids.push(id);
            if ids.len() == BACKFILL_BATCH {
                flush(&mut ids, &mut last, false)?;
            }
        }
        // Only the last batch writes `m/seq`, so a backfill cut short by a
        // crash starts over (its entries are rewritten the same).
        flush(&mut ids, &mut last, true)?;
        self.sync()?;
        tracing::info!(
            results = last,
            "numbered the stored results (commit sequence)"
        );
        Ok(())
    }
}
