//! The probe tests' lab: `<id>-in` (client) <-> `<id>-fw` (router with
//! iptables) <-> `<id>-srv` (servers), on 198.18.<base>.0/24 (client side)
//! and 198.18.<base+1>.0/24 (server side), optionally an injector
//! `<id>-inj` on 198.18.<base+2>.0/24. The only route is the caller's
//! lab range via the firewall. Everything (namespaces, their processes) is
//! removed on drop and before building, so a crashed run leaves nothing
//! that breaks the next one.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::{addr, iptables, must, ns_run, poll, route, router, veth, Namespaces};

/// A client <-> firewall <-> server lab (see the module docs). Its
/// methods panic on failure: a failed lab command is a failed test.
pub struct Chain {
    pub id: String,
    pub base: u8,
    net: String,
    spawned: usize,
    namespaces: Namespaces,
    /// Logs and files of the servers (kept until drop).
    pub dir: tempfile::TempDir,
}

impl Chain {
    /// Builds `<id>-in`, `<id>-fw`, `<id>-srv` on 198.18.<base>/24 and
    /// 198.18.<base+1>/24; client and server route `net` (inside
    /// 198.18.0.0/15) via the firewall.
    pub fn new(id: &str, base: u8, net: &str) -> Chain {
        assert!(base <= 253, "198.18.<base..base+2> must exist");
        let mut lab = Chain {
            id: id.to_string(),
            base,
            net: net.to_string(),
            spawned: 0,
            namespaces: Namespaces::new(),
            dir: tempfile::tempdir().expect("tempdir"),
        };
        // A leftover injector of a crashed run goes too.
        super::destroy(&lab.ns("inj"));
        for role in ["in", "fw", "srv"] {
            lab.namespaces.add(&lab.ns(role));
        }
        let (inn, fw, srv) = (lab.ns("in"), lab.ns("fw"), lab.ns("srv"));
        must(veth((&inn, "in0"), (&fw, "fw0")));
        must(veth((&fw, "fw1"), (&srv, "srv0")));
        must(addr(&inn, "in0", &format!("{}/24", lab.client_ip())));
        must(addr(&fw, "fw0", &format!("198.18.{base}.1/24")));
        must(addr(&fw, "fw1", &format!("198.18.{}.1/24", base + 1)));
        must(addr(&srv, "srv0", &format!("{}/24", lab.srv_ip())));
        must(route(&inn, net, &format!("198.18.{base}.1")));
        must(route(&srv, net, &format!("198.18.{}.1", base + 1)));
        must(router(&fw));
        lab
    }

    /// Adds an injector namespace `<id>-inj` behind the firewall on
    /// 198.18.<base+2>/24 (fw side .1, injector .2).
    pub fn add_injector(&mut self) {
        let (fw, inj) = (self.ns("fw"), self.ns("inj"));
        self.namespaces.add(&inj);
        let b = self.base + 2;
        must(veth((&fw, "fw2"), (&inj, "inj0")));
        must(addr(&fw, "fw2", &format!("198.18.{b}.1/24")));
        must(addr(&inj, "inj0", &format!("198.18.{b}.2/24")));
        must(route(&inj, &self.net, &format!("198.18.{b}.1")));
    }

    /// The namespace of `role` (`in`, `fw`, `srv`, `inj`).
    pub fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.id)
    }

    pub fn client_ip(&self) -> String {
        format!("198.18.{}.2", self.base)
    }

    pub fn srv_ip(&self) -> String {
        format!("198.18.{}.2", self.base + 1)
    }

    /// An address on the server side's /24.
    pub fn srv_net(&self, host: u8) -> String {
        format!("198.18.{}.{host}", self.base + 1)
    }

    /// Runs a command inside a namespace; its stdout.
    pub fn exec(&self, role: &str, args: &[&str]) -> String {
        must(ns_run(&self.ns(role), args))
    }

    /// Adds an iptables rule in the firewall (`args` split on whitespace).
    pub fn fw(&self, args: &str) {
        let args: Vec<&str> = args.split_whitespace().collect();
        self.fw_args(&args);
    }

    /// Adds an iptables rule whose string match contains spaces.
    pub fn fw_args(&self, args: &[&str]) {
        must(iptables(&self.ns("fw"), args));
    }

    /// Removes every rule from the firewall's FORWARD chain.
    pub fn fw_flush(&self) {
        self.fw_args(&["-F", "FORWARD"]);
    }

    /// Starts a long-running server inside a namespace, logging to
    /// `<dir>/<role>-<n>.log`; killed on drop.
    pub fn spawn(&mut self, role: &str, args: &[&str]) {
        let log = self.dir.path().join(format!("{role}-{}.log", self.spawned));
        self.spawned += 1;
        let ns = self.ns(role);
        self.namespaces.spawn(&ns, args, &log);
    }

    /// Starts this very test binary inside `role`, running only the helper
    /// test `helper` with `VAR=value` set (the helper serves until killed).
    pub fn spawn_helper(&mut self, role: &str, helper: &str, var: &str, value: &str) {
        let exe = std::env::current_exe().expect("current test binary");
        let exe = exe.display().to_string();
        let assignment = format!("{var}={value}");
        self.spawn(
            role,
            &[
                "env",
                &assignment,
                &exe,
                "--exact",
                helper,
                "--nocapture",
                "--test-threads=1",
            ],
        );
    }

    /// Waits until a line containing `needle` shows up in a spawned
    /// process's log.
    pub fn wait_log(&self, needle: &str) {
        let dir = self.dir.path();
        let found = poll(Duration::from_secs(10), || logs_contain(dir, needle));
        assert!(found, "`{needle}` never showed up in the logs in {dir:?}");
    }

    /// Waits until something listens on `port` (`tcp` or `udp`) in `role`.
    pub fn wait_listen(&self, role: &str, proto: &str, port: u16) {
        let flag = if proto == "udp" { "-lun" } else { "-ltn" };
        let needle = format!(":{port} ");
        let up = poll(Duration::from_secs(10), || {
            let out = self.exec(role, &["ss", "-H", flag]);
            out.lines().any(|l| l.contains(&needle))
        });
        assert!(
            up,
            "{proto}/{port} never came up in {}: see logs in {:?}",
            self.ns(role),
            self.dir.path()
        );
    }

    /// A command running `prog` in the client namespace (add arguments).
    pub fn client_command(&self, prog: &str) -> Command {
        super::command(&self.ns("in"), prog)
    }
}

fn logs_contain(dir: &Path, needle: &str) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .any(|e| {
            std::fs::read_to_string(e.path())
                .map(|t| t.contains(needle))
                .unwrap_or(false)
        })
}
