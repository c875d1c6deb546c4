//! The secondary indexes of the results tree (agent, task, campaign), in
//! two families that scans merge:
//!
//! - single entries, `tag owner16 id16 -> ()` (`tag` is `a`, `t` or `c`):
//!   one sled key per result, as every store before packed postings wrote;
//! - packed postings, `TAG owner16 first16 -> id16 id16 ...` (the tag in
//!   upper case): up to [`POSTING_MAX`] ids, sorted, in one value.
//!
//! sled costs several microseconds of the commit thread per inserted key,
//! whatever its size (BENCHMARKS.md), and a group commit usually holds a
//! few hundred results of the same agent and campaign; one posting per
//! owner per group replaces hundreds of keys with one.
//!
//! Invariant: the postings of one owner are disjoint and increasing, every
//! id of a later posting (by key) above every id of the earlier ones. So a
//! scan from a cursor reads the one posting that may straddle the cursor,
//! then postings in key order, and the packed ids come out sorted. A group
//! keeps the invariant by packing only the ids above the owner's last
//! packed id (one sled read per owner per group); an older id that arrives
//! late (an agent's outbox drained after a partition, a slow control) goes
//! to a single entry. Owners with fewer than [`PACK_MIN`] new ids in a
//! group (a task, usually) get single entries without that read.

use std::iter::Peekable;
use std::ops::Bound;

use super::StoreError;

/// Fewest new ids of one owner in a group worth a posting (and the read
/// of the owner's last posting that keeps postings ordered).
pub(super) const PACK_MIN: usize = 4;
/// Most ids in one posting (4 KiB): sled copies whole values on leaf
/// splits, so postings stay small.
pub(super) const POSTING_MAX: usize = 256;

type Id = [u8; 16];

fn corrupt(detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        tree: "results",
        detail: detail.into(),
    }
}

/// The packed family's tag for a single-entry tag (`a` -> `A`).
fn packed(tag: u8) -> u8 {
    tag.to_ascii_uppercase()
}

fn key(tag: u8, owner: &Id, id: Option<&Id>) -> Vec<u8> {
    let mut k = Vec::with_capacity(33);
    k.push(tag);
    k.extend_from_slice(owner);
    if let Some(id) = id {
        k.extend_from_slice(id);
    }
    k
}

/// The ids held in a posting's value.
fn posting_ids(v: &[u8]) -> Result<Vec<Id>, StoreError> {
    if v.is_empty() || !v.len().is_multiple_of(16) {
        return Err(corrupt(format!("posting of {} bytes", v.len())));
    }
    Ok(v.chunks_exact(16)
        .map(|c| <Id>::try_from(c).unwrap_or_default())
        .collect())
}

/// The greatest id in the owner's postings.
fn last_packed(tree: &sled::Tree, tag: u8, owner: &Id) -> Result<Option<Id>, StoreError> {
    match tree.scan_prefix(key(packed(tag), owner, None)).next_back() {
        None => Ok(None),
        Some(kv) => Ok(posting_ids(&kv?.1)?.last().copied()),
    }
}

/// Adds index entries for `ids`, new results of one owner in one group
/// (distinct, none stored before), to `batch`. `tree` must not change
/// between this call and the batch being applied (the commit thread is
/// the only writer of results).
pub(super) fn add(
    tree: &sled::Tree,
    batch: &mut sled::Batch,
    tag: u8,
    owner: &Id,
    mut ids: Vec<Id>,
) -> Result<(), StoreError> {
    let singles = if ids.len() < PACK_MIN {
        ids
    } else {
        ids.sort_unstable();
        let cut = match last_packed(tree, tag, owner)? {
            Some(last) => ids.partition_point(|id| *id < last),
            None => 0,
        };
        for chunk in ids[cut..].chunks(POSTING_MAX) {
            batch.insert(key(packed(tag), owner, Some(&chunk[0])), chunk.concat());
        }
        ids.truncate(cut);
        ids
    };
    for id in &singles {
        batch.insert(key(tag, owner, Some(id)), &[][..]);
    }
    Ok(())
}

/// Takes `ids` out of the owner's index into `batch`: their single
/// entries, and their places in packed postings (a posting left empty
/// goes; one whose first id left moves to the key of its new first id, so
/// postings stay disjoint and increasing). Retention's only (`retention.rs`).
pub(super) fn remove(
    tree: &sled::Tree,
    batch: &mut sled::Batch,
    tag: u8,
    owner: &Id,
    ids: &[Id],
) -> Result<(), StoreError> {
    let prefix = key(packed(tag), owner, None);
    let mut touched: std::collections::BTreeMap<sled::IVec, Vec<Id>> = Default::default();
    for id in ids {
        batch.remove(key(tag, owner, Some(id)));
        let Some(kv) = tree.range(..=key(packed(tag), owner, Some(id))).next_back() else {
            continue;
        };
        let (k, v) = kv?;
        if !k.starts_with(&prefix) {
            continue;
        }
        let held = match touched.entry(k) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(posting_ids(&v)?),
        };
        held.retain(|x| x != id);
    }
    for (k, rest) in touched {
        batch.remove(k);
        if let Some(first) = rest.first() {
            batch.insert(key(packed(tag), owner, Some(first)), rest.concat());
        }
    }
    Ok(())
}

/// Every id in the owner's index, in id order, strictly after `after`.
pub(super) fn scan(
    tree: &sled::Tree,
    tag: u8,
    owner: Id,
    after: Option<Id>,
) -> impl Iterator<Item = Result<Id, StoreError>> {
    let singles = {
        let prefix = key(tag, &owner, None);
        let start = match &after {
            Some(a) => Bound::Excluded(key(tag, &owner, Some(a))),
            None => Bound::Included(prefix.clone()),
        };
        tree.range::<Vec<u8>, _>((start, Bound::Unbounded))
            .take_while(move |kv| kv.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
            .map(|kv| {
                let (k, _) = kv?;
                k.get(17..)
                    .and_then(|s| <Id>::try_from(s).ok())
                    .ok_or_else(|| corrupt("index key of the wrong length"))
            })
    };
    let packed_ids = {
        let prefix = key(packed(tag), &owner, None);
        // The posting that may straddle the cursor starts at or before it.
        let straddling = after.and_then(|a| {
            tree.range(..=key(packed(tag), &owner, Some(&a)))
                .next_back()
                .filter(|kv| kv.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
        });
        let start = match &after {
            Some(a) => Bound::Excluded(key(packed(tag), &owner, Some(a))),
            None => Bound::Included(prefix.clone()),
        };
        let rest = tree
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .take_while(move |kv| kv.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)));
        straddling
            .into_iter()
            .chain(rest)
            .flat_map(|kv| {
                match kv
                    .map_err(StoreError::from)
                    .and_then(|(_, v)| posting_ids(&v))
                {
                    Ok(ids) => ids.into_iter().map(Ok).collect::<Vec<_>>(),
                    Err(e) => vec![Err(e)],
                }
            })
            .filter(move |r| match (r, &after) {
                (Ok(id), Some(a)) => id > a,
                _ => true,
            })
    };
    Merge {
        a: singles.peekable(),
        b: packed_ids.peekable(),
    }
}

/// Two id-ordered streams as one; an error comes out as soon as it is
/// next in either.
struct Merge<A: Iterator, B: Iterator> {
    a: Peekable<A>,
    b: Peekable<B>,
}

impl<A, B> Iterator for Merge<A, B>
where
    A: Iterator<Item = Result<Id, StoreError>>,
    B: Iterator<Item = Result<Id, StoreError>>,
{
    type Item = Result<Id, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let take_a = match (self.a.peek(), self.b.peek()) {
            (None, None) => return None,
            (Some(_), None) | (Some(Err(_)), _) => true,
            (None, Some(_)) | (_, Some(Err(_))) => false,
            (Some(Ok(x)), Some(Ok(y))) => x <= y,
        };
        if take_a {
            self.a.next()
        } else {
            self.b.next()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn id(n: u32) -> Id {
        let mut a = [0u8; 16];
        a[12..].copy_from_slice(&n.to_be_bytes());
        a
    }

    fn ids(tree: &sled::Tree, owner: Id, after: Option<u32>) -> Vec<u32> {
        scan(tree, b'a', owner, after.map(id))
            .map(|r| u32::from_be_bytes(r.unwrap()[12..].try_into().unwrap()))
            .collect()
    }

    /// Groups of new ids in a random order, some late (below what is
    /// already packed), some too few to pack, some larger than one
    /// posting, for two owners: every scan from every cursor returns
    /// exactly the model's ids in order, and late ids became singles.
    #[test]
    fn scans_match_a_sorted_model_from_every_cursor() {
        let d = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(d.path()).open().unwrap();
        let tree = db.open_tree("results").unwrap();
        let (o1, o2) = ([1u8; 16], [2u8; 16]);
        // A deterministic shuffle of 0..2000 (step coprime with 2000).
        let order: Vec<u32> = (0..2000u32).map(|i| (i * 761 + 17) % 2000).collect();
        let mut model: BTreeSet<u32> = BTreeSet::new();
        let mut at = 0;
        for size in [1usize, 3, 600, 2, 40, 5, 300, 1, 700, 4, 344]
            .iter()
            .cycle()
        {
            if at >= order.len() {
                break;
            }
            let group: Vec<u32> = order[at..(at + size).min(order.len())].to_vec();
            at += group.len();
            let mut batch = sled::Batch::default();
            add(
                &tree,
                &mut batch,
                b'a',
                &o1,
                group.iter().map(|n| id(*n)).collect(),
            )
            .unwrap();
            // The other owner's ids interleave in key space.
            add(
                &tree,
                &mut batch,
                b'a',
                &o2,
                group.iter().map(|n| id(n + 5000)).collect(),
            )
            .unwrap();
            tree.apply_batch(batch).unwrap();
            model.extend(group);
        }
        let want: Vec<u32> = model.iter().copied().collect();
        assert_eq!(ids(&tree, o1, None), want);
        for cursor in [0u32, 1, 255, 256, 999, 1500, 1998, 1999, 2500] {
            let after: Vec<u32> = want.iter().copied().filter(|n| *n > cursor).collect();
            assert_eq!(ids(&tree, o1, Some(cursor)), after, "after {cursor}");
        }
        let o2_ids = ids(&tree, o2, Some(5999));
        assert_eq!(o2_ids, (6000..7000).collect::<Vec<_>>());
        let packed_keys = tree.scan_prefix([b'A']).count();
        let singles = tree.scan_prefix([b'a']).count();
        assert!(packed_keys > 0 && singles > 0, "{packed_keys} {singles}");
        assert!(packed_keys + singles < 2 * 2000, "{packed_keys} {singles}");
        // Every posting is sorted, within bounds, and above its predecessor.
        let mut last: Option<Id> = None;
        for kv in tree.scan_prefix(key(b'A', &o1, None)) {
            let (k, v) = kv.unwrap();
            let p = posting_ids(&v).unwrap();
            assert!(p.len() <= POSTING_MAX);
            assert_eq!(&k[17..], &p[0][..]);
            assert!(p.windows(2).all(|w| w[0] < w[1]));
            assert!(last.is_none_or(|l| l < p[0]));
            last = p.last().copied();
        }
    }

    #[test]
    fn a_damaged_posting_is_an_error_not_a_panic() {
        let d = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(d.path()).open().unwrap();
        let tree = db.open_tree("results").unwrap();
        let o = [3u8; 16];
        tree.insert(key(b'A', &o, Some(&id(1))), vec![1u8; 17])
            .unwrap();
        let got: Vec<_> = scan(&tree, b'a', o, None).collect();
        assert!(matches!(got.as_slice(), [Err(StoreError::Corrupt { .. })]));
        let mut batch = sled::Batch::default();
        let r = add(&tree, &mut batch, b'a', &o, (2..10).map(id).collect());
        assert!(matches!(r, Err(StoreError::Corrupt { .. })));
    }
}
