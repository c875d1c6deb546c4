//! Change events from a real periodic campaign: a target that answers,
//! then refuses for three runs, then answers again, gives exactly two
//! events (down, then up), each with an onset interval that holds the
//! moment it was switched; over HTTP, gRPC and `vantagectl changes` alike.

use std::time::{Duration, SystemTime};

use serde_json::Value;
use vantage_proto::v1::query_service_client::QueryServiceClient;
use vantage_proto::v1::{watch_event, ChangesRequest, WatchRequest};

use crate::harness::*;
use crate::http::get;

async fn json(http: &str, path: &str) -> Value {
    let r = get(http, path).await;
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.json()
}

fn now_us() -> i64 {
    vantage_proto::now_us()
}

/// Accepts on `port` of 127.0.0.2 until the returned handle is aborted.
fn listen(port: u16) -> tokio::task::JoinHandle<()> {
    let l = std::net::TcpListener::bind(("127.0.0.2", port)).expect("bind the target");
    l.set_nonblocking(true).unwrap();
    let l = tokio::net::TcpListener::from_std(l).unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            drop(s);
        }
    })
}

/// A TCP target on 127.0.0.2 that a test closes and opens again between
/// the runs of a campaign.
pub(crate) struct Switched {
    pub(crate) port: u16,
    up: Option<tokio::task::JoinHandle<()>>,
}

impl Switched {
    /// Open, on a free port.
    pub(crate) fn open() -> Switched {
        let port = free_port_on_127_0_0_2();
        Switched {
            port,
            up: Some(listen(port)),
        }
    }

    /// After each `(runs, open)` of `plan`: once campaign `id` has that
    /// many runs done, opens or closes the target. The times it switched.
    pub(crate) async fn at_runs(
        &mut self,
        http: &str,
        id: &str,
        plan: &[(usize, bool)],
    ) -> Vec<i64> {
        let mut switched = Vec::new();
        for &(after_runs, open) in plan {
            until(
                Duration::from_secs(60),
                "the runs before the switch",
                || async { runs_done(http, id).await >= after_runs },
            )
            .await;
            if open {
                self.up = Some(listen(self.port));
            } else if let Some(h) = self.up.take() {
                h.abort();
                let _ = h.await;
            }
            switched.push(now_us());
        }
        switched
    }
}

/// A `[schedule]` of runs every 3 s, from `start_in_s` seconds from now
/// for `for_s` seconds.
pub(crate) fn every_3s(start_in_s: u64, for_s: u64) -> String {
    let now = SystemTime::now();
    let start = humantime::format_rfc3339_seconds(now + Duration::from_secs(start_in_s));
    let end = humantime::format_rfc3339_seconds(now + Duration::from_secs(start_in_s + for_s));
    format!("[schedule]\nevery = \"3s\"\nstart = \"{start}\"\nend = \"{end}\"\n")
}

pub(crate) async fn runs_done(http: &str, id: &str) -> usize {
    json(http, &format!("/api/v1/campaigns/{id}")).await["runs"]
        .as_array()
        .map(|runs| runs.iter().filter(|r| r["state"] == "done").count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_down_for_three_runs_gives_two_events_with_their_onsets() {
    let (c, http, _fleet) = http_fleet().await;
    let mut target = Switched::open();
    // A live watch from before the campaign gets the change events too.
    let mut watch = QueryServiceClient::new(c.admin_channel().await)
        .watch(WatchRequest::default())
        .await
        .expect("watch")
        .into_inner();
    let id = c.create_campaign(&campaign_spec(
        "changes",
        "2s",
        &every_3s(1, 25),
        &tcp_targets("127.0.0.2", &[target.port]),
    ));

    // Down after the third run, up again after the sixth.
    let switched = target.at_runs(&http, &id, &[(3, false), (6, true)]).await;
    until(Duration::from_secs(60), "every run", || async {
        json(&http, &format!("/api/v1/campaigns/{id}")).await["campaign"]["state"] == "done"
    })
    .await;
    assert_eq!(runs_done(&http, &id).await, 9);

    let page = json(&http, &format!("/api/v1/changes?campaign={id}")).await;
    let events = page["changes"].as_array().unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["change"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["down", "up"], "{page}");
    for (e, at) in events.iter().zip(&switched) {
        let (before, after) = (
            e["before_us"].as_i64().unwrap(),
            e["after_us"].as_i64().unwrap(),
        );
        assert!(
            before <= *at && *at <= after,
            "{at} not in [{before}, {after}]: {e}"
        );
        assert!(after - before < 6_000_000, "one run apart: {e}");
        assert_eq!(e["country"], "CN");
        assert_eq!(e["agents"].as_array().unwrap().len(), 2, "{e}");
        assert!(!e["evidence"].as_array().unwrap().is_empty());
    }
    assert_eq!(events[0]["from_status"], "ok");
    assert_eq!(events[0]["to_status"], "down");
    assert!(page["next_cursor"].is_null());

    // Filters and pages.
    let down = json(&http, &format!("/api/v1/changes?campaign={id}&change=down")).await;
    assert_eq!(down["changes"].as_array().unwrap().len(), 1);
    let first = json(&http, &format!("/api/v1/changes?campaign={id}&limit=1")).await;
    assert_eq!(first["changes"][0], events[0]);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second = json(
        &http,
        &format!("/api/v1/changes?campaign={id}&limit=1&cursor={cursor}"),
    )
    .await;
    assert_eq!(second["changes"][0], events[1]);
    assert!(second["next_cursor"].is_null());
    let later = json(
        &http,
        &format!("/api/v1/changes?since={}", events[1]["after_us"]),
    )
    .await;
    assert_eq!(later["changes"].as_array().unwrap().len(), 1);
    let bad = get(&http, "/api/v1/changes?change=sideways").await;
    assert_eq!(bad.status, 400, "{}", bad.body);

    // The watch sent each event once, as it happened.
    let mut live = Vec::new();
    while let Ok(Ok(Some(e))) = tokio::time::timeout(Duration::from_secs(3), watch.message()).await
    {
        if let Some(watch_event::Event::Change(c)) = e.event {
            live.push(c);
        }
    }
    assert_eq!(
        serde_json::to_value(&live).unwrap(),
        page["changes"],
        "the watch's change events"
    );

    // gRPC and vantagectl agree.
    let g = QueryServiceClient::new(c.admin_channel().await)
        .changes(ChangesRequest {
            campaign: id.clone(),
            ..Default::default()
        })
        .await
        .expect("changes")
        .into_inner();
    assert_eq!(serde_json::to_value(&g.changes).unwrap(), page["changes"]);
    let ctl = c.ctl_ok(&[
        "--output",
        "json",
        "changes",
        "--campaign",
        &id,
        "--since",
        "1h",
    ]);
    let ctl: Value = serde_json::from_str(&ctl).expect("json");
    assert_eq!(ctl, page["changes"]);
    let table = c.ctl_ok(&["changes", "--campaign", &id]);
    assert!(
        table.contains("ok -> down") && table.contains("down -> ok"),
        "{table}"
    );
}
