//! Choosing the agents of a group: eligible agents (not revoked, online,
//! matching the selector), in a deterministic order, up to `max_agents`;
//! every agent not chosen comes back with a reason.

/// What selection needs to know about an agent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentView {
    pub agent_id: String,
    pub country: String,
    pub asn: u32,
    pub tags: Vec<String>,
    pub online: bool,
    pub revoked: bool,
    pub consent_kinds: Vec<String>,
}

/// The outcome of selecting one group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub chosen: Vec<String>,
    /// (agent id, reason) for matching agents not chosen.
    pub skipped: Vec<(String, String)>,
}

fn matches(g: &super::GroupSelector, a: &AgentView) -> bool {
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

/// Selects the agents of one group.
pub fn select_agents(g: &super::GroupSelector, agents: &[AgentView]) -> Selection {
    let mut sel = Selection::default();
    let mut eligible: Vec<&AgentView> = Vec::new();
    for a in agents.iter().filter(|a| matches(g, a)) {
        if a.revoked {
            sel.skipped.push((a.agent_id.clone(), "revoked".into()));
        } else if !a.online {
            sel.skipped.push((a.agent_id.clone(), "offline".into()));
        } else {
            eligible.push(a);
        }
    }
    eligible.sort_by(|x, y| x.agent_id.cmp(&y.agent_id));
    let max = g.max_agents.map(|m| m as usize).unwrap_or(usize::MAX);
    for (i, a) in eligible.into_iter().enumerate() {
        if i < max {
            sel.chosen.push(a.agent_id.clone());
        } else {
            sel.skipped.push((
                a.agent_id.clone(),
                format!("group already has max_agents = {max}"),
            ));
        }
    }
    if (sel.chosen.len() as u32) < g.min_agents {
        sel.skipped.push((
            "-".into(),
            format!(
                "only {} eligible agent(s), min_agents = {}",
                sel.chosen.len(),
                g.min_agents
            ),
        ));
    }
    sel
}

#[cfg(test)]
mod tests {
    use super::super::GroupSelector;
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

    #[test]
    fn offline_and_revoked_are_skipped_with_reasons() {
        let mut r = agent("c", "CN", 1, &[], true);
        r.revoked = true;
        let agents = vec![
            agent("a", "CN", 1, &[], true),
            agent("b", "CN", 1, &[], false),
            r,
            agent("d", "DE", 2, &[], true),
        ];
        let g = GroupSelector {
            countries: vec!["cn".into()],
            ..Default::default()
        };
        let s = select_agents(&g, &agents);
        assert_eq!(s.chosen, vec!["a"]);
        assert!(s.skipped.contains(&("b".into(), "offline".into())));
        assert!(s.skipped.contains(&("c".into(), "revoked".into())));
    }

    proptest! {
        #[test]
        fn selection_respects_selector_and_max(
            specs in proptest::collection::vec((0u8..4, 0u32..3, proptest::bool::ANY, proptest::bool::ANY), 0..30),
            want_cc in 0u8..4, max in proptest::option::of(1u32..10), by_tag in proptest::bool::ANY
        ) {
            let ccs = ["CN", "IR", "RU", "DE"];
            let agents: Vec<AgentView> = specs.iter().enumerate().map(|(i, (cc, asn, tagged, online))| {
                agent(&format!("agent-{i:02}"), ccs[*cc as usize], *asn, if *tagged { &["x"] } else { &[] }, *online)
            }).collect();
            let g = GroupSelector {
                countries: vec![ccs[want_cc as usize].into()],
                tags: if by_tag { vec!["x".into()] } else { vec![] },
                max_agents: max,
                ..Default::default()
            };
            let s = select_agents(&g, &agents);
            prop_assert!(s.chosen.len() <= max.unwrap_or(u32::MAX) as usize);
            let mut sorted = s.chosen.clone();
            sorted.sort();
            prop_assert_eq!(&sorted, &s.chosen);
            for id in &s.chosen {
                let a = agents.iter().find(|a| &a.agent_id == id).unwrap();
                prop_assert!(a.online);
                prop_assert_eq!(&a.country, ccs[want_cc as usize]);
                if by_tag { prop_assert!(a.tags.contains(&"x".to_string())); }
            }
            let eligible = agents.iter().filter(|a| a.online && a.country == ccs[want_cc as usize] && (!by_tag || a.tags.contains(&"x".to_string()))).count();
            prop_assert_eq!(s.chosen.len(), eligible.min(max.unwrap_or(u32::MAX) as usize));
        }
    }
}
