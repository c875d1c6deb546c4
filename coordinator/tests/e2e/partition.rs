//! Network partition (issue 9), with real processes in network namespaces.
//!
//! Three namespaces of this run (`vpart-<pid>-c|i|o`), no default routes,
//! addresses in 198.18.200.0/24 (no other test uses it):
//!
//! ```text
//!   vpart-<pid>-i  in1, in2 (CN)  ──veth (cut)──  vpart-<pid>-c  coordinator 198.18.200.1
//!   vpart-<pid>-o  in3 (CN), ctl (DE, control) ──veth──┘
//! ```
//!
//! A campaign of slow probes (tcp to a blackholed address inside each agent
//! namespace, each probe running its whole `max_probe_seconds`, two at a
//! time) is dispatched to in1, in2 and ctl; right after, the link between
//! the inside agents and the coordinator goes down for 60 s
//! (`VANTAGE_PARTITION_SECS` overrides it for local iteration) while in1 and
//! in2 keep producing results. Asserted:
//!
//! - the partitioned agents buffer: `vantage-agent status` shows not
//!   connected and an outbox depth equal to every result they produced;
//!   nothing of theirs reaches the store while the link is down;
//! - their leases expire (run deadline + grace, `campaigns.rs`) and one task
//!   is re-offered to in3, the matching inside agent that came online after
//!   dispatch (the rule: another matching online agent not yet in the run);
//! - after the link returns they reconnect (backoff, logged) and deliver
//!   everything; late results still count as done;
//! - every agent's results are stored exactly once: the ids in1 and in2
//!   hold in their outboxes at the end of the outage (read from a copy
//!   taken with the agent stopped) are exactly their ids in the store
//!   listing; one result per task, no id twice, per-agent counts equal the
//!   agent's own delivered counter, and the store count equals the listing;
//! - every signature re-verifies (`vantagectl export` + `verify-export`).
//!
//! Namespaces are deleted on drop (also when the test fails); ones left by
//! a crashed run (`vpart-<pid>-*` whose pid is gone) are deleted first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vantage_testkit::netns::{self, must, Namespaces};

use crate::harness::{agent_bin, coordinator_bin, vantagectl_bin, wait_until, LAB_CONFIG};

const TEST: &str = "partition::partition_buffers_expires_leases_and_delivers_each_result_once";
const PREFIX: &str = "vpart-";
const COORD_IP: &str = "198.18.200.1";
const COORD_PORT: u16 = 7443;
/// Blackholed target inside each agent namespace (a static neighbour on a
/// veth whose peer drops the frames): a tcp probe waits its whole budget.
const SINK_IP: &str = "198.18.200.40";
const TARGETS: usize = 10;
const CONCURRENCY: u64 = 2;

fn outage() -> Duration {
    let s = std::env::var("VANTAGE_PARTITION_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(60);
    Duration::from_secs(s.max(10))
}

/// A veth pair from `a` to `b` named `<tag>a|b`, with addresses (an empty
/// address: none); the name of `a`'s end.
fn link(tag: &str, (a, a_ip): (&str, &str), (b, b_ip): (&str, &str)) -> String {
    let (ea, eb) = (format!("{tag}a"), format!("{tag}b"));
    must(netns::veth((a, &ea), (b, &eb)));
    for (ns, dev, addr) in [(a, &ea, a_ip), (b, &eb, b_ip)] {
        must(if addr.is_empty() {
            netns::link_up(ns, dev, true)
        } else {
            netns::addr(ns, dev, addr)
        });
    }
    ea
}

/// `SINK_IP` in `ns`: a veth pair inside the namespace and a permanent
/// neighbour entry with a MAC nobody owns, so SYNs vanish silently.
fn sink(ns: &str, tag: &str, net: &str) {
    let dev = link(tag, (ns, net), (ns, ""));
    must(netns::ip(
        ns,
        &[
            "neigh",
            "replace",
            SINK_IP,
            "lladdr",
            "02:00:00:00:00:28",
            "dev",
            &dev,
            "nud",
            "permanent",
        ],
    ));
}

fn in_ns(ns: &str, prog: &Path) -> Command {
    netns::command(ns, prog)
}

/// The run: its namespaces and processes (killed, then deleted, on drop;
/// also when the test fails), and its files.
struct Lab {
    net: Namespaces,
    root: tempfile::TempDir,
    core: String,
    coord_dir: PathBuf,
}

impl Lab {
    fn ctl(&self, args: &[&str]) -> Command {
        let mut c = in_ns(&self.core, &vantagectl_bin());
        c.arg("--data-dir").arg(&self.coord_dir).args(args);
        c
    }

    fn ctl_ok(&self, args: &[&str]) -> String {
        netns::output_ok(&mut self.ctl(args))
    }

    fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--output", "json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ctl_ok(&a)).expect("json output")
    }

    fn log(&self, name: &str) -> PathBuf {
        self.root.path().join(format!("{name}.log"))
    }

    fn read_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log(name)).unwrap_or_default()
    }

    /// Starts `cmd`, its stderr to `<name>.log`; stopped on drop.
    fn spawn(&self, mut cmd: Command, name: &str) -> u32 {
        cmd.env("RUST_LOG", "info");
        self.net.spawn_command(cmd, &self.log(name))
    }
}

/// The logs outlive the run (also a failed one) in
/// `target/test-output/partition/`.
impl Drop for Lab {
    fn drop(&mut self) {
        self.net.stop_processes();
        let out = crate::dashboard::output_dir("partition");
        for name in ["coordinator", "in1", "in2", "in3", "ctl"] {
            let _ = std::fs::copy(self.log(name), out.join(format!("{name}.log")));
        }
    }
}

struct PAgent {
    name: &'static str,
    ns: String,
    dir: PathBuf,
    id: String,
    pid: Option<u32>,
}

impl PAgent {
    fn enroll(lab: &Lab, name: &'static str, ns: &str, token: &str, cc: &str, tags: &str) -> Self {
        let dir = lab.root.path().join(name);
        let mut enroll = in_ns(ns, &agent_bin());
        enroll
            .args(["enroll", "--token", token, "--country", cc, "--asn", "4134"])
            .args(["--tags", tags, "--accept-consent", "--data-dir"])
            .arg(&dir);
        netns::output_ok(&mut enroll);
        let probe_s = probe_seconds();
        std::fs::write(
            dir.join("agent.toml"),
            format!(
                "{LAB_CONFIG}[limits]\nmax_concurrency = {CONCURRENCY}\nmax_probe_seconds = {probe_s}\n"
            ),
        )
        .expect("agent.toml");
        let id: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("identity.json")).expect("identity"))
                .expect("identity json");
        PAgent {
            name,
            ns: ns.to_string(),
            dir,
            id: id["agent_id"].as_str().unwrap_or_default().to_string(),
            pid: None,
        }
    }

    fn start(&mut self, lab: &Lab) {
        let mut cmd = in_ns(&self.ns, &agent_bin());
        cmd.args(["run", "--data-dir"]).arg(&self.dir);
        self.pid = Some(lab.spawn(cmd, self.name));
    }

    fn status(&self) -> serde_json::Value {
        let out = Command::new(agent_bin())
            .args(["status", "--json", "--data-dir"])
            .arg(&self.dir)
            .output()
            .expect("vantage-agent status");
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }
}

/// Each probe's budget: the slow campaign's probes run in
/// `TARGETS / CONCURRENCY` waves that end well before the run deadline.
fn probe_seconds() -> u64 {
    (deadline_seconds() * 3 / 4 / (TARGETS as u64 / CONCURRENCY)).max(2)
}

/// The run deadline: two thirds of the outage, so the leases (deadline +
/// grace) expire while the link is still down (60 s: 40 s, probes of 6 s).
fn deadline_seconds() -> u64 {
    (outage().as_secs() * 2 / 3).max(2 * TARGETS as u64 / CONCURRENCY + 4)
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

fn inside_group(st: &serde_json::Value) -> serde_json::Value {
    st["runs"][0]["groups"]
        .as_array()
        .and_then(|g| g.iter().find(|x| x["group"] == "inside").cloned())
        .unwrap_or_default()
}

#[test]
fn partition_buffers_expires_leases_and_delivers_each_result_once() {
    if !netns::lab_ready(TEST, &["ip"]) {
        return;
    }
    netns::clean_stale(PREFIX);
    let outage = outage();
    let started = Instant::now();
    let mut net = Namespaces::new();
    let ns = |which: &str| format!("{PREFIX}{}-{which}", std::process::id());
    let core = net.add(&ns("c"));
    let ins = net.add(&ns("i"));
    let out = net.add(&ns("o"));
    must(netns::addr(&core, "lo", &format!("{COORD_IP}/32")));
    let cut = link(
        "vpi",
        (&core, "198.18.200.9/30"),
        (&ins, "198.18.200.10/30"),
    );
    link(
        "vpo",
        (&core, "198.18.200.13/30"),
        (&out, "198.18.200.14/30"),
    );
    must(netns::route(
        &ins,
        &format!("{COORD_IP}/32"),
        "198.18.200.9",
    ));
    must(netns::route(
        &out,
        &format!("{COORD_IP}/32"),
        "198.18.200.13",
    ));
    sink(&ins, "vsi", "198.18.200.33/28");
    sink(&out, "vso", "198.18.200.33/28");
    net.assert_no_default_route();

    // The coordinator, in its namespace.
    let root = tempfile::tempdir().expect("tempdir");
    let coord_dir = root.path().join("coord");
    let mut init = in_ns(&core, &coordinator_bin());
    init.args([
        "init",
        "--listen",
        &format!("{COORD_IP}:{COORD_PORT}"),
        "--data-dir",
    ])
    .arg(&coord_dir);
    netns::output_ok(&mut init);
    let lab = Lab {
        net,
        root,
        core: core.clone(),
        coord_dir,
    };
    let mut serve = in_ns(&core, &coordinator_bin());
    serve.args(["serve", "--data-dir"]).arg(&lab.coord_dir);
    lab.spawn(serve, "coordinator");
    wait_until(Duration::from_secs(20), "the coordinator to serve", || {
        lab.read_log("coordinator").contains("coordinator serving")
    });

    let token = lab.ctl_ok(&["token", "create", "--uses", "4", "--expires", "1h"]);
    let token = token.trim();
    let mut in1 = PAgent::enroll(&lab, "in1", &ins, token, "CN", "");
    let mut in2 = PAgent::enroll(&lab, "in2", &ins, token, "CN", "");
    let mut in3 = PAgent::enroll(&lab, "in3", &out, token, "CN", "");
    let mut ctl = PAgent::enroll(&lab, "ctl", &out, token, "DE", "control");
    for a in [&mut in1, &mut in2, &mut ctl] {
        a.start(&lab);
    }
    let connected = |ids: &[&str]| {
        let agents = lab.ctl_json(&["agents"]);
        ids.iter().all(|id| {
            agents.as_array().is_some_and(|v| {
                v.iter()
                    .any(|a| a["agent_id"] == *id && a["connected"] == true)
            })
        })
    };
    wait_until(Duration::from_secs(30), "in1, in2, ctl connected", || {
        connected(&[&in1.id, &in2.id, &ctl.id])
    });

    // The slow campaign: in3 is offline, so in1 and in2 are the inside group.
    let deadline = deadline_seconds();
    let targets: String = (0..TARGETS)
        .map(|i| {
            format!(
                "[[targets]]\ntcp = {{ host = \"{SINK_IP}\", port = {} }}\n\n",
                1000 + i
            )
        })
        .collect();
    let spec = format!(
        "version = 1\nname = \"partition\"\ndeadline = \"{deadline}s\"\nallow_private_targets = true\n\n\
         [inside]\ncountries = [\"CN\"]\nmax_agents = 2\n\n[control]\ntags = [\"control\"]\n\n{targets}"
    );
    let spec_path = lab.root.path().join("spec.toml");
    std::fs::write(&spec_path, spec).expect("spec");
    let campaign = lab
        .ctl_ok(&[
            "campaign",
            "create",
            "-f",
            spec_path.to_str().expect("path"),
        ])
        .trim()
        .to_string();
    let status = || lab.ctl_json(&["campaign", "status", &campaign]);
    wait_until(Duration::from_secs(10), "the run to be dispatched", || {
        status()["runs"][0]["state"] == "dispatched"
    });
    let dispatched = Instant::now();
    let st = status();
    assert_eq!(inside_group(&st)["agents"], 2, "in1 and in2 inside: {st}");
    // Let the tasks reach the agents (their first results come after a
    // whole probe budget), then cut the link.
    std::thread::sleep(Duration::from_secs(1));
    let stored_before = lab.ctl_json(&["stats"])["results_stored"]
        .as_u64()
        .unwrap_or(0);
    let by_agent_before = count_by_agent(&lab);
    must(netns::link_up(&core, &cut, false));
    let down_at = Instant::now();
    eprintln!(
        "partition: link {cut} down {:.1} s after dispatch, for {} s; stored so far {stored_before}",
        dispatched.elapsed().as_secs_f64(),
        outage.as_secs()
    );
    in3.start(&lab);

    // While down: buffering, leases expiring, a re-offer to in3.
    let mut max_depth: HashMap<&str, u64> = HashMap::new();
    let mut saw_disconnected: HashMap<&str, f64> = HashMap::new();
    // When the coordinator listed each partitioned agent as not connected.
    let mut coordinator_saw: HashMap<&str, f64> = HashMap::new();
    let mut max_expired = 0u64;
    let mut max_inside_agents = 0u64;
    while down_at.elapsed() < outage {
        for a in [&in1, &in2] {
            let s = a.status();
            let d = s["outbox_depth"].as_u64().unwrap_or(0);
            let m = max_depth.entry(a.name).or_default();
            *m = (*m).max(d);
            if s["connected"] == false && !saw_disconnected.contains_key(a.name) {
                saw_disconnected.insert(a.name, down_at.elapsed().as_secs_f64());
            }
        }
        let listed = lab.ctl_json(&["agents"]);
        for a in [&in1, &in2] {
            let gone = listed.as_array().is_some_and(|l| {
                l.iter()
                    .any(|x| x["agent_id"] == a.id.as_str() && x["connected"] != true)
            });
            if gone && !coordinator_saw.contains_key(a.name) {
                coordinator_saw.insert(a.name, down_at.elapsed().as_secs_f64());
            }
        }
        let g = inside_group(&status());
        max_expired = max_expired.max(g["expired"].as_u64().unwrap_or(0));
        max_inside_agents = max_inside_agents.max(g["agents"].as_u64().unwrap_or(0));
        std::thread::sleep(Duration::from_millis(1000));
    }
    let during = count_by_agent(&lab);
    let st_down = status();
    // The ids each partitioned agent produced: a copy of its outbox, taken
    // with the agent stopped (every entry was fdatasynced when written).
    let produced: HashMap<&str, HashSet<String>> = [&in1, &in2]
        .iter()
        .map(|a| (a.name, outbox_ids(a, lab.root.path())))
        .collect();
    must(netns::link_up(&core, &cut, true));
    let up_at = Instant::now();
    let up_us = now_us();
    eprintln!(
        "partition: link up; while down: max outbox depth {max_depth:?}, agents saw the session \
         drop after {saw_disconnected:?} s, the coordinator after {coordinator_saw:?} s, \
         max expired {max_expired}, inside agents {max_inside_agents}"
    );
    for a in [&in1, &in2] {
        assert_eq!(
            during.get(&a.id),
            by_agent_before.get(&a.id),
            "nothing of {} reached the store while partitioned",
            a.name
        );
        assert_eq!(
            max_depth.get(a.name).copied(),
            Some(TARGETS as u64),
            "{} buffered every result it produced while down",
            a.name
        );
        // The agent's HTTP/2 keepalive (15 s ping, 10 s timeout) notices a
        // dead session within 25 s, the coordinator's (10 s + 5 s) within
        // 15 s; shorter local outages may end first.
        assert!(
            saw_disconnected.contains_key(a.name) || outage < Duration::from_secs(30),
            "{} noticed the dead session while down",
            a.name
        );
        assert!(
            coordinator_saw.contains_key(a.name) || outage < Duration::from_secs(20),
            "the coordinator listed {} as disconnected while down",
            a.name
        );
    }
    assert_eq!(
        max_expired,
        2 * TARGETS as u64,
        "every lease of in1 and in2 expired while down: {st_down}"
    );
    assert_eq!(
        max_inside_agents, 3,
        "an expired task was re-offered to in3: {st_down}"
    );
    assert!(
        lab.read_log("coordinator").contains("lease re-offered"),
        "the coordinator logged the re-offer"
    );

    // After: reconnect and deliver everything.
    let mut reconnect_s: BTreeMap<&str, f64> = BTreeMap::new();
    let mut drained_s: BTreeMap<&str, f64> = BTreeMap::new();
    wait_until(
        Duration::from_secs(150),
        "in1 and in2 to reconnect and drain their outboxes",
        || {
            for a in [&in1, &in2] {
                let s = a.status();
                if s["connected"] == true
                    && s["since_us"].as_i64().unwrap_or(0) >= up_us
                    && !reconnect_s.contains_key(a.name)
                {
                    reconnect_s.insert(a.name, up_at.elapsed().as_secs_f64());
                }
                if reconnect_s.contains_key(a.name)
                    && s["outbox_depth"] == 0
                    && !drained_s.contains_key(a.name)
                {
                    drained_s.insert(a.name, up_at.elapsed().as_secs_f64());
                }
            }
            drained_s.len() == 2
        },
    );
    wait_until(Duration::from_secs(60), "the campaign done", || {
        status()["campaign"]["state"] == "done"
    });

    // Exactly once, per agent, against the agents' own counters.
    let listing = lab.ctl_ok(&["--output", "jsonl", "results"]);
    let mut ids = HashSet::new();
    let mut tasks_of: HashMap<String, Vec<String>> = HashMap::new();
    let mut ids_of: HashMap<String, HashSet<String>> = HashMap::new();
    for line in listing.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("result line");
        let m = &v["measurement"];
        let id = m["id"].as_str().unwrap_or_default().to_string();
        assert!(ids.insert(id.clone()), "result {id} listed twice");
        ids_of
            .entry(v["agent_id"].as_str().unwrap_or_default().to_string())
            .or_default()
            .insert(id.clone());
        tasks_of
            .entry(v["agent_id"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(m["task_id"].as_str().unwrap_or_default().to_string());
    }
    let stats = lab.ctl_json(&["stats"]);
    assert_eq!(
        stats["results_stored"].as_u64(),
        Some(ids.len() as u64),
        "store count equals the listing"
    );
    let run_tasks: HashSet<String> = tasks_of
        .get(&ctl.id)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect();
    assert_eq!(run_tasks.len(), TARGETS, "the control ran every task");
    let mut delivered: BTreeMap<&str, (u64, usize)> = BTreeMap::new();
    for a in [&in1, &in2, &in3, &ctl] {
        let s = a.status();
        let mine = tasks_of.get(&a.id).cloned().unwrap_or_default();
        let uniq: HashSet<&String> = mine.iter().collect();
        assert_eq!(uniq.len(), mine.len(), "{}: one result per task", a.name);
        assert!(
            uniq.iter().all(|t| run_tasks.contains(*t)),
            "{}: results only for the run's tasks",
            a.name
        );
        assert_eq!(
            s["delivered_total"].as_u64(),
            Some(mine.len() as u64),
            "{}: the store holds what the agent says it delivered: {s}",
            a.name
        );
        assert_eq!(
            (s["outbox_depth"].as_u64(), s["outbox_dropped"].as_u64()),
            (Some(0), Some(0)),
            "{}: nothing left, nothing dropped: {s}",
            a.name
        );
        delivered.insert(
            a.name,
            (s["delivered_total"].as_u64().unwrap_or(0), mine.len()),
        );
    }
    for a in [&in1, &in2] {
        assert_eq!(
            ids_of.get(&a.id),
            produced.get(a.name),
            "{}: the store holds exactly the ids it buffered while down",
            a.name
        );
        assert_eq!(
            tasks_of.get(&a.id).map(Vec::len),
            Some(TARGETS),
            "{} delivered a result for each of its {TARGETS} tasks",
            a.name
        );
    }
    assert!(
        tasks_of.get(&in3.id).map(Vec::len).unwrap_or(0) >= 1,
        "in3 ran the re-offered task"
    );
    let st_end = status();
    let g = inside_group(&st_end);
    assert_eq!(
        (g["expired"].as_u64(), g["pending"].as_u64()),
        (Some(0), Some(0)),
        "late results count as done: {st_end}"
    );

    // Signatures re-verify.
    let export = lab.root.path().join("export.jsonl");
    let agents_json = lab.root.path().join("agents.json");
    lab.ctl_ok(&[
        "export",
        &campaign,
        "--format",
        "jsonl",
        "-o",
        export.to_str().expect("path"),
    ]);
    std::fs::write(&agents_json, lab.ctl_ok(&["--output", "json", "agents"])).expect("agents");
    let verified = lab.ctl_ok(&[
        "verify-export",
        export.to_str().expect("path"),
        "--agents",
        agents_json.to_str().expect("path"),
    ]);
    assert!(
        verified.contains(&format!("{} verified, 0 failed", ids.len())),
        "{verified}"
    );

    let reconnect_lines: HashMap<&str, usize> = [&in1, &in2]
        .iter()
        .map(|a| {
            (
                a.name,
                lab.read_log(a.name).matches("reconnecting in").count(),
            )
        })
        .collect();
    for (name, n) in &reconnect_lines {
        assert!(
            *n >= 2 || outage < Duration::from_secs(55),
            "{name} kept retrying while down (backoff): {n} attempts logged"
        );
    }
    let log = lab.read_log("coordinator");
    let dups = stats["counters"]
        .as_array()
        .and_then(|c| c.iter().find(|x| x["name"] == "duplicate_results"))
        .and_then(|x| x["value"].as_u64())
        .unwrap_or(0);
    eprintln!(
        "partition: outage {} s; in1/in2 produced {TARGETS} results each while down, buffered \
         (max outbox depth {max_depth:?}; ids read from the outboxes: {:?}), delivered after the link returned: {delivered:?} \
         (delivered_total, stored); lost 0; stored twice 0 ({} results, all listed once, {dups} \
         resends ignored as duplicates); leases expired while down {max_expired} \
         (coordinator log: {} 'lease expired', {} 'lease re-offered'), re-offered to in3: {} \
         result(s); session drop noticed after {saw_disconnected:?} s; reconnect attempts logged \
         {reconnect_lines:?}; reconnected {reconnect_s:?} s and drained {drained_s:?} s after \
         the link came up; all {} signatures verified; test took {:.0} s",
        outage.as_secs(),
        produced.iter().map(|(k, v)| (*k, v.len())).collect::<BTreeMap<_, _>>(),
        ids.len(),
        log.matches("lease expired").count(),
        log.matches("lease re-offered").count(),
        tasks_of.get(&in3.id).map(Vec::len).unwrap_or(0),
        ids.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Ids in an agent's outbox, read from a copy taken while it is stopped.
fn outbox_ids(a: &PAgent, scratch: &Path) -> HashSet<String> {
    let pid = a.pid.expect("agent running").to_string();
    let copy = scratch.join(format!("{}-outbox-copy", a.name));
    let st = Command::new("kill").args(["-STOP", &pid]).status();
    assert!(st.is_ok_and(|s| s.success()), "kill -STOP {pid}");
    let cp = Command::new("cp").arg("-a").arg(&a.dir).arg(&copy).status();
    let _ = Command::new("kill").args(["-CONT", &pid]).status();
    assert!(cp.is_ok_and(|s| s.success()), "copy of {}", a.dir.display());
    let outbox = vantage_agent::outbox::Outbox::open(&copy, 1_000_000).expect("outbox copy");
    outbox
        .pending(100_000, &HashSet::new())
        .expect("outbox entries")
        .iter()
        .map(|(_, env)| vantage_proto::envelope::decode(env).expect("envelope").id)
        .collect()
}

/// Stored results per agent id.
fn count_by_agent(lab: &Lab) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for line in lab.ctl_ok(&["--output", "jsonl", "results"]).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("result line");
        *out.entry(v["agent_id"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    out
}
