//! Stored verdicts. Each run's verdicts are computed from its stored
//! results by the pure rules in `analysis/` and kept in the store's
//! `verdicts` tree, one record per run, with a revision that goes up each
//! time the rows change.
//!
//! When they are recomputed:
//! - ingest marks a run dirty once a result for it is durable (a late
//!   control result included, whatever the run's state);
//! - a read of a dirty run, or of a run never computed, recomputes it first,
//!   so readers never see rows older than the results they could fetch;
//! - the scheduler recomputes dirty runs nobody reads ([`refresh_some`]);
//! - at start-up every run is marked dirty, because marks live in memory and
//!   a crash between a commit and its recomputation would otherwise leave a
//!   stale record. A new revision is synced, so it survives a crash.
//!
//! The dirty mark is cleared before the results are read, so a result that
//! lands during a recomputation marks the run again.

use std::collections::{HashMap, HashSet};

use prost::Message;
use vantage_proto::v1::{Measurement, StoredResult, VerdictRow};

use crate::analysis;
use crate::errors::ServiceError;
use crate::state::Shared;
use crate::store::{CampaignRecord, RunRecord, RunVerdicts, StoreError};

/// Dirty runs the scheduler recomputes per pass, at most.
const REFRESH_PER_PASS: usize = 16;

/// Every stored measurement of a campaign, decoded.
pub(crate) fn results_of(s: &Shared, campaign_id: &str) -> Result<Vec<Measurement>, StoreError> {
    let Some(key) = crate::store::uuid_key(campaign_id) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for v in s.store.results(Some((b'c', key))) {
        let v = v?;
        let Ok(sr) = StoredResult::decode(v.as_ref()) else {
            continue;
        };
        if let Some(Ok(m)) = sr.envelope.as_ref().map(vantage_proto::envelope::decode) {
            out.push(m);
        }
    }
    Ok(out)
}

/// (country, ASN) of every agent.
fn agent_places(s: &Shared) -> Result<HashMap<String, (String, u32)>, StoreError> {
    Ok(s.store
        .agents()?
        .into_iter()
        .map(|a| (a.agent_id, (a.country, a.asn)))
        .collect())
}

/// Target key -> the target's name, from a campaign's stored spec: names
/// for results of agents too old to carry the input's name.
fn target_names(rec: &CampaignRecord) -> HashMap<String, String> {
    rec.spec
        .targets
        .iter()
        .filter(|t| !t.name.is_empty())
        .cloned()
        .map(|t| {
            let name = t.name.clone();
            let m = Measurement {
                input: Some(t),
                ..Default::default()
            };
            (analysis::target_key(&m), name)
        })
        .collect()
}

/// Computes one run's verdict rows from `results` (all of the campaign's).
/// Each row carries its target's name: the one in the inside result's
/// input (agents copy the input), else the spec's (`names`, by target key).
/// Returns the rows and the (inside, control) result counts.
pub fn compute_run(
    run: &RunRecord,
    results: &[Measurement],
    places: &HashMap<String, (String, u32)>,
    names: &HashMap<String, String>,
    fps: &analysis::Fingerprints,
) -> (Vec<VerdictRow>, u32, u32) {
    let control_set: HashSet<&String> = run.control.iter().collect();
    let (control, inside): (Vec<Measurement>, Vec<Measurement>) = results
        .iter()
        .filter(|m| m.run_id == run.run_id)
        .cloned()
        .partition(|m| control_set.contains(&m.agent_id));
    let by_id: HashMap<&str, &Measurement> = inside.iter().map(|m| (m.id.as_str(), m)).collect();
    let rows = analysis::analyze_run_with(&inside, &control, fps)
        .into_iter()
        .map(|(mid, target, v)| {
            let m = by_id.get(mid.as_str());
            let agent_id = m.map(|m| m.agent_id.clone()).unwrap_or_default();
            let (country, asn) = places.get(&agent_id).cloned().unwrap_or_default();
            let name = m
                .and_then(|m| m.input.as_ref())
                .map(|i| i.name.clone())
                .filter(|n| !n.is_empty())
                .or_else(|| names.get(&target).cloned())
                .unwrap_or_default();
            VerdictRow {
                run_id: run.run_id.clone(),
                target,
                agent_id,
                country,
                asn,
                status: v.status.to_string(),
                mechanism: v.mechanism.map(|m| m.to_string()).unwrap_or_default(),
                confidence: v.confidence,
                evidence: v.evidence,
                reason: v.reason,
                kind: m
                    .and_then(|m| m.input.as_ref())
                    .map(|i| i.kind_name().to_string())
                    .unwrap_or_default(),
                computed_us: 0,
                revision: 0,
                name,
            }
        })
        .collect();
    (rows, inside.len() as u32, control.len() as u32)
}

/// Lazily loaded inputs of a campaign's recomputations.
struct Inputs {
    results: Vec<Measurement>,
    places: HashMap<String, (String, u32)>,
    names: HashMap<String, String>,
    fps: analysis::Fingerprints,
}

/// The built-in block-page fingerprints plus the campaign's own.
fn fingerprints_of(rec: &CampaignRecord) -> analysis::Fingerprints {
    let rows: Vec<_> = rec
        .spec
        .blockpage_fingerprints
        .iter()
        .filter_map(|f| f.parse().ok())
        .collect();
    analysis::Fingerprints::with_extra(&rows)
}

impl Inputs {
    fn load(s: &Shared, rec: &CampaignRecord) -> Result<Inputs, StoreError> {
        Ok(Inputs {
            results: results_of(s, &rec.campaign_id)?,
            places: agent_places(s)?,
            names: target_names(rec),
            fps: fingerprints_of(rec),
        })
    }
}

/// Recomputes and stores one run's verdicts; the revision goes up only when
/// the rows differ from the stored ones.
fn recompute(
    s: &Shared,
    campaign_id: &str,
    run: &RunRecord,
    inputs: &Inputs,
    previous: Option<RunVerdicts>,
) -> Result<RunVerdicts, StoreError> {
    let (rows, inside, control) = compute_run(
        run,
        &inputs.results,
        &inputs.places,
        &inputs.names,
        &inputs.fps,
    );
    let revision = match &previous {
        Some(p) if p.verdicts == rows => p.revision,
        Some(p) => p.revision + 1,
        None => 1,
    };
    if previous.as_ref().is_some_and(|p| p.revision != revision) {
        tracing::info!(campaign = %campaign_id, run = %run.run_id, revision, "verdicts revised");
    }
    let rec = RunVerdicts {
        campaign_id: campaign_id.to_string(),
        run_id: run.run_id.clone(),
        computed_us: vantage_proto::now_us(),
        revision,
        inside_results: inside,
        control_results: control,
        verdicts: rows,
    };
    let changed = previous.as_ref().is_none_or(|p| p.revision != revision);
    s.store.put_run_verdicts(&rec, changed)?;
    Ok(rec)
}

/// The current verdicts of every run of `rec`: stored ones where they are
/// up to date, recomputed (and stored) where results arrived since.
pub fn of_campaign(s: &Shared, rec: &CampaignRecord) -> Result<Vec<VerdictRow>, ServiceError> {
    let mut inputs: Option<Inputs> = None;
    let mut rows = Vec::new();
    for run in &rec.runs {
        let dirty = s.take_dirty_run(&rec.campaign_id, &run.run_id);
        let stored = s.store.run_verdicts(&rec.campaign_id, &run.run_id)?;
        let current = match stored {
            Some(v) if !dirty => v,
            previous => {
                if inputs.is_none() {
                    inputs = Some(Inputs::load(s, rec)?);
                }
                let Some(inp) = inputs.as_ref() else {
                    continue;
                };
                recompute(s, &rec.campaign_id, run, inp, previous)?
            }
        };
        rows.extend(current.verdicts.into_iter().map(|mut r| {
            r.computed_us = current.computed_us;
            r.revision = current.revision;
            r
        }));
    }
    Ok(rows)
}

/// After a background recomputation that took `t`, the scheduler leaves
/// the campaign alone for this many times `t`: a recomputation reads every
/// result of the campaign, so while results stream into a large campaign,
/// recomputing on every pass would cost time quadratic in its size (a
/// 600,000-result campaign took ingest from 60,000 to 10,000 results/s,
/// BENCHMARKS.md). This bounds the background work to about a tenth of one
/// core; readers still recompute a dirty run on read.
const BACKOFF_FACTOR: u32 = 10;

/// Recomputes a few dirty runs (the scheduler calls this each pass),
/// skipping campaigns still in their backoff ([`BACKOFF_FACTOR`]).
pub fn refresh_some(s: &Shared) -> Result<usize, ServiceError> {
    let mut done = 0;
    let now = std::time::Instant::now();
    let due = {
        let backoff = s.verdict_backoff.lock().unwrap_or_else(|p| p.into_inner());
        s.some_dirty_runs(REFRESH_PER_PASS, |c| {
            backoff.get(c).is_none_or(|not_before| now >= *not_before)
        })
    };
    for (campaign_id, run_id) in due {
        let Some(rec) = s.store.campaign(&campaign_id)? else {
            // Results naming a campaign that is not stored: nothing to do.
            s.take_dirty_run(&campaign_id, &run_id);
            continue;
        };
        if !rec.runs.iter().any(|r| r.run_id == run_id) {
            s.take_dirty_run(&campaign_id, &run_id);
            continue;
        }
        // Reading recomputes whatever of this campaign is dirty.
        let t0 = std::time::Instant::now();
        of_campaign(s, &rec)?;
        let took = t0.elapsed();
        s.verdict_backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(campaign_id, t0 + took + took * BACKOFF_FACTOR);
        done += 1;
    }
    Ok(done)
}

/// Marks every stored run dirty (start-up).
pub fn mark_all(s: &Shared) -> Result<usize, StoreError> {
    let runs: Vec<(String, String)> = s
        .store
        .campaigns()?
        .into_iter()
        .flat_map(|c| {
            let id = c.campaign_id;
            c.runs.into_iter().map(move |r| (id.clone(), r.run_id))
        })
        .collect();
    let n = runs.len();
    s.mark_runs_dirty(runs);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vantage_proto::v1::{measurement, probe_input::Kind, ProbeInput, TcpInput, TcpResult};

    fn tcp(id: &str, agent: &str, name: &str) -> Measurement {
        Measurement {
            id: id.into(),
            agent_id: agent.into(),
            run_id: "run".into(),
            input: Some(ProbeInput {
                kind: Some(Kind::Tcp(TcpInput {
                    host: "192.0.2.1".into(),
                    port: 443,
                })),
                name: name.into(),
            }),
            result: Some(measurement::Result::Tcp(TcpResult {
                ip: "192.0.2.1".into(),
                port: 443,
                connect_us: 1_000,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    /// Rows carry the target's name: from the inside result's input, else
    /// (an agent too old to copy it) from the spec; never in the key.
    #[test]
    fn verdict_rows_carry_the_target_name() {
        let run = RunRecord {
            run_id: "run".into(),
            inside: vec!["in".into()],
            control: vec!["ctl".into()],
            ..Default::default()
        };
        let places = HashMap::from([("in".to_string(), ("CN".to_string(), 4134))]);
        let no_names = HashMap::new();
        let builtin = analysis::Fingerprints::builtin();
        let compute = |results: &[Measurement],
                       names: &HashMap<String, String>,
                       fps: &analysis::Fingerprints| {
            compute_run(&run, results, &places, names, fps)
        };
        let results = [tcp("m1", "in", "Relay"), tcp("m2", "ctl", "Relay")];
        let (rows, inside, control) = compute(&results, &no_names, builtin);
        assert_eq!((inside, control, rows.len()), (1, 1, 1));
        assert_eq!(rows[0].name, "Relay");
        assert_eq!(rows[0].country, "CN");
        assert!(!rows[0].target.contains("Relay"), "{}", rows[0].target);

        let old = [tcp("m1", "in", ""), tcp("m2", "ctl", "")];
        let rec = CampaignRecord {
            campaign_id: "c".into(),
            name: "c".into(),
            description: String::new(),
            state: Default::default(),
            created_us: 0,
            spec: crate::scheduler::parse_spec(
                "version = 1\nname = \"c\"\nallow_private_targets = true\n[inside]\ntags = [\"in\"]\n\
                 [control]\ntags = [\"ctl\"]\n[[targets]]\nname = \"From the spec\"\n\
                 tcp = { host = \"192.0.2.1\", port = 443 }\n",
                crate::scheduler::SpecFormat::Toml,
            )
            .unwrap(),
            runs: vec![run.clone()],
        };
        let (rows, _, _) = compute(&old, &target_names(&rec), &fingerprints_of(&rec));
        assert_eq!(rows[0].name, "From the spec");
        let (rows, _, _) = compute(&old, &no_names, builtin);
        assert_eq!(rows[0].name, "");
    }
}
