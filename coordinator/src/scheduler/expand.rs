//! Run expansion: a validated spec's schedule becomes a finite list of runs,
//! each with its nominal time and a dispatch time jittered inside
//! [nominal, nominal + spread). Pure: the caller passes the clock and the
//! seed, so a campaign's plan is reproducible.

use super::spec::{
    duration, invalid, micros, run_count, timestamp_us, too_many_runs, CampaignSpec, SpecError,
    MAX_RUNS,
};

/// One planned run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunPlan {
    /// 0-based position in the schedule.
    pub index: u32,
    /// When the schedule says the run happens (Unix microseconds).
    pub nominal_us: i64,
    /// When it is dispatched: nominal plus jitter in [0, spread).
    pub dispatch_us: i64,
}

/// SplitMix64 (Steele et al., OOPSLA 2014): a fixed, tiny mixer so a run's
/// jitter depends only on (seed, index), never on the `rand` version.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform jitter in [0, spread) for run `index` (Lemire's multiply-shift,
/// no modulo bias worth mentioning at 64 bits).
fn jitter(seed: u64, index: u32, spread_us: i64) -> i64 {
    if spread_us <= 0 {
        return 0;
    }
    let r = splitmix64(seed ^ splitmix64(u64::from(index)));
    ((u128::from(r) * spread_us as u128) >> 64) as i64
}

/// Expands the schedule into runs, in order, deterministically for `seed`.
/// `now_us` stands in for a missing `start`. Refuses more than
/// [`MAX_RUNS`] runs, and a schedule whose whole window is already past.
pub fn expand_runs(spec: &CampaignSpec, now_us: i64, seed: u64) -> Result<Vec<RunPlan>, SpecError> {
    let s = &spec.schedule;
    let start = match &s.start {
        Some(t) => timestamp_us("schedule.start", t)?,
        None => now_us,
    };
    let spread = match &s.spread {
        Some(d) => micros(duration("schedule.spread", d)?),
        None => 0,
    };
    let (every, count) = match (&s.every, &s.end) {
        (Some(e), Some(end)) => {
            let every = micros(duration("schedule.every", e)?);
            let end = timestamp_us("schedule.end", end)?;
            let count = run_count(start, end, every);
            if count == 0 {
                return Err(invalid(
                    "schedule.end",
                    "the schedule ends before it starts (end is in the past?)",
                ));
            }
            if count > MAX_RUNS as u128 {
                return Err(too_many_runs(count));
            }
            (every, count as u32)
        }
        (Some(_), None) => {
            return Err(invalid(
                "schedule.end",
                "required when schedule.every is set",
            ))
        }
        _ => (0, 1),
    };
    Ok((0..count)
        .map(|index| {
            let nominal_us = start.saturating_add(every.saturating_mul(i64::from(index)));
            RunPlan {
                index,
                nominal_us,
                dispatch_us: nominal_us.saturating_add(jitter(seed, index, spread)),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::{parse_spec, Schedule, SpecFormat};
    use super::*;
    use proptest::prelude::*;
    use std::time::{Duration, UNIX_EPOCH};

    const BASE: &str = "version = 1\nname = \"x\"\n[inside]\ncountries = [\"CN\"]\n\
                        [control]\ntags = [\"control\"]\n[[targets]]\ntcp = { host = \"1.1.1.1\", port = 443 }\n";

    fn rfc(secs: i64) -> String {
        humantime::format_rfc3339(UNIX_EPOCH + Duration::from_secs(secs as u64)).to_string()
    }

    fn with(schedule: Schedule) -> CampaignSpec {
        let mut s = parse_spec(BASE, SpecFormat::Toml).unwrap();
        s.schedule = schedule;
        s
    }

    #[test]
    fn once_defaults_to_now_and_jitters_within_spread() {
        let s = with(Schedule {
            spread: Some("10m".into()),
            ..Default::default()
        });
        let runs = expand_runs(&s, 1_000_000, 42).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].nominal_us, 1_000_000);
        assert!((1_000_000..1_000_000 + 600_000_000).contains(&runs[0].dispatch_us));
        let once = with(Schedule {
            once: true,
            start: Some(rfc(1_800_000_000)),
            ..Default::default()
        });
        let runs = expand_runs(&once, 0, 1).unwrap();
        assert_eq!(runs[0].dispatch_us, 1_800_000_000_000_000);
    }

    #[test]
    fn past_window_and_absurd_schedules_are_refused() {
        let past = with(Schedule {
            every: Some("1h".into()),
            end: Some(rfc(1_000)),
            ..Default::default()
        });
        let e = expand_runs(&past, 2_000_000_000, 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("schedule.end"), "{e}");
        // Start omitted, so only expansion (with the clock) can count runs.
        let absurd = with(Schedule {
            every: Some("1s".into()),
            end: Some(rfc(1_800_000_000 + 365 * 86_400)),
            ..Default::default()
        });
        let e = expand_runs(&absurd, 1_800_000_000_000_000, 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("31536001 runs") && e.contains("schedule.every"),
            "{e}"
        );
    }

    proptest! {
        #[test]
        fn expansion_is_ordered_within_spread_and_deterministic(
            every_m in 1i64..1_000, runs in 1i64..200, spread_frac in 0.0f64..1.0,
            extra_s in 1i64..59, seed in any::<u64>(), start in 0i64..4_000_000_000,
        ) {
            let every_s = every_m * 60;
            // Spread strictly shorter than every (validation's rule); 0 = none.
            // The end lies after the start (extra_s >= 1): validation refuses
            // end == start, which one run with no extra time used to hit.
            let spread_s = ((every_s as f64) * spread_frac) as i64;
            let end = start + every_s * (runs - 1) + extra_s;
            let s = with(Schedule {
                every: Some(format!("{every_m}m")),
                start: Some(rfc(start)),
                end: Some(rfc(end)),
                spread: (spread_s > 0).then(|| format!("{spread_s}s")),
                ..Default::default()
            });
            prop_assert!(s.validate().is_ok());
            let plans = expand_runs(&s, 0, seed).unwrap();
            prop_assert_eq!(plans.len() as i64, runs);
            prop_assert_eq!(&plans, &expand_runs(&s, 0, seed).unwrap());
            for (i, p) in plans.iter().enumerate() {
                prop_assert_eq!(p.index as usize, i);
                prop_assert_eq!(p.nominal_us, (start + i as i64 * every_s) * 1_000_000);
                prop_assert!(p.dispatch_us >= p.nominal_us);
                prop_assert!(p.dispatch_us < p.nominal_us + (spread_s * 1_000_000).max(1));
            }
            for w in plans.windows(2) {
                prop_assert!(w[0].dispatch_us < w[1].dispatch_us, "runs stay ordered");
            }
        }

        #[test]
        fn jitter_stays_in_range_for_any_spread(seed in any::<u64>(), index in any::<u32>(), spread in 1i64..i64::MAX) {
            let j = jitter(seed, index, spread);
            prop_assert!((0..spread).contains(&j));
        }
    }
}
