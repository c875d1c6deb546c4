//! Read-only scans for the HTTP API: results from a cursor key (for
//! pagination and the live stream), the newest result key, and every task.
//! Nothing here writes.

use std::ops::Bound;

use super::{records, result_key, Store, StoreError, TaskRecord};

/// Where a results scan reads: every result (`r` family), or one secondary
/// index (`b'a'` agent, `b't'` task, `b'c'` campaign) and its owner.
fn prefix_of(index: Option<(u8, [u8; 16])>) -> Vec<u8> {
    match index {
        None => b"r".to_vec(),
        Some((tag, owner)) => {
            let mut p = Vec::with_capacity(17);
            p.push(tag);
            p.extend_from_slice(&owner);
            p
        }
    }
}

impl Store {
    /// Stored results (prost `StoredResult` bytes) with their ids, in id
    /// order, starting strictly after `after` when given. Restricted to one
    /// index when `index` is set.
    pub fn results_after(
        &self,
        index: Option<(u8, [u8; 16])>,
        after: Option<[u8; 16]>,
    ) -> impl Iterator<Item = Result<([u8; 16], sled::IVec), StoreError>> + '_ {
        let prefix = prefix_of(index);
        let plen = prefix.len();
        let start = match after {
            Some(id) => {
                let mut k = prefix.clone();
                k.extend_from_slice(&id);
                Bound::Excluded(k)
            }
            None => Bound::Included(prefix.clone()),
        };
        let via_index = index.is_some();
        self.results
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .take_while(move |kv| match kv {
                Ok((k, _)) => k.starts_with(&prefix),
                Err(_) => true,
            })
            .map(move |kv| {
                let (k, v) = kv?;
                let id: [u8; 16] =
                    k.get(plen..)
                        .and_then(|s| s.try_into().ok())
                        .ok_or_else(|| StoreError::Corrupt {
                            tree: "results",
                            detail: "result key of the wrong length".into(),
                        })?;
                if !via_index {
                    return Ok((id, self.values.resolve(v)?));
                }
                let v = self
                    .results
                    .get(result_key(&id))?
                    .ok_or_else(|| StoreError::Corrupt {
                        tree: "results",
                        detail: format!(
                            "index points at missing result {}",
                            uuid::Uuid::from_bytes(id)
                        ),
                    })?;
                Ok((id, self.values.resolve(v)?))
            })
    }

    /// The greatest stored result id, if any.
    pub fn last_result_id(&self) -> Result<Option<[u8; 16]>, StoreError> {
        match self.results.scan_prefix(b"r").next_back() {
            None => Ok(None),
            Some(kv) => {
                let (k, _) = kv?;
                Ok(k.get(1..).and_then(|s| <[u8; 16]>::try_from(s).ok()))
            }
        }
    }

    /// Every task record (unordered by time: keyed by task id).
    pub fn tasks(&self) -> impl Iterator<Item = Result<TaskRecord, StoreError>> + '_ {
        self.tasks
            .iter()
            .values()
            .map(|v| records::from_json("tasks", &v?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CommitHandle, PendingResult};

    fn id(n: u8) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[15] = n;
        a
    }

    #[tokio::test]
    async fn scans_after_a_cursor_in_id_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.last_result_id().unwrap(), None);
        let commit = CommitHandle::start(store.clone(), |_| {});
        let camp = [7u8; 16];
        let batch = (1..=5)
            .map(|n| PendingResult {
                id: id(n),
                agent: [1u8; 16],
                task: None,
                campaign: (n % 2 == 1).then_some(camp),
                value: vec![n],
                measurement: Default::default(),
            })
            .collect();
        commit.commit(batch).await.unwrap();
        let ids = |index, after| -> Vec<u8> {
            store
                .results_after(index, after)
                .map(|r| r.unwrap().0[15])
                .collect()
        };
        assert_eq!(ids(None, None), vec![1, 2, 3, 4, 5]);
        assert_eq!(ids(None, Some(id(2))), vec![3, 4, 5]);
        assert_eq!(ids(Some((b'c', camp)), None), vec![1, 3, 5]);
        assert_eq!(ids(Some((b'c', camp)), Some(id(3))), vec![5]);
        assert_eq!(ids(Some((b'a', [1u8; 16])), Some(id(5))), Vec::<u8>::new());
        // Index scans return the result bytes, not the empty index value.
        let v: Vec<Vec<u8>> = store
            .results_after(Some((b'c', camp)), None)
            .map(|r| r.unwrap().1.to_vec())
            .collect();
        assert_eq!(v, vec![vec![1], vec![3], vec![5]]);
        assert_eq!(store.last_result_id().unwrap(), Some(id(5)));
        assert_eq!(store.tasks().count(), 0);
    }
}
