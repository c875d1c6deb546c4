//! The commit sequence (issue 20): results delivered late with ids older
//! than results already read (an agent's outbox after an outage) reach
//! the live stream, a resumed stream and an incremental sync, each once.
//! Before, readers followed result ids, and such a result was listed by
//! `/api/v1/results` but never streamed.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;
use crate::hostile::open_session;
use crate::http::{get, Ev, Sse};

/// Result events until `n` are in (verdict events are skipped).
async fn results(s: &mut Sse, n: usize) -> Vec<Ev> {
    s.results(n, Duration::from_secs(20)).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_results_with_older_ids_are_streamed_resumed_and_synced_once() {
    let c = Coordinator::init().with_http().start();
    let http = c.http.clone().unwrap();
    let dir = c.enroll_dirs(&["late"]).remove(0);
    let mut a = open_session(&c, &dir).await.expect("session");
    // Measured long ago, delivered last: their ids are the oldest.
    let late: Vec<_> = (0..8).map(|_| measurement(&a.agent_id)).collect();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let fresh: Vec<_> = (0..5).map(|_| measurement(&a.agent_id)).collect();

    let mut live = Sse::open(&http, "/api/v1/stream", &[]).await;
    // The feed polls every 500 ms: let it start at the live edge.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let batch = fresh.iter().map(|m| a.sign(m)).collect();
    assert_eq!(a.send(batch).await.expect("ack").accepted.len(), 5);
    let batch = late[..5].iter().map(|m| a.sign(m)).collect();
    assert_eq!(a.send(batch).await.expect("ack").accepted.len(), 5);

    // Live: all ten, in the order stored, each once.
    let got = results(&mut live, 10).await;
    let order: Vec<String> = fresh
        .iter()
        .chain(&late[..5])
        .map(|m| m.id.clone())
        .collect();
    assert_eq!(got.iter().map(Ev::result_id).collect::<Vec<_>>(), order);
    let seqs: Vec<u64> = got.iter().map(Ev::seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "dense: {seqs:?}");

    // Resume after the third: the other seven, then three more late ones
    // delivered while the resumed stream is open; nothing twice.
    let third = seqs[2].to_string();
    let mut resumed = Sse::open(&http, "/api/v1/stream", &[("Last-Event-ID", &third)]).await;
    let replay = results(&mut resumed, 7).await;
    assert_eq!(
        replay.iter().map(Ev::result_id).collect::<Vec<_>>(),
        order[3..].to_vec()
    );
    let batch = late[5..].iter().map(|m| a.sign(m)).collect();
    assert_eq!(a.send(batch).await.expect("ack").accepted.len(), 3);
    let more = results(&mut resumed, 3).await;
    let late_ids: Vec<String> = late[5..].iter().map(|m| m.id.clone()).collect();
    assert_eq!(more.iter().map(Ev::result_id).collect::<Vec<_>>(), late_ids);
    let live_more = results(&mut live, 3).await;
    assert_eq!(
        live_more.iter().map(Ev::result_id).collect::<Vec<_>>(),
        late_ids
    );
    for s in [&mut resumed, &mut live] {
        while let Some(e) = s.next(Duration::from_secs(2)).await {
            assert_ne!(e.event, "result", "sent twice: {e:?}");
        }
    }

    // An incremental sync from a saved position, four at a time: every
    // result once, in the order stored; a further page is empty and keeps
    // the position.
    let mut after = 0u64;
    let mut synced = Vec::new();
    loop {
        let page = get(&http, &format!("/api/v1/results?after_seq={after}&limit=4")).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let page: Value = page.json();
        let rows = page["results"].as_array().unwrap();
        let last = page["last_seq"].as_u64().expect("last_seq");
        if rows.is_empty() {
            assert_eq!(last, after, "an empty page keeps the position");
            break;
        }
        synced.extend(rows.iter().map(|r| r["id"].as_str().unwrap().to_string()));
        after = last;
    }
    let all: Vec<String> = order.iter().cloned().chain(late_ids.clone()).collect();
    assert_eq!(synced, all);
    assert_eq!(synced.iter().collect::<HashSet<_>>().len(), 13);
    // Id order (the cursor) lists the late ones first: the two orders differ.
    let by_id = get(&http, "/api/v1/results?limit=100").await.json();
    let first = by_id["results"][0]["id"].as_str().unwrap().to_string();
    assert!(late.iter().any(|m| m.id == first), "{first}");

    let both = get(
        &http,
        "/api/v1/results?after_seq=1&cursor=AAAAAAAAAAAAAAAAAAAAAA",
    )
    .await;
    assert_eq!(both.status, 400, "{}", both.body);
    assert!(both.body.contains("do not go together"), "{}", both.body);
}
