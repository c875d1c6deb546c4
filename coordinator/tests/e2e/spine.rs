//! The spine: enrollment, sessions, signed results, durable store, outbox.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use prost::Message;
use tokio_stream::wrappers::ReceiverStream;
use vantage_proto::client::{connect, ClientIdentity};
use vantage_proto::envelope;
use vantage_proto::v1::agent_service_client::AgentServiceClient;
use vantage_proto::v1::*;

use crate::harness::*;

fn keys(agents: &[AgentInfo]) -> HashMap<String, VerifyingKey> {
    agents
        .iter()
        .map(|a| {
            let pk: [u8; 32] = a.public_key.as_slice().try_into().expect("32-byte key");
            (
                a.agent_id.clone(),
                VerifyingKey::from_bytes(&pk).expect("key"),
            )
        })
        .collect()
}

/// Checks every stored envelope against its agent's key and returns the ids;
/// panics on a duplicate or a signature that does not verify.
async fn verified_ids(c: &Coordinator) -> Vec<String> {
    let keys = keys(&c.agents().await);
    let mut seen = HashSet::new();
    let mut ids = Vec::new();
    for r in c.results().await {
        let env = r.envelope.expect("envelope");
        let m = envelope::decode(&env).expect("decodes");
        assert_eq!(m.agent_id, r.agent_id, "stored under the signing agent");
        envelope::verify(&keys[&r.agent_id], &env).expect("stored signature verifies");
        assert!(seen.insert(m.id.clone()), "result {} stored twice", m.id);
        ids.push(m.id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_run_and_store_exactly_what_was_signed() {
    let c = Coordinator::init().start();
    let token = c.token(2, "1h");
    let mut a1 = Agent::enroll(&c, "a1", &token).expect("enroll a1");
    let mut a2 = Agent::enroll(&c, "a2", &token).expect("enroll a2");
    a1.start();
    a2.start();
    until(Duration::from_secs(20), "both agents connected", || async {
        c.agents().await.iter().filter(|a| a.connected).count() == 2
    })
    .await;

    let target = format!(
        r#"{{"tcp":{{"host":"127.0.0.1","port":{}}}}}"#,
        c.addr.rsplit(':').next().unwrap()
    );
    let mut tasks = HashSet::new();
    for _ in 0..3 {
        let out = c.ctl(&["dispatch", &target]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        tasks.insert(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    until(Duration::from_secs(30), "6 results", || async {
        c.results().await.len() == 6
    })
    .await;

    let ids = verified_ids(&c).await;
    assert_eq!(ids.len(), 6);
    let mut pairs = HashSet::new();
    for r in c.results().await {
        let m = envelope::decode(r.envelope.as_ref().unwrap()).unwrap();
        assert!(
            tasks.contains(&m.task_id),
            "result for an unknown task {}",
            m.task_id
        );
        assert!(
            pairs.insert((m.task_id.clone(), m.agent_id.clone())),
            "two results for one task and agent"
        );
        match m.result {
            Some(measurement::Result::Tcp(t)) => {
                assert_eq!(t.failure, None, "the coordinator port accepts TCP");
                assert_eq!(t.ip, "127.0.0.1");
            }
            other => panic!("expected a tcp result, got {other:?}"),
        }
        assert_eq!(m.labels.unwrap_or_default().country, "CN");
    }
    assert!([&a1.id, &a2.id]
        .iter()
        .all(|id| pairs.iter().filter(|(_, a)| a == *id).count() == 3));
    let agents = c.ctl(&["agents"]);
    let table = String::from_utf8_lossy(&agents.stdout);
    assert!(
        table.contains(&a1.id) && table.contains("AS4134"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_logged_with_their_reason() {
    let c = Coordinator::init().start();

    // Used-up token.
    let once = c.token(1, "1h");
    let mut a1 = Agent::enroll(&c, "a1", &once).expect("first use works");
    let e = Agent::enroll(&c, "a2", &once)
        .map(|_| ())
        .expect_err("second use refused");
    assert!(e.contains("token used up"), "{e}");

    // Expired token.
    let short = c.token(1, "1s");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let e = Agent::enroll(&c, "a3", &short)
        .map(|_| ())
        .expect_err("expired token refused");
    assert!(e.contains("token expired"), "{e}");

    // Garbage token.
    let e = Agent::enroll(&c, "a4", "vantage1.nonsense")
        .map(|_| ())
        .expect_err("garbage token refused");
    assert!(e.contains("token is not valid"), "{e}");

    // No client certificate on the session.
    let ch = connect(&c.addr, &c.options(None))
        .await
        .expect("channel without cert");
    let (_tx, rx) = tokio::sync::mpsc::channel::<AgentMessage>(1);
    let err = match AgentServiceClient::new(ch)
        .session(ReceiverStream::new(rx))
        .await
    {
        Ok(_) => panic!("a session without a certificate must be refused"),
        Err(e) => e,
    };
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");

    // A certificate from another CA: the TLS handshake is refused.
    let other = Coordinator::init();
    let ch = connect(
        &c.addr,
        &c.options(Some(Coordinator::admin_identity(&other.dir))),
    )
    .await;
    let refused = match ch {
        Err(_) => true,
        Ok(ch) => vantage_proto::v1::admin_service_client::AdminServiceClient::new(ch)
            .stats(StatsRequest {})
            .await
            .is_err(),
    };
    assert!(refused, "a certificate from another CA must be refused");

    // A revoked agent's next connection fails.
    let out = c.ctl(&["agent", "revoke", &a1.id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    a1.start();
    wait_until(
        Duration::from_secs(20),
        "the revoked agent to be refused",
        || a1.log_text().contains("agent revoked"),
    );
    assert!(!c.agents().await.iter().any(|a| a.connected));

    let log = c.log_text();
    for reason in [
        "token used up",
        "token expired",
        "session refused: no client certificate",
        "TLS handshake refused",
        "session refused: agent revoked",
    ] {
        assert!(
            log.contains(reason),
            "coordinator log lacks {reason:?}:\n{log}"
        );
    }
    assert!(c.counter("session_refused/agent_revoked").await >= 1);
    assert!(c.counter("tls_refused").await >= 1);
}

/// Opens a session as the enrolled agent in `dir`, with its real identity.
async fn raw_session(
    c: &Coordinator,
    dir: &std::path::Path,
) -> (
    tokio::sync::mpsc::Sender<AgentMessage>,
    tonic::Streaming<CoordinatorMessage>,
    ed25519_dalek::SigningKey,
    String,
) {
    let id = vantage_agent::identity::Identity::load(dir).expect("identity");
    let key = vantage_agent::identity::load_key(dir).expect("key");
    let opts = c.options(Some(ClientIdentity {
        cert_pem: id.client_cert_pem.clone(),
        key_pem: vantage_agent::identity::key_pem(&key),
    }));
    let ch = connect(&c.addr, &opts).await.expect("agent channel");
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let inbound = AgentServiceClient::new(ch)
        .max_encoding_message_size(64 << 20)
        .session(ReceiverStream::new(rx))
        .await
        .expect("session")
        .into_inner();
    (tx, inbound, key, id.agent_id)
}

async fn next_ack(inbound: &mut tonic::Streaming<CoordinatorMessage>) -> ResultAck {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), inbound.message())
            .await
            .expect("an answer in time")
            .expect("stream ok")
            .expect("stream open");
        if let Some(coordinator_message::Msg::Ack(a)) = m.msg {
            return a;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_results_are_refused_and_counted_while_neighbours_are_stored() {
    let c = Coordinator::init().start();
    let token = c.token(2, "1h");
    let a = Agent::enroll(&c, "a", &token).expect("enroll a");
    let b = Agent::enroll(&c, "b", &token).expect("enroll b");
    let (tx, mut inbound, key, agent_id) = raw_session(&c, &a.dir).await;

    let good: Vec<Measurement> = (0..3).map(|_| measurement(&agent_id)).collect();
    let sign = |m: &Measurement| envelope::sign(&key, m);

    let mut bad_sig = sign(&measurement(&agent_id));
    let mut s = bad_sig.signature.to_vec();
    s[10] ^= 0x55;
    bad_sig.signature = s.into();

    let mut altered = sign(&measurement(&agent_id));
    let mut m = altered.measurement.to_vec();
    let last = m.len() - 1;
    m[last] ^= 0x01;
    altered.measurement = m.into();

    // Signed correctly, but claims to be agent b while speaking on a's session.
    let mismatch = sign(&measurement(&b.id));

    let mut unknown_task = measurement(&agent_id);
    unknown_task.task_id = envelope::new_id();
    let unknown_task = sign(&unknown_task);
    let mut stray_campaign = measurement(&agent_id);
    stray_campaign.campaign_id = envelope::new_id();
    let stray_campaign = sign(&stray_campaign);

    let mut future = measurement(&agent_id);
    future.start_us += 3600 * 1_000_000;
    let future = sign(&future);

    let batch = vec![
        sign(&good[0]),
        bad_sig.clone(),
        sign(&good[1]),
        altered,
        mismatch,
        future,
        unknown_task,
        stray_campaign,
        sign(&good[2]),
        sign(&good[0]), // a duplicate in the same batch is accepted once
    ];
    tx.send(AgentMessage {
        msg: Some(agent_message::Msg::Results(ResultBatch { results: batch })),
    })
    .await
    .unwrap();
    let ack = next_ack(&mut inbound).await;

    let accepted: HashSet<_> = ack.accepted.iter().cloned().collect();
    let want: HashSet<_> = good.iter().map(|m| m.id.clone()).collect();
    assert_eq!(accepted, want, "exactly the good ones are acked");
    let mut reasons: Vec<_> = ack.rejected.iter().map(|r| r.reason.as_str()).collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            "agent_mismatch",
            "bad_signature",
            "bad_signature",
            "future_timestamp",
            "unknown_task",
            "unknown_task"
        ]
    );

    let ids = verified_ids(&c).await;
    assert_eq!(ids.iter().cloned().collect::<HashSet<_>>(), want);
    assert_eq!(ids.len(), 3);
    assert_eq!(c.counter("rejected/bad_signature").await, 2);
    assert_eq!(c.counter("rejected/agent_mismatch").await, 1);
    assert_eq!(c.counter("rejected/future_timestamp").await, 1);

    // Resending the same good results changes nothing: idempotent.
    tx.send(AgentMessage {
        msg: Some(agent_message::Msg::Results(ResultBatch {
            results: good.iter().map(sign).collect(),
        })),
    })
    .await
    .unwrap();
    let ack = next_ack(&mut inbound).await;
    assert_eq!(ack.accepted.len(), 3);
    assert_eq!(verified_ids(&c).await.len(), 3);
}

/// Waits until `all` are stored, then checks that the store holds
/// exactly those signed results, each once.
async fn stored_exactly(c: &Coordinator, all: &HashSet<String>, limit: Duration) {
    let n = all.len() as u64;
    until(limit, &format!("all {n} results stored"), || async {
        c.stats().await.results_stored >= n
    })
    .await;
    let ids: HashSet<String> = verified_ids(c).await.into_iter().collect();
    assert_eq!(
        &ids, all,
        "the store holds exactly the signed results, each once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_kill9_under_load_loses_and_duplicates_nothing() {
    let mut c = Coordinator::init().start();
    let token = c.token(3, "1h");
    let mut agents: Vec<Agent> = (0..3)
        .map(|i| Agent::enroll(&c, &format!("a{i}"), &token).expect("enroll"))
        .collect();
    let mut all = HashSet::new();
    for a in &agents {
        all.extend(a.fill(4000));
    }
    assert_eq!(all.len(), 12_000);
    for a in &mut agents {
        a.start();
    }
    let mut kills = 0;
    for round in 0..4u64 {
        tokio::time::sleep(Duration::from_millis(150 + 170 * round)).await;
        c.kill9();
        kills += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.restart();
    }
    assert_eq!(kills, 4);
    stored_exactly(&c, &all, Duration::from_secs(120)).await;
    assert!(c.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_kill9_mid_upload_loses_and_duplicates_nothing() {
    let c = Coordinator::init().start();
    let token = c.token(1, "1h");
    let mut a = Agent::enroll(&c, "a", &token).expect("enroll");
    let all: HashSet<String> = a.fill(8000).into_iter().collect();
    a.start();
    until(Duration::from_secs(30), "the upload to begin", || async {
        c.stats().await.results_stored > 0
    })
    .await;
    a.kill9();
    let partial = c.stats().await.results_stored;
    a.start();
    stored_exactly(&c, &all, Duration::from_secs(60)).await;
    eprintln!("killed the agent after {partial} of 8000 were stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_messages_do_not_crash_the_coordinator() {
    use tokio::io::AsyncWriteExt;
    let mut c = Coordinator::init().start();
    let token = c.token(1, "1h");
    let a = Agent::enroll(&c, "a", &token).expect("enroll");

    // Garbage bytes on the TLS port, and a connection that never speaks.
    let idle = tokio::net::TcpStream::connect(&c.addr).await.unwrap();
    for size in [1usize, 100, 70_000] {
        let mut s = tokio::net::TcpStream::connect(&c.addr).await.unwrap();
        let junk: Vec<u8> = (0..size).map(|i| (i * 7 + 3) as u8).collect();
        let _ = s.write_all(&junk).await;
        let _ = s.shutdown().await;
    }

    // An oversized message on a real agent session is refused.
    let (tx, mut inbound, key, agent_id) = raw_session(&c, &a.dir).await;
    let mut huge = measurement(&agent_id);
    huge.steps = vec![Step {
        name: "x".repeat(12 << 20),
        ..Default::default()
    }];
    let env = envelope::sign(&key, &huge);
    assert!(env.encoded_len() > 8 << 20);
    let _ = tx
        .send(AgentMessage {
            msg: Some(agent_message::Msg::Results(ResultBatch {
                results: vec![env],
            })),
        })
        .await;
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match inbound.message().await {
                Ok(Some(CoordinatorMessage {
                    msg: Some(coordinator_message::Msg::Ack(a)),
                })) => return Ok(a),
                Ok(Some(_)) => continue,
                Ok(None) => return Err("closed".to_string()),
                Err(s) => return Err(format!("{:?}", s.code())),
            }
        }
    })
    .await
    .expect("an answer");
    assert!(
        outcome.is_err(),
        "an oversized message must not be acked: {outcome:?}"
    );

    drop(idle);
    assert!(c.is_running(), "the coordinator survived");
    let stats = c.stats().await;
    assert_eq!(stats.results_stored, 0);
    assert!(c.counter("tls_refused").await >= 1);
}

#[test]
fn a_closed_pipe_ends_vantagectl_quietly() {
    // `vantagectl agents | head -0`: the reader is gone before the first
    // line. Before: println! panicked ("failed printing to stdout").
    let c = Coordinator::init().start();
    for _ in 0..3 {
        let mut child = std::process::Command::new(vantagectl_bin())
            .arg("--data-dir")
            .arg(&c.dir)
            .arg("agents")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run vantagectl");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            out.status.code() == Some(141) || out.status.success(),
            "{:?}: {err}",
            out.status
        );
    }
}
