//! Webhooks (issue 21) against a real HTTP receiver written here: it is
//! down for the whole campaign, the coordinator is killed with SIGKILL
//! while the deliveries wait, and when the receiver comes up it answers
//! 500, then too slowly, then 200. Every change event still arrives, with
//! a signature the receiver checks with its own HMAC, and the same
//! idempotency key on every attempt.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::changes::{every_3s, runs_done, Switched};
use crate::harness::*;
use crate::http::get;

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Got {
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
    answered: u16,
}

/// A small HTTP/1.1 receiver: the first `fail` requests get a 500, the
/// next `slow` get their 200 after `delay`, the rest a 200 at once.
#[derive(Clone)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
}

async fn read_request(
    s: &mut tokio::net::TcpStream,
) -> Option<(String, BTreeMap<String, String>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_string();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = buf[end + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((path, headers, body))
}

impl Receiver {
    fn start(port: u16, fail: usize, slow: usize, delay: Duration) -> Receiver {
        let r = Receiver {
            got: Default::default(),
        };
        let l = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver");
        l.set_nonblocking(true).unwrap();
        let l = tokio::net::TcpListener::from_std(l).unwrap();
        let got = r.got.clone();
        tokio::spawn(async move {
            let n = Arc::new(Mutex::new(0usize));
            while let Ok((mut s, _)) = l.accept().await {
                let (got, n) = (got.clone(), n.clone());
                tokio::spawn(async move {
                    let Some((path, headers, body)) = read_request(&mut s).await else {
                        return;
                    };
                    let k = {
                        let mut n = n.lock().unwrap();
                        *n += 1;
                        *n
                    };
                    let status = if k <= fail {
                        500
                    } else {
                        if k <= fail + slow {
                            tokio::time::sleep(delay).await;
                        }
                        200
                    };
                    got.lock().unwrap().push(Got {
                        path,
                        headers,
                        body,
                        answered: status,
                    });
                    let text = if status == 200 {
                        "OK"
                    } else {
                        "Internal Server Error"
                    };
                    let answer = format!(
                        "HTTP/1.1 {status} {text}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno"
                    );
                    let _ = s.write_all(answer.as_bytes()).await;
                });
            }
        });
        r
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

/// The receiver's own check of `Vantage-Signature` (not the
/// coordinator's code): t=..,k=..,v1=hex(HMAC-SHA256(secret, "t.body")).
fn signed(secret: &[u8], headers: &BTreeMap<String, String>, body: &[u8]) -> bool {
    let Some(sig) = headers.get("vantage-signature") else {
        return false;
    };
    let parts: BTreeMap<&str, &str> = sig.split(',').filter_map(|p| p.split_once('=')).collect();
    let (Some(t), Some(v1)) = (parts.get("t"), parts.get("v1")) else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if (now - t.parse::<i64>().unwrap_or(0)).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    hex::decode(v1).is_ok_and(|v| mac.verify_slice(&v).is_ok())
}

fn hooks(c: &Coordinator) -> Vec<Value> {
    c.ctl_json(&["webhook", "list"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_event_reaches_a_receiver_that_was_down_failing_and_slow_across_a_kill_9() {
    let c = Coordinator::init().with_http();
    c.set_config("http_rate_per_minute", "0");
    c.add_config_table("[webhooks]\nretry_base_ms = 200\nretry_max_ms = 1000\ntimeout_ms = 1500\n");
    let mut c = c.start();
    let http = c.http.clone().unwrap();
    let _fleet = fleet(&c, 0).await;

    // A target refused for runs 4 to 6 of 9: two change events.
    let mut target = Switched::open();
    let id = c.create_campaign(&campaign_spec(
        "webhooks",
        "2s",
        &every_3s(4, 25),
        &tcp_targets("127.0.0.2", &[target.port]),
    ));

    // Subscribed before the first run; the receiver is not listening yet.
    let rport = free_port();
    let url = format!("http://127.0.0.1:{rport}/hook");
    let added = c.ctl_json(&["webhook", "add", &url, "--campaign", &id]);
    let hook_id = added["webhook"]["id"].as_str().unwrap().to_string();
    let secret = hex::decode(added["secret"].as_str().unwrap()).unwrap();
    assert_eq!(secret.len(), 32);
    // One whose filter matches nothing here, and bad input refused.
    let other = format!("http://127.0.0.1:{rport}/iran");
    c.ctl_json(&["webhook", "add", &other, "--country", "IR"]);
    for bad in [
        vec!["webhook", "add", "ftp://127.0.0.1/x"],
        vec!["webhook", "add", &url, "--change", "sideways"],
        vec!["webhook", "add", &url, "--country", "China"],
        vec![
            "webhook",
            "add",
            &url,
            "--campaign",
            "0190a3c4-0000-7000-8000-000000000000",
        ],
        vec!["webhook", "remove", "0190a3c4-0000-7000-8000-000000000000"],
    ] {
        let out = c.ctl(&bad);
        assert!(!out.status.success(), "{bad:?} accepted");
    }
    let ping = c.ctl_ok(&["webhook", "test", &hook_id]);
    assert!(ping.contains("queued ping"), "{ping}");

    target.at_runs(&http, &id, &[(3, false), (6, true)]).await;
    until(Duration::from_secs(60), "every run", || async {
        runs_done(&http, &id).await >= 9
    })
    .await;
    let events = get(&http, &format!("/api/v1/changes?campaign={id}"))
        .await
        .json()["changes"]
        .as_array()
        .cloned()
        .unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["change"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["down", "up"]);
    for e in &events {
        assert_eq!(e["revision"], 1, "{e}");
        assert_eq!(e["event_id"].as_str().unwrap().len(), 32, "{e}");
    }
    // Queued (the ping and both events), each already tried and failed.
    until(
        Duration::from_secs(30),
        "three failing deliveries queued",
        || async {
            hooks(&c)
                .iter()
                .any(|h| h["id"] == hook_id.as_str() && h["pending"] == 3)
        },
    )
    .await;
    let h = hooks(&c)
        .into_iter()
        .find(|h| h["id"] == hook_id.as_str())
        .unwrap();
    assert!(h["failed_attempts"].as_u64().unwrap() >= 3, "{h}");
    assert!(h["last_error"].as_str().unwrap().contains("connect"), "{h}");
    assert_eq!(h["delivered"], 0);

    // SIGKILL with everything undelivered; the queue is in the store.
    c.kill9();
    c.restart();
    // Up at last: two 500s, one answer slower than the timeout, then 200s.
    let rx = Receiver::start(rport, 2, 1, Duration::from_millis(2_500));
    until(Duration::from_secs(60), "every delivery done", || async {
        hooks(&c)
            .iter()
            .any(|h| h["id"] == hook_id.as_str() && h["pending"] == 0)
    })
    .await;

    let got = rx.got();
    assert!(
        got.iter().all(|g| g.path == "/hook"),
        "only the matching webhook"
    );
    assert_eq!(got.iter().filter(|g| g.answered == 500).count(), 2);
    // By idempotency key: what the receiver acted on (first 200 each).
    let mut by_key: BTreeMap<String, Vec<&Got>> = BTreeMap::new();
    for g in &got {
        assert!(signed(&secret, &g.headers, &g.body), "bad signature: {g:?}");
        assert_eq!(g.headers["content-type"], "application/json");
        let body: Value = serde_json::from_slice(&g.body).unwrap();
        assert_eq!(g.headers["vantage-delivery"], body["id"].as_str().unwrap());
        by_key
            .entry(body["id"].as_str().unwrap().into())
            .or_default()
            .push(g);
    }
    assert_eq!(by_key.len(), 3, "ping and two events: {:?}", by_key.keys());
    let mut delivered_events = Vec::new();
    for (key, tries) in &by_key {
        // Every attempt of one delivery sent the same bytes.
        assert!(tries.windows(2).all(|w| w[0].body == w[1].body), "{key}");
        assert!(
            tries.iter().any(|g| g.answered == 200),
            "{key} never accepted"
        );
        let body: Value = serde_json::from_slice(&tries[0].body).unwrap();
        assert_eq!(body["webhook"], hook_id.as_str());
        match body["type"].as_str().unwrap() {
            "ping" => assert!(body["event"].is_null()),
            "change.created" => {
                assert_eq!(
                    *key,
                    format!("{}.1", body["event"]["event_id"].as_str().unwrap())
                );
                delivered_events.push(body["event"].clone());
            }
            t => panic!("unexpected delivery type {t}"),
        }
    }
    delivered_events.sort_by_key(|e| e["after_us"].as_i64());
    assert_eq!(delivered_events, events, "the events as the API lists them");

    let h = hooks(&c)
        .into_iter()
        .find(|h| h["id"] == hook_id.as_str())
        .unwrap();
    assert!(h["delivered"].as_u64().unwrap() >= 3, "{h}");
    assert_eq!(h["dead"], 0, "{h}");
    let metrics = get(&http, "/metrics").await.body;
    assert!(
        metrics.contains("vantage_events_total{name=\"webhook_delivered\"}"),
        "{metrics}"
    );

    // Removed: nothing more to it.
    let out = c.ctl_ok(&["webhook", "remove", &hook_id]);
    assert!(out.contains("removed"), "{out}");
    assert!(hooks(&c).iter().all(|h| h["id"] != hook_id.as_str()));
}
