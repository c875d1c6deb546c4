//! Read-only scans for the HTTP API: results from a cursor key (for
//! pagination and the live stream), the newest result key, and every task.
//! Nothing here writes.

use std::ops::Bound;

use super::{postings, records, result_key, Store, StoreError, TaskRecord};

impl Store {
    /// Stored results (prost `StoredResult` bytes) with their ids, in id
    /// order, starting strictly after `after` when given. Restricted to one
    /// index when `index` is set.
    pub fn results_after(
        &self,
        index: Option<(u8, [u8; 16])>,
        after: Option<[u8; 16]>,
    ) -> impl Iterator<Item = Result<([u8; 16], sled::IVec), StoreError>> + '_ {
        let Some((tag, owner)) = index else {
            let start = match after {
                Some(id) => Bound::Excluded(result_key(&id).to_vec()),
                None => Bound::Included(b"r".to_vec()),
            };
            let all = self
                .results
                .range::<Vec<u8>, _>((start, Bound::Unbounded))
                .take_while(|kv| kv.as_ref().map_or(true, |(k, _)| k.first() == Some(&b'r')))
                .map(move |kv| {
                    let (k, v) = kv?;
                    let id = k
                        .get(1..)
                        .and_then(|s| <[u8; 16]>::try_from(s).ok())
                        .ok_or_else(|| StoreError::Corrupt {
                            tree: "results",
                            detail: "result key of the wrong length".into(),
                        })?;
                    Ok((id, self.values.resolve(v)?))
                });
            return Box::new(all) as Box<dyn Iterator<Item = _>>;
        };
        Box::new(
            postings::scan(&self.results, tag, owner, after).map(move |id| {
                let id = id?;
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
            }),
        )
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
                run: None,
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

    /// Through the commit thread: a group packed into postings, a late
    /// group of older ids (single entries), a third group after both, and
    /// a reopened store: index scans and counts see every id once, in
    /// order, from any cursor.
    #[tokio::test]
    async fn index_scans_merge_postings_and_late_ids_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (agent, camp) = ([1u8; 16], [7u8; 16]);
        let wide = |n: u16| {
            let mut a = [0u8; 16];
            a[14..].copy_from_slice(&n.to_be_bytes());
            a
        };
        let offer = |range: std::ops::Range<u16>| -> Vec<PendingResult> {
            range
                .map(|n| PendingResult {
                    id: wide(n),
                    agent,
                    task: Some(wide(n)),
                    campaign: Some(camp),
                    run: None,
                    value: n.to_be_bytes().to_vec(),
                    measurement: Default::default(),
                })
                .collect()
        };
        {
            let store = Store::open(dir.path()).unwrap();
            let commit = CommitHandle::start(store.clone(), |_| {});
            for range in [100..700, 0..50, 700..710] {
                commit.commit(offer(range)).await.unwrap();
            }
        }
        let store = Store::open(dir.path()).unwrap();
        let want: Vec<u16> = (0..50).chain(100..710).collect();
        for index in [Some((b'a', agent)), Some((b'c', camp)), None] {
            for after in [None, Some(0u16), Some(49), Some(100), Some(450), Some(709)] {
                let got: Vec<u16> = store
                    .results_after(index, after.map(wide))
                    .map(|r| {
                        let (id, v) = r.unwrap();
                        assert_eq!(&id[14..], &v[..]);
                        u16::from_be_bytes([id[14], id[15]])
                    })
                    .collect();
                let expect: Vec<u16> = want
                    .iter()
                    .copied()
                    .filter(|n| after.is_none_or(|a| *n > a))
                    .collect();
                assert_eq!(got, expect, "{index:?} after {after:?}");
            }
        }
        assert_eq!(store.indexed_results(b'a', agent), 660);
        assert_eq!(store.indexed_results(b't', wide(300)), 1);
        assert_eq!(store.result_count().unwrap(), 660);
        // The late group went to single entries, the others to postings.
        assert_eq!(store.results.scan_prefix([b'a']).count(), 50);
        assert!(store.results.scan_prefix([b'A']).count() >= 3);
    }
}
