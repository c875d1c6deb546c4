//! Change events ("since when") of a campaign, from its runs' current
//! verdicts (`crate::verdicts`), derived by `analysis::changes` per series
//! (target × country × AS). They are computed when asked, from the
//! verdicts as they stand, so a late result that revises a run's verdicts
//! (an agent's outbox delivered after an outage) moves an onset at once.
//!
//! The onset's ends are the times of the signed inside measurements: the
//! latest of the last run that still showed the old state, the earliest of
//! the first that showed the new one (the run's dispatch time when a
//! measurement is not in sled).

use std::collections::BTreeMap;

use prost::Message;
use vantage_proto::v1::{ChangeEvent, StoredResult, VerdictEntry};

use crate::analysis::changes::{derive, Change, Point};
use crate::errors::ServiceError;
use crate::scheduler::CHANGE_AFTER_RUNS;
use crate::state::Shared;
use crate::store::CampaignRecord;

/// What kind of change went from `from` to `to` (statuses).
pub fn kind_of(from: &str, to: &str) -> &'static str {
    match (from, to) {
        (f, t) if f == t => "mechanism",
        (_, "blocked") => "blocked",
        ("blocked", "ok") => "unblocked",
        (_, "down") => "down",
        _ => "up",
    }
}

/// The kinds of change, for filters.
pub const KINDS: &[&str] = &["blocked", "unblocked", "down", "up", "mechanism"];

/// When a stored measurement started, if it is in sled.
fn started(s: &Shared, id: &str) -> Option<i64> {
    let key = crate::store::uuid_key(id)?;
    let bytes = s.store.result(&key).ok()??;
    let sr = StoredResult::decode(bytes.as_ref()).ok()?;
    let m = vantage_proto::envelope::decode(sr.envelope.as_ref()?).ok()?;
    Some(m.start_us)
}

/// The inside measurement ids of a run's rows (each row's first evidence).
fn inside_ids<'a>(rows: &'a [&VerdictEntry]) -> impl Iterator<Item = &'a str> {
    rows.iter()
        .filter_map(|r| r.evidence.first().map(String::as_str))
}

/// Every change event of one campaign, oldest onset first.
pub fn of_campaign(s: &Shared, rec: &CampaignRecord) -> Result<Vec<ChangeEvent>, ServiceError> {
    Ok(from_verdicts(
        s,
        rec,
        &crate::query::views::campaign_verdicts(s, rec)?,
    ))
}

/// [`of_campaign`] from the campaign's current verdicts, already read
/// (the live feed has them at hand).
pub(crate) fn from_verdicts(
    s: &Shared,
    rec: &CampaignRecord,
    rows: &[VerdictEntry],
) -> Vec<ChangeEvent> {
    let k = rec.spec.change_after_runs.unwrap_or(CHANGE_AFTER_RUNS) as usize;
    // Series -> run -> its rows.
    type Series<'a> = BTreeMap<(&'a str, &'a str, u32), BTreeMap<&'a str, Vec<&'a VerdictEntry>>>;
    let mut series: Series = BTreeMap::new();
    for r in rows {
        series
            .entry((r.target.as_str(), r.country.as_str(), r.asn))
            .or_default()
            .entry(r.run_id.as_str())
            .or_default()
            .push(r);
    }
    let mut out = Vec::new();
    for ((target, country, asn), runs) in &series {
        let mut ordinals: BTreeMap<(String, String, String, String), u32> = BTreeMap::new();
        let points: Vec<Point> = runs
            .iter()
            .map(|(run, rows)| Point {
                run_id: run.to_string(),
                at_us: rows.first().map_or(0, |r| r.dispatch_at_us),
                rows: rows
                    .iter()
                    .map(|r| {
                        (
                            r.status.clone(),
                            r.mechanism.clone(),
                            r.agent_id.clone(),
                            r.evidence.clone(),
                        )
                    })
                    .collect(),
            })
            .collect();
        let first = runs.values().flatten().next();
        for c in derive(&points, k) {
            let Change {
                from,
                to,
                before_run,
                before_us,
                after_run,
                after_us,
                confirmed_run,
                evidence,
                agents,
            } = c;
            let times = |run: &str| -> Vec<i64> {
                runs.get(run)
                    .map(|rows| inside_ids(rows).filter_map(|id| started(s, id)).collect())
                    .unwrap_or_default()
            };
            let ordinal = ordinals
                .entry((from.0.clone(), from.1.clone(), to.0.clone(), to.1.clone()))
                .or_default();
            *ordinal += 1;
            let event_id = event_id(
                &rec.campaign_id,
                (target, country, *asn),
                (&from, &to),
                *ordinal,
            );
            let before = times(&before_run).into_iter().max().unwrap_or(before_us);
            let after = times(&after_run).into_iter().min().unwrap_or(after_us);
            out.push(ChangeEvent {
                campaign_id: rec.campaign_id.clone(),
                target: target.to_string(),
                name: first.map(|r| r.name.clone()).unwrap_or_default(),
                kind: first.map(|r| r.kind.clone()).unwrap_or_default(),
                country: country.to_string(),
                asn: *asn,
                change: kind_of(&from.0, &to.0).into(),
                from_status: from.0,
                from_mechanism: from.1,
                to_status: to.0,
                to_mechanism: to.1,
                before_run_id: before_run,
                before_us: before,
                after_run_id: after_run,
                after_us: after,
                confirmed_run_id: confirmed_run,
                evidence,
                agents,
                event_id,
                revision: 0,
                withdrawn: false,
            });
        }
    }
    out.sort_by_key(order_key);
    if let Err(e) = with_revisions(s, &rec.campaign_id, &mut out) {
        tracing::warn!(campaign = %rec.campaign_id, "read recorded change events: {e}");
    }
    out
}

/// A change event's id: stable when late results move its onset, its
/// runs or its evidence. Hex of 16 bytes of SHA-256 over the campaign, the
/// series, the transition and its ordinal among the series' events with
/// the same transition (the second ok -> blocked of a series is ordinal 2).
fn event_id(
    campaign: &str,
    (target, country, asn): (&str, &str, u32),
    (from, to): (&(String, String), &(String, String)),
    ordinal: u32,
) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(
        format!(
            "{campaign}\0{target}\0{country}\0{asn}\0{}\0{}\0{}\0{}\0{ordinal}",
            from.0, from.1, to.0, to.1
        )
        .as_bytes(),
    );
    hex::encode(&d[..16])
}

/// Whether two versions of an event say the same (revision aside).
pub(crate) fn same_content(a: &ChangeEvent, b: &ChangeEvent) -> bool {
    let bare = |e: &ChangeEvent| ChangeEvent {
        revision: 0,
        withdrawn: false,
        ..e.clone()
    };
    bare(a) == bare(b)
}

/// Gives each event the revision it has, or will have once the change
/// tracker (`crate::alerts`) records it: the recorded one when nothing
/// changed, one more when something did, 1 for an event never recorded.
fn with_revisions(
    s: &Shared,
    campaign_id: &str,
    events: &mut [ChangeEvent],
) -> Result<(), crate::store::StoreError> {
    let recorded: std::collections::HashMap<String, ChangeEvent> = s
        .store
        .recorded_changes(campaign_id)?
        .into_iter()
        .map(|e| (e.event_id.clone(), e))
        .collect();
    for e in events {
        e.revision = match recorded.get(&e.event_id) {
            Some(r) if same_content(r, e) && !r.withdrawn => r.revision,
            Some(r) => r.revision + 1,
            None => 1,
        };
    }
    Ok(())
}

/// Where an event sorts (and what a cursor holds): its onset's end, then
/// a digest of its series and run, so pages are stable.
pub fn order_key(e: &ChangeEvent) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&(e.after_us as u64 ^ (1 << 63)).to_be_bytes());
    let d = Sha256::digest(
        format!(
            "{}\0{}\0{}\0{}\0{}",
            e.campaign_id, e.target, e.country, e.asn, e.after_run_id
        )
        .as_bytes(),
    );
    k[8..].copy_from_slice(&d[..8]);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_name_the_direction() {
        assert_eq!(kind_of("ok", "blocked"), "blocked");
        assert_eq!(kind_of("down", "blocked"), "blocked");
        assert_eq!(kind_of("blocked", "ok"), "unblocked");
        assert_eq!(kind_of("ok", "down"), "down");
        assert_eq!(kind_of("blocked", "down"), "down");
        assert_eq!(kind_of("down", "ok"), "up");
        assert_eq!(kind_of("blocked", "blocked"), "mechanism");
        for k in ["blocked", "unblocked", "down", "up", "mechanism"] {
            assert!(KINDS.contains(&k));
        }
    }

    #[test]
    fn the_order_is_by_onset_then_series() {
        let e = |after_us, target: &str| ChangeEvent {
            after_us,
            target: target.into(),
            ..Default::default()
        };
        assert!(order_key(&e(-5, "a")) < order_key(&e(3, "a")));
        assert!(order_key(&e(3, "z")) < order_key(&e(4, "a")));
        assert_ne!(order_key(&e(3, "a")), order_key(&e(3, "b")));
    }
}
