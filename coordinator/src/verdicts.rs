//! Stored verdicts. Each run's verdicts are computed from its stored
//! results by the pure rules in `analysis/` and kept in the store's
//! `verdicts` tree, one record per run, with a revision that goes up each
//! time the rows change.
//!
//! Only the writer side stores them:
//! - ingest marks a run dirty once a result for it is durable (a late
//!   control result included, whatever the run's state);
//! - the scheduler recomputes and stores dirty runs each pass
//!   ([`refresh_some`], with a per-campaign backoff);
//! - at start-up every run is marked dirty, because marks live in memory and
//!   a crash between a commit and its recomputation would otherwise leave a
//!   stale record. A new revision is synced, so it survives a crash.
//!
//! Readers ([`of_campaign`]: the read layer, both faces) never write: a run
//! that is dirty or was never stored is computed in memory for the answer,
//! with the revision storing it would give, so readers never see rows older
//! than the results they could fetch, and the numbers are the ones the
//! writer stores next.
//!
//! The dirty mark is cleared before the results are read, so a result that
//! lands during a recomputation marks the run again.

use std::collections::{BTreeMap, HashMap, HashSet};

use prost::Message;
use vantage_proto::v1::{Measurement, StoredResult, VerdictRow};

use crate::analysis;
use crate::errors::ServiceError;
use crate::state::Shared;
use crate::store::{CampaignRecord, RunRecord, RunVerdicts, StoreError};

/// Dirty runs the scheduler recomputes per pass, at most.
const REFRESH_PER_PASS: usize = 16;

/// Stored results decoded for verdicts and status so far, in this
/// process: the reads benchmark (`vantage-bench reads`) reports what each
/// read costs in decoded results.
pub static RESULTS_DECODED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Every stored measurement of a campaign, decoded.
pub(crate) fn results_of(s: &Shared, campaign_id: &str) -> Result<Vec<Measurement>, StoreError> {
    let mut out = Vec::new();
    each_result_of(s, campaign_id, |m| out.push(m))?;
    Ok(out)
}

/// Calls `f` with each of a campaign's results in turn, keeping none.
pub(crate) fn each_result_of(
    s: &Shared,
    campaign_id: &str,
    f: impl FnMut(Measurement),
) -> Result<(), StoreError> {
    match crate::store::uuid_key(campaign_id) {
        Some(key) => each_decoded(s, (b'c', key), f),
        None => Ok(()),
    }
}

/// Calls `f` with each decodable result one index holds.
fn each_decoded(
    s: &Shared,
    index: (u8, [u8; 16]),
    mut f: impl FnMut(Measurement),
) -> Result<(), StoreError> {
    for v in s.store.results(Some(index)) {
        let v = v?;
        RESULTS_DECODED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Ok(sr) = StoredResult::decode(v.as_ref()) else {
            continue;
        };
        if let Some(Ok(m)) = sr.envelope.as_ref().map(vantage_proto::envelope::decode) {
            f(m);
        }
    }
    Ok(())
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

/// Reads the results of a campaign's runs, one run at a time.
struct RunResults {
    /// Every result of the campaign is in the run index
    /// ([`crate::store::Store::runs_indexed`]): a run reads its own.
    indexed: bool,
    /// A campaign from before the run index: all of its results, read
    /// once for all of its runs.
    whole: Option<Vec<Measurement>>,
}

impl RunResults {
    fn new(s: &Shared, rec: &CampaignRecord) -> Result<RunResults, StoreError> {
        Ok(RunResults {
            indexed: s.store.runs_indexed(rec.created_us)?,
            whole: None,
        })
    }

    /// The results of one run of `rec`.
    fn of(
        &mut self,
        s: &Shared,
        rec: &CampaignRecord,
        run_id: &str,
    ) -> Result<Vec<Measurement>, StoreError> {
        let mut out = Vec::new();
        if self.indexed {
            each_result_of_run(s, &rec.campaign_id, run_id, |m| out.push(m))?;
            return Ok(out);
        }
        if self.whole.is_none() {
            self.whole = Some(results_of(s, &rec.campaign_id)?);
        }
        out.extend(
            self.whole
                .iter()
                .flatten()
                .filter(|m| m.run_id == run_id)
                .cloned(),
        );
        Ok(out)
    }
}

/// Lazily loaded inputs of a campaign's recomputations.
struct Inputs {
    /// The computed records will be stored (the writer's refresh).
    store: bool,
    results: RunResults,
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
    fn load(s: &Shared, rec: &CampaignRecord, store: bool) -> Result<Inputs, StoreError> {
        Ok(Inputs {
            store,
            results: RunResults::new(s, rec)?,
            places: agent_places(s)?,
            names: target_names(rec),
            fps: fingerprints_of(rec),
        })
    }
}

/// Calls `f` with each result of one run, through the run index (only
/// results stored since the store keeps one: see
/// [`crate::store::Store::runs_indexed`]).
pub(crate) fn each_result_of_run(
    s: &Shared,
    campaign_id: &str,
    run_id: &str,
    mut f: impl FnMut(Measurement),
) -> Result<(), StoreError> {
    let Some(c16) = crate::store::uuid_key(campaign_id) else {
        return Ok(());
    };
    let owner = crate::store::run_owner(&c16, run_id);
    each_decoded(s, (b'u', owner), |m| {
        // Another run hashing to the same owner is left out.
        if m.run_id == run_id && m.campaign_id == campaign_id {
            f(m);
        }
    })
}

/// The first failure string found in a measurement's result, if any: what
/// `campaign status` counts a result under.
pub(crate) fn first_failure(m: &Measurement) -> Option<String> {
    if let Some(vantage_proto::v1::measurement::Result::Refused(r)) = &m.result {
        return Some(format!("refused: {}", r.reason));
    }
    let v = serde_json::to_value(m).ok()?;
    fn walk(v: &serde_json::Value) -> Option<String> {
        match v {
            serde_json::Value::Object(o) => {
                if let Some(serde_json::Value::Object(f)) = o.get("failure") {
                    if let Some(serde_json::Value::String(s)) = f.get("failure") {
                        if !s.is_empty() {
                            return Some(s.clone());
                        }
                    }
                }
                o.values().find_map(walk)
            }
            serde_json::Value::Array(a) => a.iter().find_map(walk),
            _ => None,
        }
    }
    walk(&v)
}

/// A run's results by their first failure ([`first_failure`]).
pub(crate) fn failures_of(results: &[Measurement]) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for f in results.iter().filter_map(first_failure) {
        *out.entry(f).or_default() += 1;
    }
    out
}

/// Computes one run's verdicts from its `results`; the revision goes up
/// only when the rows differ from the `previous` (stored) ones. Stores
/// nothing.
fn compute(
    campaign_id: &str,
    run: &RunRecord,
    results: &[Measurement],
    inputs: &Inputs,
    previous: Option<&RunVerdicts>,
) -> RunVerdicts {
    // Only a record about to be stored needs them (readers of verdicts
    // never look; `campaign status` counts a dirty run's itself), and
    // finding a result's first failure walks all of it.
    let failures = if inputs.store {
        failures_of(results)
    } else {
        BTreeMap::new()
    };
    let (rows, inside, control) =
        compute_run(run, results, &inputs.places, &inputs.names, &inputs.fps);
    let revision = match previous {
        Some(p) if p.verdicts == rows => p.revision,
        Some(p) => p.revision + 1,
        None => 1,
    };
    RunVerdicts {
        campaign_id: campaign_id.to_string(),
        run_id: run.run_id.clone(),
        computed_us: vantage_proto::now_us(),
        revision,
        inside_results: inside,
        control_results: control,
        failures,
        verdicts: rows,
    }
}

/// A run's current verdicts, as [`current`] found them.
enum Found {
    /// The stored record, up to date.
    Stored(RunVerdicts),
    /// Computed from the results, with the stored record it replaces.
    Computed {
        now: RunVerdicts,
        previous: Option<RunVerdicts>,
    },
}

/// Every run of `rec` with its current verdicts: the stored record, or
/// (when `dirty` says results arrived since) computed from the results. A
/// run neither stored nor dirty has no results yet: no verdicts. The
/// writer (`store`) is given the computed runs only, with their failure
/// counts.
fn current(
    s: &Shared,
    rec: &CampaignRecord,
    store: bool,
    dirty: impl Fn(&RunRecord) -> bool,
    mut each: impl FnMut(Found) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut inputs: Option<Inputs> = None;
    for run in &rec.runs {
        // A sealed run's results began to leave sled (store/retention.rs):
        // its stored verdicts are final.
        let dirty = dirty(run) && !s.store.run_sealed(&rec.campaign_id, &run.run_id)?;
        if !dirty && store {
            continue;
        }
        let stored = s.store.run_verdicts(&rec.campaign_id, &run.run_id)?;
        if !dirty {
            if let Some(v) = stored {
                each(Found::Stored(v))?;
            }
            continue;
        }
        if inputs.is_none() {
            inputs = Some(Inputs::load(s, rec, store)?);
        }
        let Some(inp) = inputs.as_mut() else {
            continue;
        };
        let results = inp.results.of(s, rec, &run.run_id)?;
        let now = compute(&rec.campaign_id, run, &results, inp, stored.as_ref());
        each(Found::Computed {
            now,
            previous: stored,
        })?;
    }
    Ok(())
}

/// The current verdicts of every run of `rec`, for readers: stored ones
/// where they are up to date, computed in memory where results arrived
/// since. Writes nothing.
pub fn of_campaign(s: &Shared, rec: &CampaignRecord) -> Result<Vec<VerdictRow>, ServiceError> {
    let mut rows = Vec::new();
    current(
        s,
        rec,
        false,
        |run| s.is_dirty_run(&rec.campaign_id, &run.run_id),
        |found| {
            let (Found::Stored(v) | Found::Computed { now: v, .. }) = found;
            rows.extend(v.verdicts.into_iter().map(|mut r| {
                r.computed_us = v.computed_us;
                r.revision = v.revision;
                r
            }));
            Ok(())
        },
    )?;
    Ok(rows)
}

/// Recomputes and stores the dirty runs of `rec`: the writer side's
/// refresh. A new revision is synced; a run that cannot be stored stays
/// dirty.
fn refresh(s: &Shared, rec: &CampaignRecord) -> Result<(), StoreError> {
    current(
        s,
        rec,
        true,
        |run| s.take_dirty_run(&rec.campaign_id, &run.run_id),
        |found| {
            let Found::Computed { now, previous } = found else {
                return Ok(());
            };
            let changed = previous.as_ref().is_none_or(|p| p.revision != now.revision);
            if previous.is_some() && changed {
                tracing::info!(campaign = %now.campaign_id, run = %now.run_id,
                    revision = now.revision, "verdicts revised");
            }
            s.store.put_run_verdicts(&now, changed).inspect_err(|_| {
                s.mark_runs_dirty([(now.campaign_id.clone(), now.run_id.clone())]);
            })
        },
    )
}

/// Each run's results by their first failure (`campaign status`): the
/// stored count where the run's verdicts are current, without reading a
/// result; counted from the run's own results where results arrived
/// since. A run neither stored nor dirty has no results yet.
pub fn failures_by_run(
    s: &Shared,
    rec: &CampaignRecord,
) -> Result<HashMap<String, BTreeMap<String, u64>>, StoreError> {
    let mut out = HashMap::new();
    let mut reader: Option<RunResults> = None;
    for run in &rec.runs {
        let dirty = s.is_dirty_run(&rec.campaign_id, &run.run_id)
            && !s.store.run_sealed(&rec.campaign_id, &run.run_id)?;
        if !dirty {
            if let Some(v) = s.store.run_summary(&rec.campaign_id, &run.run_id)? {
                out.insert(run.run_id.clone(), v.failures);
            }
            continue;
        }
        if reader.is_none() {
            reader = Some(RunResults::new(s, rec)?);
        }
        if let Some(r) = reader.as_mut() {
            let results = r.of(s, rec, &run.run_id)?;
            out.insert(run.run_id.clone(), failures_of(&results));
        }
    }
    Ok(out)
}

/// After a background recomputation that took `t`, the scheduler leaves
/// the campaign alone for this many times `t`: a recomputation reads every
/// result of the campaign, so while results stream into a large campaign,
/// recomputing on every pass would cost time quadratic in its size (a
/// 600,000-result campaign took ingest from 60,000 to 10,000 results/s,
/// BENCHMARKS.md). This bounds the background work to about a tenth of one
/// core; readers compute a dirty run in memory for their answer meanwhile.
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
        // Recomputes whatever of this campaign is dirty.
        let t0 = std::time::Instant::now();
        refresh(s, &rec)?;
        let took = t0.elapsed();
        s.verdict_backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(campaign_id, t0 + took + took * BACKOFF_FACTOR);
        done += 1;
    }
    Ok(done)
}

/// Recomputes every dirty run now, backoff or not: retention calls it
/// before results leave sled, so the runs it seals have verdicts that took
/// every result in.
pub fn refresh_all(s: &Shared) -> Result<usize, ServiceError> {
    let campaigns: std::collections::BTreeSet<String> = s
        .some_dirty_runs(usize::MAX, |_| true)
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    let mut done = 0;
    for c in campaigns {
        if let Some(rec) = s.store.campaign(&c)? {
            refresh(s, &rec)?;
            done += 1;
        }
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
pub(crate) mod tests {
    use super::*;

    /// A campaign record with `targets` (spec TOML) and `runs`.
    fn campaign_for_test(id: &str, targets: &str, runs: Vec<RunRecord>) -> CampaignRecord {
        CampaignRecord {
            campaign_id: id.into(),
            name: "c".into(),
            description: String::new(),
            state: Default::default(),
            created_us: 0,
            spec: crate::scheduler::parse_spec(
                &format!(
                    "version = 1\nname = \"c\"\nallow_private_targets = true\n\
                     [inside]\ntags = [\"in\"]\n[control]\ntags = [\"ctl\"]\n{targets}"
                ),
                crate::scheduler::SpecFormat::Toml,
            )
            .unwrap(),
            runs,
        }
    }
    use vantage_proto::v1::{measurement, probe_input::Kind, ProbeInput, TcpInput, TcpResult};

    /// A TCP result (to 192.0.2.1:443, connected) of run "run".
    /// Stores campaign `id`: one TCP target (192.0.2.1:443), inside agent
    /// `in`, control agent `ctl`, these runs (each with both agents).
    pub(crate) fn put_tcp_campaign(
        s: &crate::state::Shared,
        id: &str,
        runs: &[&str],
        state: crate::store::RunState,
    ) {
        let spec = crate::scheduler::parse_spec(
            "version = 1\nname = \"c\"\nallow_private_targets = true\n\
             [inside]\ntags = [\"in\"]\n[control]\ntags = [\"ctl\"]\n\
             [[targets]]\ntcp = { host = \"192.0.2.1\", port = 443 }\n",
            crate::scheduler::SpecFormat::Toml,
        )
        .unwrap();
        s.store
            .put_campaign(&crate::store::CampaignRecord {
                campaign_id: id.into(),
                name: "c".into(),
                description: String::new(),
                state: Default::default(),
                created_us: s.store.new_campaign_time().unwrap(),
                spec,
                runs: runs
                    .iter()
                    .map(|r| RunRecord {
                        run_id: r.to_string(),
                        state,
                        inside: vec!["in".into()],
                        control: vec!["ctl".into()],
                        ..Default::default()
                    })
                    .collect(),
            })
            .unwrap();
    }

    /// `m`, signed and ready for the commit path.
    pub(crate) fn pending(m: &Measurement) -> crate::store::PendingResult {
        use prost::Message;
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let env = vantage_proto::envelope::sign(&key, m);
        crate::store::PendingResult {
            id: vantage_proto::envelope::parse_id(&m.id).expect("a UUID"),
            agent: [m.agent_id.as_bytes().first().copied().unwrap_or(0); 16],
            task: None,
            campaign: vantage_proto::envelope::parse_id(&m.campaign_id),
            run: vantage_proto::envelope::parse_id(&m.campaign_id)
                .map(|c| crate::store::run_owner(&c, &m.run_id)),
            value: vantage_proto::v1::StoredResult {
                envelope: Some(env.clone()),
                agent_id: m.agent_id.clone(),
                received_us: 1,
                seq: 0,
            }
            .encode_to_vec(),
            measurement: env.measurement,
        }
    }

    pub(crate) fn tcp(id: &str, agent: &str, name: &str) -> Measurement {
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
        let rec = campaign_for_test(
            "c",
            "[[targets]]\nname = \"From the spec\"\ntcp = { host = \"192.0.2.1\", port = 443 }\n",
            vec![run.clone()],
        );
        let (rows, _, _) = compute(&old, &target_names(&rec), &fingerprints_of(&rec));
        assert_eq!(rows[0].name, "From the spec");
        let (rows, _, _) = compute(&old, &no_names, builtin);
        assert_eq!(rows[0].name, "");
    }

    /// A stored campaign of one run ("run") and one TCP target.
    fn one_run_campaign(s: &Shared, campaign: &str) -> CampaignRecord {
        let run = RunRecord {
            run_id: "run".into(),
            inside: vec!["in".into()],
            control: vec!["ctl".into()],
            ..Default::default()
        };
        let rec = campaign_for_test(
            campaign,
            "[[targets]]\ntcp = { host = \"192.0.2.1\", port = 443 }\n",
            vec![run],
        );
        s.store.put_campaign(&rec).unwrap();
        rec
    }

    /// A sealed run (its results began to leave sled) keeps its stored
    /// verdicts: a dirty mark (every run gets one at start-up) clears
    /// without recomputing them from what is left.
    #[tokio::test]
    async fn a_sealed_run_keeps_its_verdicts() {
        let d = tempfile::tempdir().unwrap();
        let s = crate::server::test_state(d.path());
        let campaign = "0190a8b2-0000-7000-8000-0000000000c2";
        let rec = one_run_campaign(&s, campaign);
        let stored = RunVerdicts {
            campaign_id: campaign.into(),
            run_id: "run".into(),
            computed_us: 1,
            revision: 3,
            inside_results: 1,
            control_results: 1,
            failures: [("connection_reset".to_string(), 1)].into(),
            verdicts: vec![vantage_proto::v1::VerdictRow {
                status: "blocked".into(),
                ..Default::default()
            }],
        };
        s.store.put_run_verdicts(&stored, true).unwrap();
        let statuses = |s: &Shared| -> Vec<String> {
            of_campaign(s, &rec)
                .unwrap()
                .into_iter()
                .map(|r| r.status)
                .collect()
        };
        // Not sealed: a dirty run is recomputed from sled, which has no
        // results for it, and the stored row is not what comes back.
        s.mark_runs_dirty([(campaign.to_string(), "run".to_string())]);
        assert_ne!(statuses(&s), ["blocked"]);
        s.store.seal_runs([(campaign, "run")]).unwrap();
        assert_eq!(statuses(&s), ["blocked"]);
        assert_eq!(refresh_all(&s).unwrap(), 1);
        assert!(!s.is_dirty_run(campaign, "run"));
        assert_eq!(
            s.store
                .run_verdicts(campaign, "run")
                .unwrap()
                .unwrap()
                .revision,
            3
        );
    }

    /// Readers never write: a dirty run is computed for the answer and left
    /// dirty; the writer side's refresh stores it and clears the mark.
    #[tokio::test]
    async fn reads_compute_and_only_the_refresh_stores() {
        let d = tempfile::tempdir().unwrap();
        let s = crate::server::test_state(d.path());
        let campaign = "0190a8b2-0000-7000-8000-0000000000c1";
        let rec = one_run_campaign(&s, campaign);
        // Not dirty, never stored: no results yet, nothing computed.
        assert!(of_campaign(&s, &rec).unwrap().is_empty());
        s.mark_runs_dirty([(campaign.to_string(), "run".to_string())]);
        assert!(of_campaign(&s, &rec).unwrap().is_empty());
        assert!(s.store.run_verdicts(campaign, "run").unwrap().is_none());
        assert!(s.is_dirty_run(campaign, "run"), "a read keeps the mark");
        assert_eq!(refresh_some(&s).unwrap(), 1);
        let stored = s.store.run_verdicts(campaign, "run").unwrap().unwrap();
        assert_eq!(stored.revision, 1);
        assert!(!s.is_dirty_run(campaign, "run"));
    }

    /// A run's results come from the run index, each run its own; the
    /// verdicts of a campaign read that way equal the ones read from the
    /// whole campaign (a campaign from before the index).
    #[tokio::test]
    async fn a_run_reads_its_own_results_through_the_run_index() {
        let d = tempfile::tempdir().unwrap();
        let s = crate::server::test_state(d.path());
        let campaign = "0190a8b2-0000-7000-8000-0000000000c5";
        let runs = ["r1", "r2", "r3"];
        put_tcp_campaign(&s, campaign, &runs, crate::store::RunState::Done);
        let mut pendings = Vec::new();
        for (i, run) in runs.iter().enumerate() {
            // r1: 1 pair, r2: 2 pairs, r3: 3 pairs; the inside of r2 reset.
            for j in 0..=i {
                for agent in ["in", "ctl"] {
                    let n = pendings.len();
                    let mut m = tcp(
                        &format!("0190a8b2-0000-7000-8000-0000000004{n:02x}"),
                        agent,
                        "",
                    );
                    m.campaign_id = campaign.into();
                    m.run_id = run.to_string();
                    m.input = Some(ProbeInput {
                        kind: Some(Kind::Tcp(TcpInput {
                            host: "192.0.2.1".into(),
                            port: 443 + j as u32,
                        })),
                        name: String::new(),
                    });
                    if let (true, true, Some(measurement::Result::Tcp(t))) =
                        (*run == "r2", agent == "in", &mut m.result)
                    {
                        t.failure = Some(vantage_proto::v1::Failure {
                            failure: "connection_reset".into(),
                            operation: "connect".into(),
                        });
                    }
                    pendings.push(pending(&m));
                }
            }
        }
        s.commit.commit(pendings).await.unwrap();
        let c16 = crate::store::uuid_key(campaign).unwrap();
        for (i, run) in runs.iter().enumerate() {
            let owner = crate::store::run_owner(&c16, run);
            assert_eq!(s.store.indexed_results(b'u', owner), 2 * (i as u64 + 1));
            let mut got = Vec::new();
            each_result_of_run(&s, campaign, run, |m| got.push(m.run_id)).unwrap();
            assert_eq!(got, vec![run.to_string(); 2 * (i + 1)]);
        }
        s.mark_runs_dirty(runs.map(|r| (campaign.to_string(), r.to_string())));
        let mut rec = s.store.campaign(campaign).unwrap().unwrap();
        let indexed = of_campaign(&s, &rec).unwrap();
        assert_eq!(indexed.len(), 6);
        let reset: Vec<_> = indexed.iter().filter(|r| r.status != "ok").collect();
        assert_eq!(reset.len(), 2, "{indexed:?}");
        assert!(reset.iter().all(|r| r.run_id == "r2"));
        rec.created_us = 0;
        let whole = of_campaign(&s, &rec).unwrap();
        let strip = |rows: Vec<VerdictRow>| -> Vec<VerdictRow> {
            rows.into_iter()
                .map(|mut r| {
                    r.computed_us = 0;
                    r
                })
                .collect()
        };
        assert_eq!(strip(indexed), strip(whole));
    }
}
