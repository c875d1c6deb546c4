//! The read-only HTTP face end to end: a real coordinator serving
//! `--http-listen`, real agents and campaigns, and a minimal HTTP/1.1 client
//! (chunked bodies and server-sent events included) over tokio sockets.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::harness::*;

// ------------------------------------------------------------ HTTP client

pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Resp {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Percent-encodes a query value.
pub(crate) fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = b.windows(2).position(|w| w == b"\r\n") else {
            panic!("truncated chunked body");
        };
        let size_text = String::from_utf8_lossy(&b[..nl]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .expect("chunk size");
        b = &b[nl + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

fn request_text(addr: &str, path: &str, headers: &[(&str, &str)], close: bool) -> String {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
    if close {
        req.push_str("Connection: close\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req
}

pub(crate) async fn get_with(addr: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut s = TcpStream::connect(addr)
        .await
        .expect("connect to the HTTP API");
    s.write_all(request_text(addr, path, headers, true).as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body: String::from_utf8(body).expect("UTF-8 body"),
    }
}

pub(crate) async fn get(addr: &str, path: &str) -> Resp {
    get_with(addr, path, &[]).await
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub(crate) struct Ev {
    pub(crate) event: String,
    /// For results: the commit sequence number.
    pub(crate) id: Option<String>,
    pub(crate) data: String,
}

impl Ev {
    /// The id of the result a `result` event carries.
    pub(crate) fn result_id(&self) -> String {
        let v: Value = serde_json::from_str(&self.data).expect("event data is JSON");
        v["id"].as_str().expect("a result id").to_string()
    }

    /// A `result` event's commit sequence number.
    pub(crate) fn seq(&self) -> u64 {
        self.id
            .as_deref()
            .and_then(|s| s.parse().ok())
            .expect("a numeric event id")
    }
}

/// A server-sent-events connection, decoding the chunked body as it comes.
pub(crate) struct Sse {
    r: BufReader<TcpStream>,
    pending: String,
}

impl Sse {
    pub(crate) async fn open(addr: &str, path: &str, headers: &[(&str, &str)]) -> Sse {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(request_text(addr, path, headers, false).as_bytes())
            .await
            .unwrap();
        let mut r = BufReader::new(s);
        let mut status = String::new();
        r.read_line(&mut status).await.unwrap();
        assert!(status.contains(" 200 "), "stream status: {status}");
        let mut saw_type = false;
        loop {
            let mut l = String::new();
            r.read_line(&mut l).await.unwrap();
            if l.to_ascii_lowercase()
                .starts_with("content-type: text/event-stream")
            {
                saw_type = true;
            }
            if l == "\r\n" || l.is_empty() {
                break;
            }
        }
        assert!(saw_type, "text/event-stream");
        Sse {
            r,
            pending: String::new(),
        }
    }

    async fn read_chunk(&mut self) {
        let mut size = String::new();
        self.r.read_line(&mut size).await.unwrap();
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        let mut buf = vec![0u8; n + 2];
        self.r.read_exact(&mut buf).await.unwrap();
        self.pending
            .push_str(&String::from_utf8_lossy(&buf[..n]).replace("\r\n", "\n"));
    }

    /// The next event (keep-alive comments skipped), or None on timeout.
    pub(crate) async fn next(&mut self, limit: Duration) -> Option<Ev> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                let mut ev = Ev {
                    event: "message".into(),
                    id: None,
                    data: String::new(),
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        ev.event = v.trim().to_string();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("id:") {
                        ev.id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        ev.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        any = true;
                    }
                }
                if any {
                    return Some(ev);
                }
                continue;
            }
            match tokio::time::timeout_at(deadline, self.read_chunk()).await {
                Ok(()) => {}
                Err(_) => return None,
            }
        }
    }

    /// `result` events until `want` of them arrived (others kept aside).
    pub(crate) async fn results(&mut self, want: usize, limit: Duration) -> (Vec<Ev>, Vec<Ev>) {
        let deadline = tokio::time::Instant::now() + limit;
        let (mut results, mut other) = (Vec::new(), Vec::new());
        while results.len() < want {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(e) = self.next(left).await else {
                panic!(
                    "only {} of {want} result events within {limit:?}",
                    results.len()
                );
            };
            if e.event == "result" {
                results.push(e);
            } else {
                other.push(e);
            }
        }
        (results, other)
    }
}

// ------------------------------------------------------------ fixtures

/// Creates a campaign (open port and closed port) and waits until done.
pub(crate) async fn campaign(c: &Coordinator, http: &str, closed: u16) -> String {
    let targets = tcp_targets("127.0.0.1", &[c.port(), closed]);
    let id = c.create_campaign(&campaign_spec("http-e2e", "4s", "", &targets));
    until(
        Duration::from_secs(40),
        "the campaign to be done",
        || async {
            get(http, &format!("/api/v1/campaigns/{id}")).await.json()["campaign"]["state"]
                == "done"
        },
    )
    .await;
    id
}

/// Every page of `/api/v1/results?{query}`, following the cursor.
async fn all_pages(http: &str, query: &str, limit: usize) -> (Vec<Value>, usize) {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/api/v1/results?limit={limit}");
        if !query.is_empty() {
            path.push('&');
            path.push_str(query);
        }
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", enc(c)));
        }
        let r = get(http, &path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let page = r.json();
        let items = page["results"].as_array().unwrap().clone();
        assert!(items.len() <= limit);
        pages += 1;
        out.extend(items);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return (out, pages),
        }
    }
}

fn ids(v: &[Value]) -> Vec<String> {
    v.iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

// ------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_serves_fleet_results_verdicts_aggregation_and_metrics() {
    let c = Coordinator::init().with_http().start();
    let http = c.http.clone().unwrap();
    let fleet = fleet(&c, 150).await;
    // A live stream opened before the campaign sees its results (after the
    // feed has moved past the filled results: it polls every 500 ms).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut live = Sse::open(&http, "/api/v1/stream", &[]).await;
    let closed = free_port();
    let id = campaign(&c, &http, closed).await;

    // Agents: labels, versions, connected; no addresses of any kind.
    let agents = get(&http, "/api/v1/agents").await;
    assert_eq!(agents.status, 200);
    assert!(agents.header("content-type").unwrap().contains("json"));
    let list = agents.json()["agents"].as_array().unwrap().clone();
    assert_eq!(list.len(), 3);
    for a in &list {
        assert_eq!(a["connected"], true, "{a}");
        assert!(a["last_seen_us"].as_i64().unwrap() > 0, "{a}");
        assert!(!a["software_version"].as_str().unwrap().is_empty());
        for k in a.as_object().unwrap().keys() {
            assert!(
                !k.contains("addr") && !k.contains("ip") && !k.contains("peer"),
                "{k}"
            );
        }
    }
    assert!(!agents.body.contains("127.0.0.1"), "{}", agents.body);
    let countries: HashSet<&str> = list
        .iter()
        .map(|a| a["country"].as_str().unwrap())
        .collect();
    assert_eq!(countries, HashSet::from(["CN", "DE"]));

    // Campaigns list and detail with runs.
    let camps = get(&http, "/api/v1/campaigns").await.json();
    let camp = &camps["campaigns"][0];
    assert_eq!(
        (camp["campaign_id"].as_str(), camp["runs_done"].as_u64()),
        (Some(id.as_str()), Some(1))
    );
    let detail = get(&http, &format!("/api/v1/campaigns/{id}")).await.json();
    assert_eq!(detail["runs"][0]["state"], "done");
    assert_eq!(detail["runs"][0]["groups"].as_array().unwrap().len(), 2);

    // Pagination: every stored result exactly once across pages.
    let stored = c.stats().await.results_stored as usize;
    assert_eq!(stored, 156, "150 filled + 2 targets x 3 agents");
    let (all, pages) = all_pages(&http, "", 40).await;
    assert_eq!(pages, 4);
    let all_ids = ids(&all);
    assert_eq!(all_ids.len(), stored);
    assert_eq!(
        all_ids.iter().collect::<HashSet<_>>().len(),
        stored,
        "no duplicates"
    );
    let mut sorted = all_ids.clone();
    sorted.sort();
    assert_eq!(sorted, all_ids, "oldest id first");
    let grpc_ids: HashSet<String> = c.result_ids().await.into_iter().collect();
    assert_eq!(all_ids.iter().cloned().collect::<HashSet<_>>(), grpc_ids);
    // The envelope is the one stored: it re-verifies with the agent's key.
    let r0 = all
        .iter()
        .find(|r| r["campaign_id"] == id.as_str())
        .unwrap();
    assert!(!r0["envelope"]["signature"].as_str().unwrap().is_empty());

    // Filters.
    let (by_campaign, _) = all_pages(&http, &format!("campaign={id}"), 4).await;
    assert_eq!(by_campaign.len(), 6);
    assert!(by_campaign.iter().all(|r| r["campaign_id"] == id.as_str()));
    let ctl = &fleet[2].id;
    let (by_agent, _) = all_pages(&http, &format!("agent={ctl}"), 100).await;
    assert_eq!(by_agent.len(), 2);
    let (de, _) = all_pages(&http, "country=de", 100).await;
    assert_eq!(
        ids(&de).into_iter().collect::<HashSet<_>>(),
        ids(&by_agent).into_iter().collect()
    );
    let (asn, _) = all_pages(&http, "asn=4134", 100).await;
    assert_eq!(asn.len(), 6, "synthetic results carry no labels");
    let (refused, _) = all_pages(&http, "failure=connection_refused", 100).await;
    assert_eq!(refused.len(), 3);
    let target = format!("tcp 127.0.0.1:{closed}");
    let (by_target, _) = all_pages(&http, &format!("target={}", enc(&target)), 100).await;
    assert_eq!(ids(&by_target), ids(&refused));
    let (tcp, _) = all_pages(&http, "kind=tcp", 1000).await;
    assert_eq!(tcp.len(), stored);
    let (none, _) = all_pages(&http, "kind=dns", 1000).await;
    assert!(none.is_empty());
    let (future, _) = all_pages(&http, "since=2999-01-01", 1000).await;
    assert!(future.is_empty());
    let (past, _) = all_pages(&http, "since=2020-01-01T00:00:00Z&until=2999-01-01", 1000).await;
    assert_eq!(past.len(), stored);

    // Bad parameters: 400 with a sentence, never a panic.
    for (path, word) in [
        ("/api/v1/results?limit=abc", "limit"),
        ("/api/v1/results?limit=0", "limit"),
        ("/api/v1/results?limit=999999", "limit"),
        ("/api/v1/results?country=China", "country"),
        ("/api/v1/results?cursor=!!", "cursor"),
        ("/api/v1/results?campaign=nope", "campaign"),
        ("/api/v1/results?since=yesterday", "since"),
        ("/api/v1/results?since=2024-02-01&until=2024-01-01", "since"),
        ("/api/v1/results?kind=ftp", "kind"),
        ("/api/v1/results?colour=red", "colour"),
        ("/api/v1/results?asn=-1", "asn"),
        ("/api/v1/results?kind=tcp&kind=dns", "twice"),
        ("/api/v1/results?%ZZ=1", "parameter"),
        ("/api/v1/verdicts?status=bogus", "status"),
        ("/api/v1/aggregation", "axis_x"),
        ("/api/v1/aggregation?axis_x=planet", "axis_x"),
        (
            "/api/v1/aggregation?axis_x=country&axis_y=country",
            "differ",
        ),
        ("/api/v1/aggregation?axis_x=country&format=xml", "format"),
        ("/api/v1/campaigns/not-a-uuid", "UUID"),
        ("/api/v1/stream?last_event_id=zzz", "Last-Event-ID"),
    ] {
        let r = get(&http, path).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(msg.contains(word) && msg.len() > 15, "{path}: {msg}");
        assert_eq!(r.json()["code"], "invalid_argument", "{path}");
    }
    let missing = get(
        &http,
        "/api/v1/campaigns/0190c0de-0000-7000-8000-000000000000",
    )
    .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["code"], "not_found");
    assert!(missing.json()["error"]
        .as_str()
        .unwrap()
        .contains("no campaign"));
    let nothing = get(&http, "/api/v1/nothing").await;
    assert_eq!(
        (nothing.status, nothing.json()["code"].as_str()),
        (404, Some("not_found"))
    );

    // Verdicts and their filters.
    let v = get(&http, &format!("/api/v1/verdicts?campaign={id}"))
        .await
        .json();
    let rows = v["verdicts"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{v}");
    let ok = get(&http, "/api/v1/verdicts?status=ok&country=CN")
        .await
        .json();
    assert_eq!(ok["verdicts"].as_array().unwrap().len(), 2);
    let down = get(
        &http,
        &format!("/api/v1/verdicts?status=down&target={}", enc(&target)),
    )
    .await
    .json();
    assert_eq!(down["verdicts"].as_array().unwrap().len(), 2);
    let mech = get(&http, "/api/v1/verdicts?mechanism=none").await.json();
    assert_eq!(mech["verdicts"].as_array().unwrap().len(), 4);
    assert_eq!(
        get(&http, "/api/v1/verdicts?country=DE").await.json()["verdicts"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // Aggregation: JSON and CSV agree.
    let q = "/api/v1/aggregation?axis_x=target&axis_y=country";
    let j = get(&http, q).await.json();
    let cells = j["result"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    let csv = get(&http, &format!("{q}&format=csv")).await;
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(
        lines[0],
        "target,country,ok_count,blocked_count,down_count,inconclusive_count,measurement_count"
    );
    assert_eq!(lines.len(), cells.len() + 1);
    for (cell, line) in cells.iter().zip(&lines[1..]) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f[0], cell["x"].as_str().unwrap());
        assert_eq!(f[1], cell["y"].as_str().unwrap());
        for (i, k) in [
            "ok_count",
            "blocked_count",
            "down_count",
            "inconclusive_count",
            "measurement_count",
        ]
        .iter()
        .enumerate()
        {
            assert_eq!(
                f[2 + i].parse::<u64>().unwrap(),
                cell[k].as_u64().unwrap(),
                "{line}"
            );
        }
    }
    let total: u64 = cells
        .iter()
        .map(|c| c["measurement_count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 4);
    let by_day = get(&http, "/api/v1/aggregation?axis_x=day&axis_y=mechanism")
        .await
        .json();
    assert_eq!(by_day["result"][0]["y"], "none");
    assert_eq!(by_day["result"][0]["x"].as_str().unwrap().len(), 10);

    // The live stream saw the campaign's six results and its verdicts.
    let want: HashSet<String> = ids(&by_campaign).into_iter().collect();
    let mut seen_ids = HashSet::new();
    let mut verdict_events = Vec::new();
    while !want.is_subset(&seen_ids) {
        let e = live
            .next(Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("live stream stalled; saw {seen_ids:?}"));
        if e.event == "result" {
            assert!(seen_ids.insert(e.result_id()), "{e:?} twice");
        } else {
            verdict_events.push(e);
        }
    }
    assert_eq!(seen_ids, want, "a fresh stream sends only new results");
    while let Some(e) = live.next(Duration::from_secs(3)).await {
        verdict_events.push(e);
    }
    assert!(
        verdict_events.iter().any(|e| e.event == "verdict"
            && serde_json::from_str::<Value>(&e.data).unwrap()["campaign_id"] == id.as_str()),
        "{verdict_events:?}"
    );

    // Resume: replay everything stored after an event (its commit sequence
    // number), in the order stored, then live, without duplicates; the
    // same results, in the same order, as an incremental sync from it.
    let from = 100u64;
    let sync = get(
        &http,
        &format!("/api/v1/results?after_seq={from}&limit=1000"),
    )
    .await
    .json();
    let want_replay = ids(sync["results"].as_array().unwrap());
    assert_eq!(
        want_replay.len(),
        stored - from as usize,
        "{}",
        sync["last_seq"]
    );
    let mut resumed = Sse::open(
        &http,
        "/api/v1/stream",
        &[("Last-Event-ID", &from.to_string())],
    )
    .await;
    let (replayed, _) = resumed
        .results(want_replay.len(), Duration::from_secs(20))
        .await;
    let replay_ids: Vec<String> = replayed.iter().map(Ev::result_id).collect();
    assert_eq!(
        replay_ids, want_replay,
        "stored results after the event, in the order stored"
    );
    let seqs: Vec<u64> = replayed.iter().map(Ev::seq).collect();
    let dense: Vec<u64> = (from + 1..=from + seqs.len() as u64).collect();
    assert_eq!(seqs, dense, "sequence numbers are dense and increasing");
    assert_eq!(sync["last_seq"].as_u64(), seqs.last().copied());
    let port = c.port();
    c.ctl_ok(&[
        "dispatch",
        &format!(r#"{{"tcp":{{"host":"127.0.0.1","port":{port}}}}}"#),
    ]);
    let (new, _) = resumed.results(3, Duration::from_secs(30)).await;
    let new_ids: Vec<String> = new.iter().map(Ev::result_id).collect();
    for n in &new_ids {
        assert!(
            !replay_ids.contains(n) && !all_ids.contains(n),
            "{n} sent twice"
        );
    }
    assert_eq!(new_ids.iter().collect::<HashSet<_>>().len(), 3);
    // Nothing more arrives (no duplicates of the three).
    while let Some(e) = resumed.next(Duration::from_secs(2)).await {
        assert_ne!(e.event, "result", "unexpected extra result {e:?}");
    }
    // Resuming from the newest event replays nothing.
    let last = new.iter().map(Ev::seq).max().unwrap().to_string();
    let mut quiet = Sse::open(&http, "/api/v1/stream", &[("Last-Event-ID", &last)]).await;
    if let Some(e) = quiet.next(Duration::from_secs(2)).await {
        assert_ne!(e.event, "result", "replayed past the newest event: {e:?}");
    }

    // OpenAPI lists the paths.
    let doc = get(&http, "/api/v1/openapi.json").await.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    // Which ones: the unit test in http/openapi.rs; that they describe the
    // API: the e2e test openapi (Schemathesis).
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 10, "{:?}", paths.keys());

    // Metrics with plausible values.
    let m = get(&http, "/metrics").await;
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    let value = |name: &str| -> f64 {
        m.body
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{}", m.body))
    };
    assert_eq!(value("vantage_agents_connected"), 3.0);
    assert_eq!(value("vantage_agents_enrolled"), 3.0);
    assert_eq!(value("vantage_results_stored"), (stored + 3) as f64);
    assert!(value("vantage_store_size_bytes") > 0.0);
    assert!(value("vantage_task_assignments{state=\"done\"}") >= 6.0);
    for line in [
        "# TYPE vantage_results_rejected_total counter",
        "# TYPE vantage_ingest_batch_seconds histogram",
        "vantage_task_assignments{state=\"pending\"}",
        "vantage_task_assignments{state=\"expired\"}",
    ] {
        assert!(m.body.contains(line), "{line} missing:\n{}", m.body);
    }

    // The dashboard page is served and reads the API.
    let page = get(&http, "/").await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page.body.contains("\"/api/v1\""));
    for needle in [
        "\"/agents\"",
        "\"/stream\"",
        "\"/verdicts\"",
        "\"/campaigns\"",
        "/changes?",
    ] {
        assert!(
            page.body.contains(needle),
            "dashboard does not use {needle}"
        );
    }
    assert!(c.log_text().contains("HTTP API and dashboard serving"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_needs_a_read_token_and_rate_limits_each() {
    let c = Coordinator::init().with_http();
    let token = "read-token-for-tests-0123456789";
    c.set_read_tokens(&[token]);
    c.set_config("http_rate_per_minute", "5");
    let c = c.start();
    let http = c.http.clone().unwrap();
    let auth = format!("Bearer {token}");

    let none = get(&http, "/api/v1/agents").await;
    assert_eq!(none.status, 401, "{}", none.body);
    assert_eq!(none.json()["code"], "unauthenticated");
    assert!(none.json()["error"]
        .as_str()
        .unwrap()
        .contains("read token"));
    assert!(none
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));
    let wrong = get_with(&http, "/api/v1/agents", &[("Authorization", "Bearer nope")]).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(get(&http, "/metrics").await.status, 401);
    assert_eq!(get(&http, "/api/v1/sink").await.status, 401);
    assert_eq!(get(&http, "/api/v1/stream").await.status, 401);
    // The page and the API description carry no data and need no token.
    assert_eq!(get(&http, "/").await.status, 200);
    assert_eq!(get(&http, "/api/v1/openapi.json").await.status, 200);

    for i in 0..5 {
        let r = get_with(&http, "/api/v1/agents", &[("Authorization", &auth)]).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
    }
    let limited = get_with(&http, "/metrics", &[("Authorization", &auth)]).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert_eq!(limited.json()["code"], "resource_exhausted");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(limited.json()["error"]
        .as_str()
        .unwrap()
        .contains("rate limit"));
    // Refusals are counted (the metrics read below waits for a token).
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let m = get_with(&http, "/metrics", &[("Authorization", &auth)]).await;
    assert_eq!(m.status, 200, "{}", m.body);
    assert!(
        m.body
            .contains("vantage_http_refused_total{reason=\"rate_limited\"} 1"),
        "{}",
        m.body
    );
}

#[test]
fn http_api_without_tokens_refuses_a_non_loopback_listener() {
    let c = Coordinator::init();
    let out = std::process::Command::new(coordinator_bin())
        .args(["serve", "--data-dir"])
        .arg(&c.dir)
        .args(["--http-listen", &format!("0.0.0.0:{}", free_port())])
        .output()
        .expect("run serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("read_tokens") && err.contains("loopback"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_check() {
    let name = "metrics_pass_promtool_check";
    let Some(promtool) = crate::dashboard::debian_tool(name, &["promtool"], "prometheus") else {
        return;
    };
    let c = Coordinator::init().with_http().start();
    let http = c.http.clone().unwrap();
    let _fleet = fleet(&c, 40).await;
    let closed = free_port();
    campaign(&c, &http, closed).await;
    let m = get(&http, "/metrics").await;
    assert_eq!(m.status, 200);
    assert!(m.body.contains("vantage_results_stored 46"), "{}", m.body);
    let path = c.root.path().join("metrics.txt");
    std::fs::write(&path, &m.body).unwrap();
    let out = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&path).unwrap())
        .output()
        .expect("run promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics ({}): {said}\n{}",
        out.status,
        m.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_parquet_round_trips_against_the_store() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    use std::collections::HashMap;

    let c = Coordinator::init().with_http().start();
    let http = c.http.clone().unwrap();
    let _fleet = fleet(&c, 25).await;
    let closed = free_port();
    let id = campaign(&c, &http, closed).await;
    let port = c.port();

    let file = c.root.path().join("export.parquet");
    let out = c.ctl(&[
        "export",
        &id,
        "--format",
        "parquet",
        "-o",
        &file.to_string_lossy(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("exported 6 results"), "{err}");
    let size = std::fs::metadata(&file).unwrap().len();

    // The store's view of the campaign: every result, decoded.
    let keys: HashMap<String, ed25519_dalek::VerifyingKey> = c
        .agents()
        .await
        .iter()
        .map(|a| {
            let pk: [u8; 32] = a.public_key.as_slice().try_into().unwrap();
            (
                a.agent_id.clone(),
                ed25519_dalek::VerifyingKey::from_bytes(&pk).unwrap(),
            )
        })
        .collect();
    let stored: HashMap<
        String,
        (
            vantage_proto::v1::StoredResult,
            vantage_proto::v1::Measurement,
        ),
    > = c
        .results()
        .await
        .into_iter()
        .filter_map(|sr| {
            let m = vantage_proto::envelope::decode(sr.envelope.as_ref().unwrap()).unwrap();
            (m.campaign_id == id).then(|| (m.id.clone(), (sr, m)))
        })
        .collect();
    assert_eq!(stored.len(), 6, "2 targets x 3 agents");

    let reader = SerializedFileReader::new(std::fs::File::open(&file).unwrap()).unwrap();
    assert_eq!(reader.metadata().file_metadata().num_rows(), 6);
    let columns: Vec<String> = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    assert_eq!(
        columns,
        [
            "id",
            "agent_id",
            "country",
            "asn",
            "kind",
            "target",
            "name",
            "start_us",
            "end_us",
            "failure",
            "campaign_id",
            "run_id",
            "task_id",
            "received_us",
            "measurement",
            "signature"
        ]
    );
    let mut seen = std::collections::HashSet::new();
    for row in reader.get_row_iter(None).unwrap() {
        let row: HashMap<String, Field> = row
            .unwrap()
            .get_column_iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let text = |k: &str| match &row[k] {
            Field::Str(s) => s.clone(),
            other => panic!("{k}: {other:?}"),
        };
        let time = |k: &str| match &row[k] {
            Field::TimestampMicros(t) => *t,
            other => panic!("{k}: {other:?}"),
        };
        let bytes = |k: &str| match &row[k] {
            Field::Bytes(b) => b.data().to_vec(),
            other => panic!("{k}: {other:?}"),
        };
        let mid = text("id");
        let (sr, m) = stored
            .get(&mid)
            .unwrap_or_else(|| panic!("{mid} is not in the store"));
        assert!(seen.insert(mid.clone()), "{mid} twice");
        let labels = m.labels.clone().unwrap_or_default();
        assert_eq!(text("agent_id"), sr.agent_id);
        assert_eq!(text("country"), labels.country);
        assert!(labels.country == "CN" || labels.country == "DE");
        assert_eq!(row["asn"], Field::Long(4134));
        assert_eq!(text("kind"), "tcp");
        assert_eq!(
            (text("campaign_id"), text("run_id"), text("task_id")),
            (m.campaign_id.clone(), m.run_id.clone(), m.task_id.clone())
        );
        assert_eq!(time("start_us"), m.start_us);
        assert_eq!(time("end_us"), m.end_us);
        assert_eq!(time("received_us"), sr.received_us);
        let target = text("target");
        if target == format!("tcp 127.0.0.1:{closed}") {
            assert_eq!(text("failure"), "connection_refused");
        } else {
            assert_eq!(target, format!("tcp 127.0.0.1:{port}"));
            assert_eq!(row["failure"], Field::Null);
        }
        // The envelope exactly as stored, re-verifiable with the agent's key.
        let env = vantage_proto::v1::SignedResult {
            measurement: bytes("measurement").into(),
            signature: bytes("signature").into(),
        };
        assert_eq!(&env, sr.envelope.as_ref().unwrap());
        vantage_proto::envelope::verify(&keys[&sr.agent_id], &env).unwrap();
    }
    assert_eq!(seen.len(), 6);
    eprintln!("parquet export: 6 rows, {size} bytes");

    // Binary output refuses a terminal only; to a pipe it is the same file.
    let piped = c.ctl(&["export", &id, "--format", "parquet"]);
    assert!(piped.status.success());
    assert_eq!(piped.stdout, std::fs::read(&file).unwrap());
}

/// `/api/v1/sink`, which the dashboard's badge reads: nothing configured
/// without `[sink.clickhouse]` (results stored or not); with one whose
/// ClickHouse cannot be reached, every stored result is lag and the error
/// names the URL. No ClickHouse server is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_reports_the_sink_lag_for_the_dashboard_badge() {
    let mut c = Coordinator::init().with_http().start();
    let http = c.http.clone().unwrap();
    let mut agents = c.enroll_agents(&[("sink-a", "CN", "")]);
    agents[0].fill(7);
    agents[0].start();
    until(
        Duration::from_secs(30),
        "the filled outbox stored",
        || async { c.stats().await.results_stored >= 7 },
    )
    .await;
    let stored = c.stats().await.results_stored;
    assert_eq!(stored, 7);

    let none = get(&http, "/api/v1/sink").await;
    assert_eq!(none.status, 200, "{}", none.body);
    assert!(none.header("content-type").unwrap().contains("json"));
    let v = none.json();
    assert_eq!(v["configured"], false, "{v}");
    for k in ["cursor", "last_seq", "lag_results", "rows", "errors"] {
        assert_eq!(v[k], 0, "{k}: {v}");
    }
    assert_eq!(v["lag_seconds"], 0.0, "{v}");
    for k in ["name", "coordinator_id", "last_error"] {
        assert_eq!(v[k], "", "{k}: {v}");
    }
    // Parameters are refused as on every other read.
    assert_eq!(get(&http, "/api/v1/sink?x=1").await.status, 400);

    // The page carries the badge and reads it.
    let page = get(&http, "/").await;
    assert!(page.body.contains("id=\"sink-badge\""), "no badge element");
    assert!(page.body.contains("getJSON(\"/sink\")"), "badge not read");

    // The same store with a sink to a port nothing listens on (the agent
    // goes first: its open session would hold up a graceful stop).
    drop(agents);
    c.terminate();
    let url = format!("http://127.0.0.1:{}", free_port());
    c.add_config_table(&format!("[sink.clickhouse]\nurls = [\"{url}\"]"));
    c.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let v = loop {
        let v = get(&http, "/api/v1/sink").await.json();
        if !v["last_error"].as_str().unwrap_or_default().is_empty() {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sink reported no failure: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(v["configured"], true, "{v}");
    assert_eq!(v["name"], "clickhouse", "{v}");
    assert!(!v["coordinator_id"].as_str().unwrap().is_empty(), "{v}");
    assert_eq!(v["cursor"], 0, "{v}");
    assert_eq!(v["last_seq"], stored, "{v}");
    assert_eq!(v["lag_results"], stored, "{v}");
    assert!(v["lag_seconds"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["rows"], 0, "{v}");
    assert!(v["errors"].as_u64().unwrap() >= 1, "{v}");
    let error = v["last_error"].as_str().unwrap();
    assert!(error.contains(&url), "{error}");
    // gRPC stats say the same.
    let grpc = c.stats().await.sink.expect("a sink in stats");
    assert_eq!(grpc.lag_results, stored);
    assert_eq!(grpc.coordinator_id, v["coordinator_id"].as_str().unwrap());
}
