//! Change events, the "since when": from a series of runs' verdicts for
//! one target in one country and AS, the moments its state changed and
//! held (pure; `crate::changes` feeds it from the store).
//!
//! A run's state for the series is what most of its inside agents there
//! found (`inconclusive` ones set aside; a run with nothing else says
//! nothing and is skipped). A new state is an event once it held for `k`
//! consecutive runs that say something, so one flap is not an event. The
//! first state a series shows (held `k` runs) is its baseline, not an
//! event. The onset lies between the last run that still showed the old
//! state and the first run that showed the new one.

use std::collections::BTreeMap;

/// One run's verdicts for a series.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub run_id: String,
    /// When the run's inside measurements were taken (Unix microseconds).
    pub at_us: i64,
    /// The inside agents' verdicts: (status, mechanism, agent id,
    /// evidence ids).
    pub rows: Vec<(String, String, String, Vec<String>)>,
}

/// A series' state: status and mechanism ("" when none).
pub type State = (String, String);

/// A change that held.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub from: State,
    pub to: State,
    /// The last run that still showed `from`.
    pub before_run: String,
    pub before_us: i64,
    /// The first run that showed `to`.
    pub after_run: String,
    pub after_us: i64,
    /// The run in which `to` had held `k` runs.
    pub confirmed_run: String,
    /// Measurement ids: the last `from` run's, then the first `to` run's.
    pub evidence: Vec<String>,
    /// Inside agents of those two runs.
    pub agents: Vec<String>,
}

/// Worse first: a tie between statuses goes to the worse one.
const ORDER: [&str; 3] = ["blocked", "down", "ok"];

/// The state a run shows, or `None` when it says nothing.
pub fn state_of(p: &Point) -> Option<State> {
    let mut by_status: BTreeMap<usize, (usize, BTreeMap<&str, usize>)> = BTreeMap::new();
    for (status, mechanism, _, _) in &p.rows {
        let Some(rank) = ORDER.iter().position(|s| s == status) else {
            continue;
        };
        let e = by_status.entry(rank).or_default();
        e.0 += 1;
        *e.1.entry(mechanism.as_str()).or_default() += 1;
    }
    let (rank, (_, mechanisms)) = by_status
        .into_iter()
        .max_by(|(ra, (na, _)), (rb, (nb, _))| na.cmp(nb).then(rb.cmp(ra)))?;
    // The most common mechanism; a tie goes to the first by name.
    let mechanism = mechanisms
        .into_iter()
        .max_by(|(ma, na), (mb, nb)| na.cmp(nb).then(mb.cmp(ma)))
        .map(|(m, _)| m.to_string())
        .unwrap_or_default();
    Some((ORDER[rank].to_string(), mechanism))
}

fn evidence_and_agents(points: &[&Point]) -> (Vec<String>, Vec<String>) {
    let mut evidence = Vec::new();
    let mut agents: Vec<String> = Vec::new();
    for p in points {
        for (_, _, agent, ids) in &p.rows {
            evidence.extend(ids.iter().cloned());
            if !agents.contains(agent) {
                agents.push(agent.clone());
            }
        }
    }
    (evidence, agents)
}

/// The changes of one series; `points` in any order (sorted here by time,
/// then run id), `k` at least 1.
pub fn derive(points: &[Point], k: usize) -> Vec<Change> {
    let k = k.max(1);
    let mut sorted: Vec<&Point> = points.iter().collect();
    sorted.sort_by(|a, b| a.at_us.cmp(&b.at_us).then(a.run_id.cmp(&b.run_id)));
    let said: Vec<(&Point, State)> = sorted
        .into_iter()
        .filter_map(|p| state_of(p).map(|s| (p, s)))
        .collect();
    let mut out = Vec::new();
    // The held state and the index of the last run that showed it.
    let mut held: Option<(State, usize)> = None;
    // A new state: where it started and how many runs it has held.
    let mut candidate: Option<(State, usize, usize)> = None;
    for (i, (_, s)) in said.iter().enumerate() {
        if let Some((h, last)) = &mut held {
            if s == h {
                *last = i;
                candidate = None;
                continue;
            }
        }
        let (start, count) = match &candidate {
            Some((c, start, count)) if c == s => (*start, count + 1),
            _ => (i, 1),
        };
        candidate = Some((s.clone(), start, count));
        if count < k {
            continue;
        }
        if let Some((from, last)) = held.take() {
            let (before, after) = (said[last].0, said[start].0);
            let (evidence, agents) = evidence_and_agents(&[before, after]);
            out.push(Change {
                from,
                to: s.clone(),
                before_run: before.run_id.clone(),
                before_us: before.at_us,
                after_run: after.run_id.clone(),
                after_us: after.at_us,
                confirmed_run: said[i].0.run_id.clone(),
                evidence,
                agents,
            });
        }
        held = Some((s.clone(), i));
        candidate = None;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i64, statuses: &[&str]) -> Point {
        Point {
            run_id: format!("r{n:02}"),
            at_us: n * 1_000_000,
            rows: statuses
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let (status, mechanism) = s.split_once(':').unwrap_or((s, ""));
                    (
                        status.to_string(),
                        mechanism.to_string(),
                        format!("agent{i}"),
                        vec![format!("m{n}-{i}")],
                    )
                })
                .collect(),
        }
    }

    fn series(s: &[&str]) -> Vec<Point> {
        s.iter()
            .enumerate()
            .map(|(n, st)| p(n as i64, &[st]))
            .collect()
    }

    fn changes(s: &[&str], k: usize) -> Vec<(String, String, String, String)> {
        derive(&series(s), k)
            .into_iter()
            .map(|c| {
                (
                    format!("{}:{}", c.from.0, c.from.1),
                    format!("{}:{}", c.to.0, c.to.1),
                    c.before_run,
                    c.after_run,
                )
            })
            .collect()
    }

    #[test]
    fn a_block_that_holds_is_one_event_and_its_lifting_another() {
        let s = [
            "ok",
            "ok",
            "ok",
            "blocked:tcp.reset",
            "blocked:tcp.reset",
            "blocked:tcp.reset",
            "ok",
            "ok",
        ];
        assert_eq!(
            changes(&s, 2),
            [
                (
                    "ok:".into(),
                    "blocked:tcp.reset".into(),
                    "r02".into(),
                    "r03".into()
                ),
                (
                    "blocked:tcp.reset".into(),
                    "ok:".into(),
                    "r05".into(),
                    "r06".into()
                ),
            ]
        );
        let c = &derive(&series(&s), 2)[0];
        assert_eq!((c.before_us, c.after_us), (2_000_000, 3_000_000));
        assert_eq!(c.confirmed_run, "r04");
        assert_eq!(c.evidence, ["m2-0", "m3-0"]);
        assert_eq!(c.agents, ["agent0"]);
    }

    #[test]
    fn one_flap_is_no_event_and_k_decides_what_holds() {
        let flap = ["ok", "ok", "blocked", "ok", "ok", "ok"];
        assert!(changes(&flap, 2).is_empty());
        assert_eq!(changes(&flap, 1).len(), 2, "with k = 1 every change counts");
        // Held exactly k runs at the end: an event; one short: none.
        assert_eq!(changes(&["ok", "ok", "blocked", "blocked"], 2).len(), 1);
        assert!(changes(&["ok", "ok", "ok", "blocked"], 2).is_empty());
        assert!(changes(&["ok", "ok", "blocked", "blocked"], 3).is_empty());
    }

    #[test]
    fn the_first_state_is_a_baseline_and_inconclusive_runs_are_skipped() {
        assert!(changes(&["blocked", "blocked", "blocked"], 2).is_empty());
        // Inconclusive runs neither confirm nor break a state; the onset
        // spans them.
        let s = [
            "ok",
            "ok",
            "inconclusive",
            "blocked",
            "inconclusive",
            "blocked",
        ];
        assert_eq!(
            changes(&s, 2),
            [("ok:".into(), "blocked:".into(), "r01".into(), "r03".into())]
        );
        // A baseline needs k runs too: a flap at the start is not one.
        assert_eq!(
            changes(&["blocked", "ok", "ok", "down", "down"], 2),
            [("ok:".into(), "down:".into(), "r02".into(), "r03".into())]
        );
    }

    #[test]
    fn a_mechanism_change_is_an_event_and_late_runs_move_the_onset() {
        let s = [
            "blocked:dns.injection",
            "blocked:dns.injection",
            "blocked:tcp.reset",
            "blocked:tcp.reset",
        ];
        assert_eq!(changes(&s, 2).len(), 1);
        // Points come in any order: sorted by time. A late run (delivered
        // after an outage) between the two moves the onset earlier.
        let mut pts = series(&["ok", "ok", "ok", "blocked", "blocked"]);
        let before = derive(&pts, 2)[0].clone();
        assert_eq!(
            (before.before_run.as_str(), before.after_run.as_str()),
            ("r02", "r03")
        );
        let mut late = p(2, &["blocked"]);
        late.run_id = "r02b".into();
        late.at_us = 2_500_000;
        pts.insert(0, late);
        let after = derive(&pts, 2)[0].clone();
        assert_eq!(
            (after.before_run.as_str(), after.after_run.as_str()),
            ("r02", "r02b")
        );
        assert!(after.after_us < before.after_us);
    }

    #[test]
    fn a_run_shows_what_most_of_its_agents_found_the_worse_on_a_tie() {
        let st = |v: &[&str]| state_of(&p(0, v)).map(|(s, m)| format!("{s}:{m}"));
        assert_eq!(
            st(&["ok", "blocked:a", "blocked:b", "blocked:a"]).unwrap(),
            "blocked:a"
        );
        assert_eq!(st(&["ok", "blocked:b"]).unwrap(), "blocked:b");
        assert_eq!(st(&["ok", "ok", "down"]).unwrap(), "ok:");
        assert_eq!(st(&["inconclusive", "ok"]).unwrap(), "ok:");
        assert_eq!(st(&["inconclusive"]), None);
        assert_eq!(st(&[]), None);
        assert_eq!(st(&["blocked:b", "blocked:a"]).unwrap(), "blocked:a");
    }
}
