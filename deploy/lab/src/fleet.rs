//! The fleet in the lab: a coordinator with its sled store in the core
//! namespace, an inside agent (CN) behind the censoring firewall and a
//! control agent (DE, tag `control`) outside it, all real processes
//! started from the workspace's binaries. [`Fleet::run_conditions`] creates
//! one campaign per catalogue condition (and one for its passes), waits for
//! every run to complete and compares each verdict with what the catalogue
//! expects. `vantage-lab demo` and the lab tests drive it.
//!
//! Every process is recorded in the lab's `state.json`, so `down` stops it
//! with the rest of the lab.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use vantage_proto::v1::{AgentInfo, CampaignInfo, CampaignStatusResponse, ProbeInput, VerdictRow};

use vantage_testkit::procs::{self, Enrollment};

use crate::lab::{Spawner, State};
use crate::plan::{self, ns, Condition};
use crate::sys::{self, LabError, Result};

/// The coordinator's gRPC address (core namespace).
pub const COORDINATOR_ADDR: &str = "198.19.4.10:7443";
/// The coordinator's HTTP face (API, dashboard, metrics), on every address
/// of the core namespace; reads need the fleet's read token.
pub const HTTP_PORT: u16 = 9090;
/// The optional point-to-point link from the machine to the core namespace
/// (`--dashboard`), outside the lab's routed range so no lab host can use it.
pub const DASH_HOST_IP: &str = "198.19.208.1";
pub const DASH_CORE_IP: &str = "198.19.208.10";

/// The three binaries the fleet runs: the test kit's, whose command lines
/// (`init`, `serve`, `enroll`, `run`, `vantagectl`) the fleet runs inside
/// the lab's namespaces. `Bins::find(dir).and_then(Bins::require_all)`.
pub use vantage_testkit::procs::Bins;

/// An argv from [`Bins`] as `sys::ns_run` and the spawner take it.
fn ns_argv(argv: &[std::ffi::OsString]) -> Vec<String> {
    argv.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A running fleet.
pub struct Fleet {
    prefix: String,
    dir: PathBuf,
    bins: Bins,
    /// The bearer token for the HTTP face (only its SHA-256 is stored).
    pub read_token: String,
    /// PID of the inside agent (the agent benchmark reads its /proc entry).
    pub inside_pid: u32,
}

/// How one verdict compares with the catalogue.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub number: u32,
    pub condition: String,
    /// True for a pass: an input the censor lets through (expected `ok`).
    pub pass: bool,
    pub campaign_id: String,
    pub target: String,
    pub kind: String,
    pub status: String,
    pub mechanism: String,
    pub confidence: f32,
    pub reason: String,
    pub expected_status: String,
    pub expected_mechanism: String,
    pub as_expected: bool,
}

fn fleet_err(msg: impl Into<String>) -> LabError {
    LabError::NotReady(msg.into())
}

/// 16 random bytes as hex, from the kernel.
fn random_hex() -> Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|source| LabError::Io {
            context: "reading /dev/urandom".into(),
            source,
        })?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The agents' config: every probe kind consented to (this is a lab), lab
/// targets allowed, the lab CA trusted (never the censor's), network labels
/// shared so verdicts can group by country.
fn agent_toml(lab_ca: &Path) -> String {
    let ca = serde_json::to_string(&lab_ca.to_string_lossy()).unwrap_or_default();
    let kinds = serde_json::to_string(vantage_proto::PROBE_KINDS).unwrap_or_default();
    format!(
        "# Written by vantage-lab: a lab agent consents to every probe kind.
version = 1
allow_private_targets = true
extra_ca_files = [{ca}]

[consent]
kinds = {kinds}
share_network_labels = true
"
    )
}

impl Fleet {
    /// Starts the coordinator and both agents in the lab `state` describes
    /// (built by `lab::up` with `state_dir`), and waits until both agents
    /// hold a session. With `dashboard`, also links this machine to the core
    /// namespace so the HTTP face is reachable at `DASH_CORE_IP`.
    pub fn start(
        state_dir: &Path,
        state: &mut State,
        bins: Bins,
        dashboard: bool,
    ) -> Result<Fleet> {
        let prefix = state.prefix.clone();
        let dir = state_dir.join("fleet");
        sys::mkdir(&dir)?;
        let core = ns(&prefix, "core");
        let coord_dir = dir.join("coordinator");
        sys::ns_run(
            &core,
            &refs(&ns_argv(&bins.init_argv(&coord_dir, COORDINATOR_ADDR))),
        )?;
        let read_token = random_hex()?;
        let config = |key: &str, value: String| {
            procs::set_config(&coord_dir, key, &value).map_err(|e| fleet_err(e.to_string()))
        };
        config("http_listen", format!("\"0.0.0.0:{HTTP_PORT}\""))?;
        config("read_tokens", procs::read_tokens_value(&[&read_token]))?;
        if dashboard {
            link_dashboard(&prefix)?;
        }
        let mut sp = Spawner::new(state_dir, state);
        sp.spawn(
            "coordinator",
            &core,
            &refs(&ns_argv(&bins.serve_argv(&coord_dir))),
        )?;
        let mut fleet = Fleet {
            prefix: prefix.clone(),
            dir,
            bins,
            read_token,
            inside_pid: 0,
        };
        if !procs::poll(Duration::from_secs(20), || fleet.ctl(&["stats"]).is_ok()) {
            return Err(fleet_err(format!(
                "the coordinator did not answer within 20 s (log: {}/coordinator.log)",
                state_dir.display()
            )));
        }
        let token = fleet.ctl(&[
            "token",
            "create",
            "--uses",
            "2",
            "--expires",
            "1h",
            "--tags",
            "lab",
        ])?;
        let token = token.trim().to_string();
        let mut pids = Vec::new();
        for (role, country, asn, tags) in [
            ("inside", "CN", "4134", "lab"),
            ("outside", "DE", "3320", "control"),
        ] {
            let data = fleet.dir.join(role);
            let enrollment = Enrollment {
                token: &token,
                country,
                asn,
                tags,
            };
            sys::ns_run(
                &ns(&prefix, role),
                &refs(&ns_argv(&fleet.bins.enroll_argv(&data, &enrollment))),
            )?;
            sys::write(
                &data.join("agent.toml"),
                agent_toml(&crate::pki::ca_path(state_dir)),
            )?;
            let mut sp = Spawner::new(state_dir, state);
            pids.push(sp.spawn(
                &format!("agent-{role}"),
                &ns(&prefix, role),
                &refs(&ns_argv(&fleet.bins.run_argv(&data))),
            )?);
        }
        fleet.inside_pid = pids[0];
        let online = procs::poll(Duration::from_secs(30), || {
            fleet
                .agents()
                .map(|a| a.iter().filter(|a| a.connected).count() >= 2)
                .unwrap_or(false)
        });
        if !online {
            return Err(fleet_err(format!(
                "the agents did not connect within 30 s (logs: {}/agent-*.log)",
                state_dir.display()
            )));
        }
        Ok(fleet)
    }

    /// Runs `vantagectl` against the fleet's coordinator (from the core
    /// namespace, with the admin credentials of its data dir).
    pub fn ctl(&self, args: &[&str]) -> Result<String> {
        let argv = ns_argv(&self.bins.ctl_argv(&self.dir.join("coordinator"), args));
        sys::ns_run(&ns(&self.prefix, "core"), &refs(&argv))
    }

    fn ctl_json<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> Result<T> {
        let mut full = vec!["--output", "json"];
        full.extend_from_slice(args);
        let text = self.ctl(&full)?;
        serde_json::from_str(&text).map_err(|e| {
            fleet_err(format!(
                "vantagectl {args:?}: unexpected JSON ({e}): {text}"
            ))
        })
    }

    pub fn agents(&self) -> Result<Vec<AgentInfo>> {
        self.ctl_json(&["agents"])
    }

    pub fn campaigns(&self) -> Result<Vec<CampaignInfo>> {
        self.ctl_json(&["campaign", "list"])
    }

    pub fn verdicts(&self, campaign_id: &str) -> Result<Vec<VerdictRow>> {
        self.ctl_json(&["verdicts", campaign_id])
    }

    /// Creates a once-only campaign over `targets` (inside: CN, control:
    /// the `control` tag) and returns its id.
    pub fn create_campaign(
        &self,
        name: &str,
        description: &str,
        deadline_secs: u64,
        targets: &[ProbeInput],
    ) -> Result<String> {
        self.submit(
            name,
            &campaign_spec(name, description, deadline_secs, targets),
        )
    }

    /// Creates a periodic campaign over `targets` like [`Self::create_campaign`]:
    /// `runs` runs `every` apart (no spread), the first at `start`. Returns
    /// its id.
    pub fn create_periodic_campaign(
        &self,
        name: &str,
        description: &str,
        deadline_secs: u64,
        targets: &[ProbeInput],
        schedule: &Periodic,
    ) -> Result<String> {
        let mut spec = campaign_spec(name, description, deadline_secs, targets);
        spec["schedule"] = schedule.spec();
        self.submit(name, &spec)
    }

    /// A campaign's runs and their states (`vantagectl campaign status`).
    pub fn status(&self, campaign_id: &str) -> Result<CampaignStatusResponse> {
        self.ctl_json(&["campaign", "status", campaign_id])
    }

    /// The coordinator's HTTP API, `GET path` (e.g. `/api/v1/changes?campaign=ID`)
    /// with the fleet's read token, from the core namespace: the JSON body
    /// of a 200.
    pub fn api_get(&self, path: &str) -> Result<serde_json::Value> {
        let url = format!("http://{}:{HTTP_PORT}{path}", plan::CORE_IP);
        let auth = format!("Authorization: Bearer {}", self.read_token);
        let r = sys::http_get(&ns(&self.prefix, "core"), &url, &[&auth], None)?;
        if r.status != 200 {
            return Err(fleet_err(format!("GET {path}: {} {}", r.status, r.body)));
        }
        serde_json::from_str(&r.body)
            .map_err(|e| fleet_err(format!("GET {path}: not JSON ({e}): {}", r.body)))
    }

    /// The change events of a campaign (`GET /api/v1/changes?campaign=ID`,
    /// the `changes` array; one page is enough for a lab campaign).
    pub fn changes(&self, campaign_id: &str) -> Result<Vec<serde_json::Value>> {
        let page = self.api_get(&format!("/api/v1/changes?campaign={campaign_id}"))?;
        if !page["next_cursor"].is_null() {
            return Err(fleet_err(format!("more than one page of changes: {page}")));
        }
        match page["changes"].as_array() {
            Some(list) => Ok(list.clone()),
            None => Err(fleet_err(format!("no `changes` array: {page}"))),
        }
    }

    /// Stores `spec` as `campaigns/<name>.json` and creates the campaign.
    fn submit(&self, name: &str, spec: &serde_json::Value) -> Result<String> {
        let dir = self.dir.join("campaigns");
        sys::mkdir(&dir)?;
        let path = dir.join(format!("{name}.json"));
        let text = serde_json::to_string_pretty(&spec)
            .map_err(|e| fleet_err(format!("campaign spec {name}: {e}")))?;
        sys::write(&path, text)?;
        let out = self.ctl(&["campaign", "create", "-f", &path.to_string_lossy()])?;
        Ok(out.trim().to_string())
    }

    /// Waits until every campaign in `ids` is done, calling `progress(done,
    /// total)` whenever the count changes. Fails after `timeout`.
    pub fn wait_done(
        &self,
        ids: &[String],
        timeout: Duration,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<()> {
        let t0 = Instant::now();
        let mut last = usize::MAX;
        loop {
            let list = self.campaigns()?;
            let done = ids
                .iter()
                .filter(|id| {
                    list.iter()
                        .any(|c| &c.campaign_id == *id && c.state == "done")
                })
                .count();
            if done != last {
                progress(done, ids.len());
                last = done;
            }
            if done == ids.len() {
                return Ok(());
            }
            if t0.elapsed() > timeout {
                return Err(fleet_err(format!(
                    "{done} of {} campaigns done after {} s",
                    ids.len(),
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// One campaign per condition (inputs) plus one per condition with
    /// passes, all created back to back so they run at the same time; then
    /// every verdict compared with the catalogue. `residual_window_secs` is
    /// the lab's window (the encrypted probe's run needs most of it).
    pub fn run_conditions(
        &self,
        catalogue: &[Condition],
        residual_window_secs: u32,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Vec<Outcome>> {
        struct Planned<'c> {
            cond: &'c Condition,
            pass: bool,
            id: String,
            targets: usize,
        }
        let mut planned = Vec::new();
        for c in catalogue {
            for (pass, targets) in [(false, &c.inputs), (true, &c.passes)] {
                if targets.is_empty() {
                    continue;
                }
                let deadline = match c.name {
                    "encrypted-residual" => u64::from(residual_window_secs) + 40,
                    // 512 KiB at 256 kbit/s: about 17 s inside.
                    "http-throttle" => plan::THROTTLE_DEADLINE_SECS,
                    _ => 30,
                };
                let name = format!(
                    "lab-{:02}-{}{}",
                    c.number,
                    c.name,
                    if pass { "-passes" } else { "" }
                );
                let id = self.create_campaign(&name, c.description, deadline, targets)?;
                planned.push(Planned {
                    cond: c,
                    pass,
                    id,
                    targets: targets.len(),
                });
            }
        }
        let ids: Vec<String> = planned.iter().map(|p| p.id.clone()).collect();
        let timeout = Duration::from_secs(u64::from(residual_window_secs) + 120);
        self.wait_done(&ids, timeout, &mut progress)?;
        let mut out = Vec::new();
        for p in &planned {
            let (want_status, want_mech) = if p.pass {
                ("ok", "")
            } else {
                (p.cond.expected_status, p.cond.mechanism)
            };
            let rows = self.verdicts(&p.id)?;
            let mut seen = 0;
            for v in rows.iter().filter(|v| v.country == "CN") {
                seen += 1;
                out.push(Outcome {
                    number: p.cond.number,
                    condition: p.cond.name.to_string(),
                    pass: p.pass,
                    campaign_id: p.id.clone(),
                    target: v.target.clone(),
                    kind: v.kind.clone(),
                    status: v.status.clone(),
                    mechanism: v.mechanism.clone(),
                    confidence: v.confidence,
                    reason: v.reason.clone(),
                    expected_status: want_status.to_string(),
                    expected_mechanism: want_mech.to_string(),
                    as_expected: v.status == want_status && v.mechanism == want_mech,
                });
            }
            // A target without an inside verdict is a failure too.
            for _ in seen..p.targets {
                out.push(Outcome {
                    number: p.cond.number,
                    condition: p.cond.name.to_string(),
                    pass: p.pass,
                    campaign_id: p.id.clone(),
                    target: "(missing)".into(),
                    kind: String::new(),
                    status: "missing".into(),
                    mechanism: String::new(),
                    confidence: 0.0,
                    reason: "no verdict for an inside agent".into(),
                    expected_status: want_status.to_string(),
                    expected_mechanism: want_mech.to_string(),
                    as_expected: false,
                });
            }
        }
        Ok(out)
    }
}

/// A lab campaign's spec: inside CN, control the `control` tag, lab
/// addresses allowed.
fn campaign_spec(
    name: &str,
    description: &str,
    deadline_secs: u64,
    targets: &[ProbeInput],
) -> serde_json::Value {
    serde_json::json!({
        "version": 1,
        "name": name,
        "description": description,
        "deadline": format!("{deadline_secs}s"),
        "allow_private_targets": true,
        "inside": { "countries": ["CN"] },
        "control": { "tags": ["control"] },
        "targets": targets,
    })
}

/// A periodic schedule: `runs` runs `every` apart, the first at `start`.
#[derive(Clone, Debug)]
pub struct Periodic {
    pub every: Duration,
    pub runs: u32,
    pub start: SystemTime,
}

impl Periodic {
    /// `runs` runs `every` apart, starting `lead` from now (time to create
    /// the campaign before its first run is due).
    pub fn from_now(every: Duration, runs: u32, lead: Duration) -> Periodic {
        Periodic {
            every,
            runs,
            start: SystemTime::now() + lead,
        }
    }

    /// When run `index` is due.
    pub fn due(&self, index: u32) -> SystemTime {
        self.start + self.every * index
    }

    /// The spec's `[schedule]`: `end` is the last run's time, so the
    /// schedule (start to end inclusive) has exactly `runs` runs.
    fn spec(&self) -> serde_json::Value {
        let at = |t: SystemTime| humantime::format_rfc3339_millis(t).to_string();
        serde_json::json!({
            "every": format!("{}ms", self.every.as_millis()),
            "start": at(self.start),
            "end": at(self.due(self.runs.saturating_sub(1))),
        })
    }
}

/// A veth from this machine to the core namespace (198.19.208.0/24): the
/// lab's leaves route only 198.19.0.0/16 via the firewall and the core
/// does not forward, so nothing in the lab reaches the machine through it.
fn link_dashboard(prefix: &str) -> Result<()> {
    let host_if = format!("{prefix}-dash");
    let core = ns(prefix, "core");
    sys::try_run(&["ip", "link", "del", &host_if]);
    sys::run(&[
        "ip", "link", "add", &host_if, "type", "veth", "peer", "name", "dash0", "netns", &core,
    ])?;
    sys::run(&[
        "ip",
        "addr",
        "add",
        &format!("{DASH_HOST_IP}/24"),
        "dev",
        &host_if,
    ])?;
    sys::run(&["ip", "link", "set", &host_if, "up"])?;
    sys::ns_run(
        &core,
        &[
            "ip",
            "addr",
            "add",
            &format!("{DASH_CORE_IP}/24"),
            "dev",
            "dash0",
        ],
    )?;
    sys::ns_run(&core, &["ip", "link", "set", "dash0", "up"])?;
    Ok(())
}

/// The verdict table: one line per inside verdict, with what was expected.
pub fn table(outcomes: &[Outcome]) -> String {
    // The target column is as wide as its longest entry, so rows line up.
    let tw = outcomes
        .iter()
        .map(|o| o.target.chars().count())
        .max()
        .unwrap_or(0)
        .max("TARGET".len());
    let cw = outcomes
        .iter()
        .map(|o| o.condition.chars().count() + if o.pass { 7 } else { 0 })
        .max()
        .unwrap_or(0)
        .max(26);
    let mut s = format!(
        "{:>2}  {:<cw$} {:<tw$} {:<12} {:<15} {}\n",
        "#", "CONDITION", "TARGET", "STATUS", "MECHANISM", "EXPECTED"
    );
    for o in outcomes {
        let dash = |m: &str| {
            if m.is_empty() {
                "-".to_string()
            } else {
                m.to_string()
            }
        };
        let name = if o.pass {
            format!("{} (pass)", o.condition)
        } else {
            o.condition.clone()
        };
        let expected = if o.as_expected {
            "yes".to_string()
        } else {
            format!(
                "NO: want {} {}",
                o.expected_status,
                dash(&o.expected_mechanism)
            )
        };
        s.push_str(&format!(
            "{:>2}  {:<cw$} {:<tw$} {:<12} {:<15} {expected}\n",
            o.number,
            name,
            o.target,
            o.status,
            dash(&o.mechanism)
        ));
    }
    s
}

/// What `Fleet::agent_bench` measured.
#[derive(Clone, Debug, Serialize)]
pub struct AgentBench {
    pub idle_rss_kib: u64,
    /// Context switches of all the agent's threads per minute while idle.
    pub idle_wakeups_per_minute: u64,
    pub binary_bytes: u64,
    pub web_targets: usize,
    /// From campaign creation to its run complete (inside and control).
    pub web_seconds: f64,
}

impl Fleet {
    /// The agent budgets of DESIGN.md: the inside agent's idle RSS and
    /// wake-ups (over `idle`), the binary's size, and the `web` probe over
    /// `web_targets` lab URLs at the default concurrency.
    pub fn agent_bench(&self, idle: Duration, web_targets: usize) -> Result<AgentBench> {
        let pid = self.inside_pid;
        let rss = match procs::proc_rss(pid).0 / 1024 {
            0 => {
                return Err(fleet_err(format!(
                    "no VmRSS for the inside agent (pid {pid})"
                )))
            }
            kib => kib,
        };
        let s0 = vantage_testkit::procs::proc_context_switches(pid);
        std::thread::sleep(idle);
        let s1 = vantage_testkit::procs::proc_context_switches(pid);
        let wakeups = (s1.saturating_sub(s0) as f64 * 60.0 / idle.as_secs_f64()) as u64;
        let binary_bytes = std::fs::metadata(&self.bins.agent)
            .map(|m| m.len())
            .unwrap_or(0);
        let targets: Vec<ProbeInput> = (1..=web_targets)
            .map(|i| {
                serde_json::from_value(serde_json::json!({"web": {
                    "url": format!("http://bench.lab.example/p{i}"),
                    "resolver": format!("{}:53", plan::RESOLVER_IP),
                }}))
                .map_err(|e| fleet_err(format!("web input: {e}")))
            })
            .collect::<Result<_>>()?;
        let t0 = Instant::now();
        let id =
            self.create_campaign("web-bench", "web probe over many lab URLs", 300, &targets)?;
        self.wait_done(&[id], Duration::from_secs(600), |_, _| {})?;
        Ok(AgentBench {
            idle_rss_kib: rss,
            idle_wakeups_per_minute: wakeups,
            binary_bytes,
            web_targets,
            web_seconds: t0.elapsed().as_secs_f64(),
        })
    }
}
