//! A ClickHouse cluster for tests: one ZooKeeper and `shards` x `replicas`
//! `clickhouse-server` processes on loopback, each with its own config and
//! data directory in a temp dir (Debian's `clickhouse-server` 18.16 and
//! `zookeeper` 3.8; the traps met building it are in DEPENDENCIES.md:
//! ZooKeeper serves sessions only once `srvr` says `Mode:`, replicas fetch
//! parts from `interserver_http_host`, and a short `poll_interval` and
//! ZooKeeper session keep stops and `kill -9` quick).
//!
//! The cluster is named [`CLUSTER`]; each node's macros are `{shard}` and
//! `{replica}`, so `ReplicatedMergeTree('/clickhouse/tables/{shard}/t',
//! '{replica}')` works `ON CLUSTER`. Queries go through `clickhouse-client`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::procs::free_port;

/// The cluster's name in `remote_servers`.
pub const CLUSTER: &str = "vantage";

const ZK_SERVER: &str = "/usr/share/zookeeper/bin/zkServer.sh";

/// What a cluster needs that is not here, with the Debian package that has
/// it (empty: all there).
pub fn missing() -> Vec<String> {
    let mut out = Vec::new();
    for (tool, package) in [
        ("clickhouse-server", "clickhouse-server"),
        ("clickhouse-client", "clickhouse-client"),
    ] {
        if crate::skip::find_tool(&[tool]).is_none() {
            out.push(format!("`{tool}` (Debian: {package})"));
        }
    }
    if !Path::new(ZK_SERVER).is_file() {
        out.push(format!("`{ZK_SERVER}` (Debian: zookeeper)"));
    }
    out
}

/// One `clickhouse-server`.
pub struct Node {
    pub shard: usize,
    pub replica: usize,
    pub tcp_port: u16,
    pub http_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// A running cluster; everything is killed when it is dropped.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub zk_port: u16,
    zk: Option<Child>,
    root: tempfile::TempDir,
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn spawn(cmd: &mut Command, log: &Path) -> Result<Child, String> {
    let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("starting {cmd:?}: {e}"))
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Polls `ready` every 100 ms for up to `limit`.
fn wait(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("{what} not ready after {} s", limit.as_secs()))
}

/// ZooKeeper's answer to a four-letter word.
fn four_letters(port: u16, word: &str) -> String {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.write_all(word.as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

impl Cluster {
    /// Starts ZooKeeper and `shards` x `replicas` nodes and waits until
    /// every node answers.
    pub fn start(shards: usize, replicas: usize) -> Result<Cluster, String> {
        let root = tempfile::tempdir().map_err(|e| e.to_string())?;
        let zk_port = free_port();
        let zk_dir = root.path().join("zookeeper");
        std::fs::create_dir_all(zk_dir.join("data")).map_err(|e| e.to_string())?;
        write(
            &zk_dir.join("zoo.cfg"),
            &format!(
                "tickTime=500\ndataDir={}\nclientPort={zk_port}\nclientPortAddress=127.0.0.1\n\
                 admin.enableServer=false\n4lw.commands.whitelist=ruok,srvr\n",
                zk_dir.join("data").display()
            ),
        )?;
        let zk = spawn(
            Command::new(ZK_SERVER)
                .arg("start-foreground")
                .arg(zk_dir.join("zoo.cfg"))
                .env("ZOO_LOG_DIR", &zk_dir),
            &zk_dir.join("out.log"),
        )?;
        let mut cluster = Cluster {
            nodes: Vec::new(),
            zk_port,
            zk: Some(zk),
            root,
        };
        // `ruok` answers before sessions are served; `srvr` with a mode
        // means it serves them.
        wait(Duration::from_secs(30), "ZooKeeper", || {
            four_letters(zk_port, "srvr").contains("Mode:")
        })?;
        for shard in 1..=shards {
            for replica in 1..=replicas {
                let dir = cluster.root.path().join(format!("s{shard}r{replica}"));
                std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                cluster.nodes.push(Node {
                    shard,
                    replica,
                    tcp_port: free_port(),
                    http_port: free_port(),
                    dir,
                    child: None,
                });
            }
        }
        let remote = cluster.remote_servers(shards, replicas);
        for i in 0..cluster.nodes.len() {
            cluster.write_config(i, &remote)?;
            cluster.start_node(i)?;
        }
        Ok(cluster)
    }

    fn remote_servers(&self, shards: usize, replicas: usize) -> String {
        let mut x = format!("<remote_servers><{CLUSTER}>");
        for shard in 1..=shards {
            x.push_str("<shard><internal_replication>true</internal_replication>");
            for n in self
                .nodes
                .iter()
                .filter(|n| n.shard == shard)
                .take(replicas)
            {
                x.push_str(&format!(
                    "<replica><host>127.0.0.1</host><port>{}</port></replica>",
                    n.tcp_port
                ));
            }
            x.push_str("</shard>");
        }
        x.push_str(&format!("</{CLUSTER}></remote_servers>"));
        x
    }

    fn write_config(&self, i: usize, remote: &str) -> Result<(), String> {
        let n = &self.nodes[i];
        let d = n.dir.display();
        write(
            &n.dir.join("users.xml"),
            "<yandex><profiles><default></default></profiles>\
             <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip>\
             </networks><profile>default</profile><quota>default</quota></default></users>\
             <quotas><default><interval><duration>3600</duration><queries>0</queries>\
             <errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows>\
             <execution_time>0</execution_time></interval></default></quotas></yandex>\n",
        )?;
        write(
            &n.dir.join("config.xml"),
            &format!(
                "<yandex>\
                 <logger><level>warning</level><log>{d}/server.log</log>\
                 <errorlog>{d}/error.log</errorlog><console>0</console></logger>\
                 <listen_host>127.0.0.1</listen_host>\
                 <http_port>{http}</http_port><tcp_port>{tcp}</tcp_port>\
                 <interserver_http_port>{inter}</interserver_http_port>\
                 <interserver_http_host>127.0.0.1</interserver_http_host>\
                 <path>{d}/data/</path><tmp_path>{d}/tmp/</tmp_path>\
                 <user_files_path>{d}/user_files/</user_files_path>\
                 <format_schema_path>{d}/format_schemas/</format_schema_path>\
                 <users_config>{d}/users.xml</users_config>\
                 <default_profile>default</default_profile><default_database>default</default_database>\
                 <mark_cache_size>268435456</mark_cache_size>\
                 <zookeeper><node><host>127.0.0.1</host><port>{zk}</port></node>\
                 <session_timeout_ms>10000</session_timeout_ms></zookeeper>\
                 {remote}\
                 <macros><shard>{shard:02}</shard><replica>r{replica}</replica></macros>\
                 <distributed_ddl><path>/clickhouse/task_queue/ddl</path>\
                 <poll_interval>1</poll_interval></distributed_ddl>\
                 </yandex>\n",
                http = n.http_port,
                tcp = n.tcp_port,
                inter = free_port(),
                zk = self.zk_port,
                shard = n.shard,
                replica = n.replica,
            ),
        )
    }

    fn start_node(&mut self, i: usize) -> Result<(), String> {
        let dir = self.nodes[i].dir.clone();
        let child = spawn(
            Command::new("clickhouse-server").arg(format!(
                "--config-file={}",
                dir.join("config.xml").display()
            )),
            &dir.join("out.log"),
        )?;
        self.nodes[i].child = Some(child);
        let port = self.nodes[i].tcp_port;
        // Generous: a CI run saw a node take over 60 s to answer while
        // four test clusters started at once on a loaded 2-core machine.
        wait(
            Duration::from_secs(180),
            &format!("clickhouse node {i}"),
            || query_port(port, "SELECT 1").is_ok(),
        )
        .map_err(|e| {
            // The directory goes with the test: say what the log said.
            let log = dir.join("error.log");
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!(
                "{e}; the end of its log ({}):\n{}",
                log.display(),
                tail.join("\n")
            )
        })
    }

    /// Runs `sql` on node `i`; its output (TabSeparated).
    pub fn query(&self, i: usize, sql: &str) -> Result<String, String> {
        query_port(self.nodes[i].tcp_port, sql)
    }

    /// Inserts `rows` (TabSeparated, one per line) with `insert` (an
    /// `INSERT INTO ... FORMAT TabSeparated` statement) on node `i`, with
    /// `settings` (name, value) for the query.
    pub fn insert(
        &self,
        i: usize,
        insert: &str,
        rows: &str,
        settings: &[(&str, &str)],
    ) -> Result<(), String> {
        let mut child = Command::new("clickhouse-client")
            .args([
                "--port",
                &self.nodes[i].tcp_port.to_string(),
                "--query",
                insert,
            ])
            .args(settings.iter().map(|(k, v)| format!("--{k}={v}")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("clickhouse-client: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(rows.as_bytes())
                .map_err(|e| e.to_string())?;
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// The nodes' HTTP interfaces (`http://127.0.0.1:port`), shard by shard.
    pub fn http_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("http://127.0.0.1:{}", n.http_port))
            .collect()
    }

    /// Waits until node `i`'s replica of `table` has fetched what its shard
    /// holds. A replica restarted within the ZooKeeper session timeout is
    /// read-only until its old session expires, and `SYSTEM SYNC REPLICA`
    /// then returns at once with parts missing (a CI run saw 50 of 147):
    /// wait for it to be writable first.
    pub fn sync_replica(&self, i: usize, table: &str) -> Result<(), String> {
        let (db, name) = table.split_once('.').unwrap_or(("default", table));
        let q = format!(
            "SELECT is_readonly FROM system.replicas WHERE database = '{db}' AND table = '{name}'"
        );
        wait(
            Duration::from_secs(60),
            &format!("node {i}'s replica of {table}"),
            || self.query(i, &q).is_ok_and(|r| r == "0"),
        )?;
        self.query(i, &format!("SYSTEM SYNC REPLICA {table}"))
            .map(|_| ())
    }

    /// [`Cluster::sync_replica`] on every node, then until the replicas of
    /// each shard hold as many rows of `table` as each other (a replica
    /// restarted after `kill -9` may detach parts it cannot vouch for and
    /// fetch them again after `SYSTEM SYNC REPLICA` returned), so counts
    /// through a `Distributed` table are whole.
    pub fn sync_replicas(&self, table: &str) -> Result<(), String> {
        for i in 0..self.nodes.len() {
            self.sync_replica(i, table)?;
        }
        let count = |i: usize| self.query(i, &format!("SELECT count() FROM {table}")).ok();
        let shards: std::collections::BTreeSet<usize> =
            self.nodes.iter().map(|n| n.shard).collect();
        for shard in shards {
            let members: Vec<usize> = (0..self.nodes.len())
                .filter(|i| self.nodes[*i].shard == shard)
                .collect();
            wait(
                Duration::from_secs(60),
                &format!("the replicas of shard {shard} to agree on {table}"),
                || {
                    let counts: Vec<Option<String>> = members.iter().map(|i| count(*i)).collect();
                    counts.iter().all(|c| c.is_some() && *c == counts[0])
                },
            )?;
        }
        Ok(())
    }

    /// `kill -9` of node `i`.
    pub fn kill9(&mut self, i: usize) {
        kill(&mut self.nodes[i].child);
    }

    /// Starts node `i` again (same config and data) and waits for it.
    ///
    /// After a `kill -9` a replica may hold parts it wrote but never
    /// registered in ZooKeeper; when they look like too many, ClickHouse
    /// refuses to attach the table and the server exits ("The local set of
    /// parts ... doesn't look like the set of parts in ZooKeeper", seen in
    /// CI as a node that never came back). The flag
    /// `flags/force_restore_data` is ClickHouse's documented recovery step
    /// for that: unexpected parts are detached, missing ones fetched from
    /// the other replica. Inserts the sink never saw confirmed are sent
    /// again by it, so what the tests check still holds.
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        kill(&mut self.nodes[i].child);
        let flags = self.nodes[i].dir.join("data").join("flags");
        std::fs::create_dir_all(&flags)
            .and_then(|()| std::fs::write(flags.join("force_restore_data"), b""))
            .map_err(|e| format!("{}: {e}", flags.display()))?;
        self.start_node(i)
    }

    /// Where the cluster keeps its files (logs included).
    pub fn dir(&self) -> &Path {
        self.root.path()
    }
}

fn query_port(port: u16, sql: &str) -> Result<String, String> {
    let out = Command::new("clickhouse-client")
        .args(["--port", &port.to_string(), "--query", sql])
        .output()
        .map_err(|e| format!("clickhouse-client: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            kill(&mut n.child);
        }
        kill(&mut self.zk);
    }
}
