//! Choosing the agents of a group: eligible agents (matching the selector,
//! not revoked, online, consenting to a kind the campaign runs) in a
//! deterministic order (by agent id), up to `max_agents`. Every matching
//! agent not chosen comes back with a reason; agents that do not match are
//! listed apart, so a fleet of thousands does not flood the run record.
//! Pure: the caller passes the agents as it sees them now.

use std::collections::BTreeSet;
use std::fmt;

use super::{CampaignSpec, GroupSelector};

/// What selection needs to know about an agent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentView {
    pub agent_id: String,
    /// ISO 3166-1 alpha-2, as the agent declared it.
    pub country: String,
    pub asn: u32,
    pub tags: Vec<String>,
    pub online: bool,
    pub revoked: bool,
    /// Probe kinds the volunteer consented to (`dns`, `tls`, ...).
    pub consent_kinds: Vec<String>,
}

/// Why a matching agent was not chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    Revoked,
    Offline,
    /// Consents to none of the campaign's probe kinds.
    NotConsented {
        kinds: Vec<String>,
    },
    /// Matches the inside group, so it cannot be a control.
    InInsideGroup,
    /// Eligible, but the group already has `max_agents`.
    OverMax {
        max: u32,
    },
    /// The agent id appears more than once in the input.
    Duplicate,
    /// Not an agent: the group has fewer eligible agents than `min_agents`
    /// (reported under the id [`GROUP`]).
    BelowMin {
        eligible: usize,
        min: u32,
    },
}

/// The pseudo agent id of group-level entries in [`Selection::skipped`].
pub const GROUP: &str = "-";

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Revoked => f.write_str("revoked"),
            SkipReason::Offline => f.write_str("offline"),
            SkipReason::NotConsented { kinds } => write!(
                f,
                "has not consented to any probe kind of this campaign ({})",
                kinds.join(", ")
            ),
            SkipReason::InInsideGroup => {
                f.write_str("matches the inside group, so it cannot be a control")
            }
            SkipReason::OverMax { max } => write!(f, "group already has max_agents = {max}"),
            SkipReason::Duplicate => f.write_str("listed twice"),
            SkipReason::BelowMin { eligible, min } => {
                write!(f, "only {eligible} eligible agent(s), min_agents = {min}")
            }
        }
    }
}

/// The outcome of selecting one group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Chosen agent ids, sorted.
    pub chosen: Vec<String>,
    /// Matching agents not chosen, sorted by id, with the reason; a
    /// [`GROUP`] entry last when the group is below `min_agents`.
    pub skipped: Vec<(String, SkipReason)>,
    /// Agents the selector does not match, sorted.
    pub not_matching: Vec<String>,
}

impl Selection {
    /// Whether fewer agents were chosen than the group's `min_agents`.
    pub fn below_min(&self) -> bool {
        self.skipped
            .iter()
            .any(|(_, r)| matches!(r, SkipReason::BelowMin { .. }))
    }
}

/// Whether `a` belongs to the group: listed by id, or matching every
/// selector kind given (any entry within a list).
pub fn matches(g: &GroupSelector, a: &AgentView) -> bool {
    if g.agent_ids.iter().any(|id| id == &a.agent_id) {
        return true;
    }
    let selects = !(g.countries.is_empty() && g.asns.is_empty() && g.tags.is_empty());
    selects
        && (g.countries.is_empty()
            || g.countries
                .iter()
                .any(|c| c.eq_ignore_ascii_case(&a.country)))
        && (g.asns.is_empty() || g.asns.contains(&a.asn))
        && (g.tags.is_empty() || g.tags.iter().any(|t| a.tags.contains(t)))
}

fn select(
    g: &GroupSelector,
    agents: &[AgentView],
    kinds: &[&str],
    excluded: impl Fn(&AgentView) -> bool,
) -> Selection {
    let mut sorted: Vec<&AgentView> = agents.iter().collect();
    // A total order, so duplicated ids resolve the same whatever the input order.
    sorted.sort_by(|x, y| {
        (&x.agent_id, x.revoked, !x.online, &x.country, x.asn)
            .cmp(&(&y.agent_id, y.revoked, !y.online, &y.country, y.asn))
            .then_with(|| x.tags.cmp(&y.tags))
            .then_with(|| x.consent_kinds.cmp(&y.consent_kinds))
    });
    let mut seen = BTreeSet::new();
    let mut sel = Selection::default();
    let mut eligible: Vec<&str> = Vec::new();
    for a in sorted {
        let id = a.agent_id.as_str();
        if !seen.insert(id) {
            if matches(g, a) {
                sel.skipped.push((id.into(), SkipReason::Duplicate));
            }
            continue;
        }
        if !matches(g, a) {
            sel.not_matching.push(id.into());
        } else if a.revoked {
            sel.skipped.push((id.into(), SkipReason::Revoked));
        } else if excluded(a) {
            sel.skipped.push((id.into(), SkipReason::InInsideGroup));
        } else if !a.online {
            sel.skipped.push((id.into(), SkipReason::Offline));
        } else if !kinds.is_empty() && !kinds.iter().any(|k| a.consent_kinds.iter().any(|c| c == k))
        {
            sel.skipped.push((
                id.into(),
                SkipReason::NotConsented {
                    kinds: kinds.iter().map(|k| k.to_string()).collect(),
                },
            ));
        } else {
            eligible.push(id);
        }
    }
    let max = g.max_agents.unwrap_or(u32::MAX);
    let n_eligible = eligible.len();
    for (i, id) in eligible.into_iter().enumerate() {
        if (i as u64) < u64::from(max) {
            sel.chosen.push(id.into());
        } else {
            sel.skipped.push((id.into(), SkipReason::OverMax { max }));
        }
    }
    sel.skipped.sort_by(|x, y| x.0.cmp(&y.0));
    if (sel.chosen.len() as u64) < u64::from(g.min_agents) {
        sel.skipped.push((
            GROUP.into(),
            SkipReason::BelowMin {
                eligible: n_eligible,
                min: g.min_agents,
            },
        ));
    }
    sel
}

/// Selects the agents of one group, without a consent check (the
/// dispatcher checks consent per task).
pub fn select_agents(g: &GroupSelector, agents: &[AgentView]) -> Selection {
    select(g, agents, &[], |_| false)
}

/// Selects the agents of one group that consent to at least one of
/// `kinds` (no check when `kinds` is empty).
pub fn select_agents_for(g: &GroupSelector, agents: &[AgentView], kinds: &[&str]) -> Selection {
    select(g, agents, kinds, |_| false)
}

/// Inside and control for one run. They never overlap: an agent the
/// inside selector matches is never a control, even when it was not
/// chosen for inside (measuring "outside" from inside would hide blocking).
pub fn select_groups(spec: &CampaignSpec, agents: &[AgentView]) -> (Selection, Selection) {
    let kinds = spec.kinds();
    let inside = select(&spec.inside, agents, &kinds, |_| false);
    let control = select(&spec.control, agents, &kinds, |a| matches(&spec.inside, a));
    (inside, control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn agent(id: &str, cc: &str, asn: u32, tags: &[&str], online: bool) -> AgentView {
        AgentView {
            agent_id: id.into(),
            country: cc.into(),
            asn,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            online,
            revoked: false,
            consent_kinds: vec!["tcp".into()],
        }
    }

    fn reason_of<'a>(s: &'a Selection, id: &str) -> Option<&'a SkipReason> {
        s.skipped.iter().find(|(a, _)| a == id).map(|(_, r)| r)
    }

    #[test]
    fn every_agent_not_chosen_has_a_reason() {
        let mut revoked = agent("c", "CN", 1, &[], true);
        revoked.revoked = true;
        let mut shy = agent("e", "CN", 1, &[], true);
        shy.consent_kinds = vec!["dns".into()];
        let agents = vec![
            agent("a", "CN", 1, &[], true),
            agent("b", "CN", 1, &[], false),
            revoked,
            agent("d", "DE", 2, &[], true),
            shy,
            agent("f", "CN", 1, &[], true),
        ];
        let g = GroupSelector {
            countries: vec!["cn".into()],
            max_agents: Some(1),
            min_agents: 1,
            ..Default::default()
        };
        let s = select_agents_for(&g, &agents, &["tcp", "tls"]);
        assert_eq!(s.chosen, vec!["a"]);
        assert_eq!(reason_of(&s, "b"), Some(&SkipReason::Offline));
        assert_eq!(reason_of(&s, "c"), Some(&SkipReason::Revoked));
        assert!(matches!(
            reason_of(&s, "e"),
            Some(SkipReason::NotConsented { .. })
        ));
        assert_eq!(reason_of(&s, "f"), Some(&SkipReason::OverMax { max: 1 }));
        assert_eq!(s.not_matching, vec!["d"]);
        assert!(!s.below_min());
        assert_eq!(
            reason_of(&s, "b").unwrap().to_string(),
            "offline",
            "reasons read as text for run records"
        );
        // Without kinds, consent is the dispatcher's business.
        assert_eq!(select_agents(&g, &agents).chosen, vec!["a"]);
    }

    #[test]
    fn below_min_is_reported_for_the_group() {
        let g = GroupSelector {
            tags: vec!["control".into()],
            min_agents: 2,
            ..Default::default()
        };
        let s = select_agents(&g, &[agent("x", "DE", 3, &["control"], true)]);
        assert_eq!(s.chosen, vec!["x"]);
        assert!(s.below_min());
        let (id, r) = s.skipped.last().unwrap();
        assert_eq!(
            (id.as_str(), r.to_string().as_str()),
            (GROUP, "only 1 eligible agent(s), min_agents = 2")
        );
    }

    #[test]
    fn explicit_ids_are_members_whatever_their_labels() {
        let g = GroupSelector {
            agent_ids: vec!["z".into()],
            ..Default::default()
        };
        let s = select_agents(
            &g,
            &[agent("z", "", 0, &[], true), agent("y", "", 0, &[], true)],
        );
        assert_eq!(s.chosen, vec!["z"]);
        assert_eq!(s.not_matching, vec!["y"]);
    }

    fn arb_agents() -> impl Strategy<Value = Vec<AgentView>> {
        let ccs = ["CN", "IR", "RU", "DE"];
        proptest::collection::vec(
            (
                0usize..4,
                0u32..3,
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
                0u8..12,
            ),
            0..30,
        )
        .prop_map(move |v| {
            v.into_iter()
                .map(
                    |(cc, asn, tagged, online, revoked, consents, id)| AgentView {
                        // Ids may repeat: duplicates are part of the input space.
                        agent_id: format!("agent-{id:02}"),
                        country: ccs[cc].into(),
                        asn,
                        tags: if tagged { vec!["x".into()] } else { vec![] },
                        online,
                        revoked,
                        consent_kinds: if consents {
                            vec!["tcp".into()]
                        } else {
                            vec!["dns".into()]
                        },
                    },
                )
                .collect()
        })
    }

    fn arb_selector() -> impl Strategy<Value = GroupSelector> {
        (
            proptest::sample::subsequence(vec!["CN", "IR", "RU", "DE"], 0..3),
            proptest::sample::subsequence(vec![0u32, 1, 2], 0..2),
            any::<bool>(),
            proptest::sample::subsequence(
                (0..12).map(|i| format!("agent-{i:02}")).collect::<Vec<_>>(),
                0..3,
            ),
            0u32..4,
            proptest::option::of(1u32..6),
        )
            .prop_map(|(ccs, asns, by_tag, ids, min, max)| GroupSelector {
                countries: ccs.into_iter().map(String::from).collect(),
                asns,
                tags: if by_tag { vec!["x".into()] } else { vec![] },
                agent_ids: ids,
                min_agents: min,
                max_agents: max,
            })
    }

    proptest! {
        #[test]
        fn selection_partitions_the_fleet_and_respects_the_selector(
            agents in arb_agents(), g in arb_selector(), shuffle in any::<u64>(), consent in any::<bool>()
        ) {
            let kinds: &[&str] = if consent { &["tcp"] } else { &[] };
            let s = select_agents_for(&g, &agents, kinds);
            // Deterministic and independent of input order.
            let mut rotated = agents.clone();
            if !rotated.is_empty() {
                let k = (shuffle % rotated.len() as u64) as usize;
                rotated.rotate_left(k);
                rotated.reverse();
            }
            prop_assert_eq!(&s, &select_agents_for(&g, &rotated, kinds));
            prop_assert!(s.chosen.len() as u64 <= u64::from(g.max_agents.unwrap_or(u32::MAX)));
            prop_assert!(s.chosen.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
            for id in &s.chosen {
                prop_assert!(agents.iter().any(|a| &a.agent_id == id
                    && a.online && !a.revoked && matches(&g, a)
                    && (!consent || a.consent_kinds.iter().any(|k| k == "tcp"))));
            }
            for id in &s.not_matching {
                prop_assert!(agents.iter().any(|a| &a.agent_id == id && !matches(&g, a)));
            }
            // Every distinct id is accounted for exactly once (duplicates aside).
            let mut ids: Vec<&String> = agents.iter().map(|a| &a.agent_id).collect();
            ids.sort();
            ids.dedup();
            let mut accounted: Vec<&String> = s.chosen.iter()
                .chain(s.not_matching.iter())
                .chain(s.skipped.iter().filter(|(a, r)| a != GROUP && *r != SkipReason::Duplicate).map(|(a, _)| a))
                .collect();
            accounted.sort();
            prop_assert_eq!(ids, accounted);
            prop_assert_eq!(s.below_min(), (s.chosen.len() as u32) < g.min_agents);
        }

        #[test]
        fn inside_and_control_never_overlap(agents in arb_agents(), inside in arb_selector(), control in arb_selector()) {
            let text = "version = 1\nname = \"p\"\n[inside]\ncountries = [\"CN\"]\n[control]\ntags = [\"c\"]\n\
                        [[targets]]\ntcp = { host = \"1.1.1.1\", port = 443 }\n";
            let mut spec = super::super::parse_spec(text, super::super::SpecFormat::Toml).unwrap();
            spec.inside = inside;
            spec.control = control;
            let (i, c) = select_groups(&spec, &agents);
            for id in &c.chosen {
                prop_assert!(!i.chosen.contains(id));
                prop_assert!(agents.iter().any(|a| &a.agent_id == id && !matches(&spec.inside, a)),
                    "a control never matches the inside selector");
            }
        }
    }
}
