//! Hostile input (issue 9): every case is refused with its reason, the
//! refusal is counted by reason, nothing already stored is lost or
//! overwritten, and the coordinator keeps serving. Complements
//! `spine::bad_results_are_refused_and_counted_while_neighbours_are_stored`
//! (bad signatures, altered bytes, a foreign agent id, a start time in the
//! future, unknown tasks) and `spine::refusals_are_logged_with_their_reason`
//! (used-up, expired and garbage tokens, revoked agent reconnecting, foreign
//! CA) without repeating them.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::wrappers::ReceiverStream;
use vantage_proto::client::{connect, ClientIdentity};
use vantage_proto::envelope;
use vantage_proto::token::EnrollToken;
use vantage_proto::v1::admin_service_client::AdminServiceClient;
use vantage_proto::v1::agent_service_client::AgentServiceClient;
use vantage_proto::v1::query_service_client::QueryServiceClient;
use vantage_proto::v1::*;

use crate::harness::*;
use crate::http::{enc, get_with};

// ------------------------------------------------------------ helpers

/// A raw agent session speaking for the enrolled agent in `dir`.
pub(crate) struct Session {
    tx: tokio::sync::mpsc::Sender<AgentMessage>,
    inbound: tonic::Streaming<CoordinatorMessage>,
    key: SigningKey,
    pub(crate) agent_id: String,
}

fn identity_of(dir: &std::path::Path) -> (ClientIdentity, SigningKey, String) {
    let id = vantage_agent::identity::Identity::load(dir).expect("identity");
    let key = vantage_agent::identity::load_key(dir).expect("key");
    (
        ClientIdentity {
            cert_pem: id.client_cert_pem.clone(),
            key_pem: vantage_agent::identity::key_pem(&key),
        },
        key,
        id.agent_id,
    )
}

pub(crate) async fn open_session(
    c: &Coordinator,
    dir: &std::path::Path,
) -> Result<Session, tonic::Status> {
    open_session_at(&c.addr, c.options(None), dir).await
}

/// Opens a session at `addr` with `opts` (its identity replaced by the
/// agent's).
pub(crate) async fn open_session_at(
    addr: &str,
    mut opts: vantage_proto::client::ConnectOptions,
    dir: &std::path::Path,
) -> Result<Session, tonic::Status> {
    let (ident, key, agent_id) = identity_of(dir);
    opts.identity = Some(ident);
    let ch = connect(addr, &opts)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tx.send(AgentMessage {
        msg: Some(agent_message::Msg::Hello(Hello {
            software_version: "hostile-e2e".into(),
            consent: Some(Consent {
                kinds: vec!["tcp".into()],
                ..Default::default()
            }),
            ..Default::default()
        })),
    })
    .await
    .expect("queue hello");
    let inbound = AgentServiceClient::new(ch)
        .session(ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok(Session {
        tx,
        inbound,
        key,
        agent_id,
    })
}

impl Session {
    /// Sends one batch; the ack, or how the stream ended instead.
    pub(crate) async fn send(&mut self, results: Vec<SignedResult>) -> Result<ResultAck, String> {
        self.tx
            .send(AgentMessage {
                msg: Some(agent_message::Msg::Results(ResultBatch { results })),
            })
            .await
            .map_err(|_| "session closed".to_string())?;
        loop {
            let m = tokio::time::timeout(Duration::from_secs(15), self.inbound.message())
                .await
                .map_err(|_| "no answer in time".to_string())?;
            match m {
                Ok(Some(CoordinatorMessage {
                    msg: Some(coordinator_message::Msg::Ack(a)),
                })) => return Ok(a),
                Ok(Some(_)) => continue,
                Ok(None) => return Err("stream closed".into()),
                Err(s) => return Err(format!("{:?}: {}", s.code(), s.message())),
            }
        }
    }

    pub(crate) fn sign(&self, m: &Measurement) -> SignedResult {
        envelope::sign(&self.key, m)
    }
}

fn counters(s: &StatsResponse) -> HashMap<String, u64> {
    s.counters
        .iter()
        .map(|c| (c.name.clone(), c.value))
        .collect()
}

fn keys(agents: &[AgentInfo]) -> HashMap<String, VerifyingKey> {
    agents
        .iter()
        .map(|a| {
            let pk: [u8; 32] = a.public_key.as_slice().try_into().expect("32-byte key");
            (a.agent_id.clone(), VerifyingKey::from_bytes(&pk).unwrap())
        })
        .collect()
}

/// Stored envelopes by measurement id; panics on a duplicate or on a
/// signature that does not verify against the agent's key.
pub(crate) async fn stored(c: &Coordinator) -> HashMap<String, SignedResult> {
    let keys = keys(&c.agents().await);
    let mut out = HashMap::new();
    for r in c.results().await {
        let env = r.envelope.expect("envelope");
        let m = envelope::decode(&env).expect("stored measurement decodes");
        assert_eq!(m.agent_id, r.agent_id);
        envelope::verify(&keys[&r.agent_id], &env).expect("stored signature verifies");
        assert!(
            out.insert(m.id.clone(), env).is_none(),
            "{} stored twice",
            m.id
        );
    }
    out
}

fn ctl_ok(c: &Coordinator, args: &[&str]) -> String {
    c.ctl_ok(args).trim().to_string()
}

// ------------------------------------------------------------ results

/// Which session a row is sent on.
#[derive(Clone, Copy, Debug)]
enum On {
    A,
    B,
}

struct Row {
    case: &'static str,
    on: On,
    batch: Vec<SignedResult>,
    /// How many of the batch are acked.
    accepted: usize,
    /// The rejection reasons expected, sorted.
    rejected: Vec<&'static str>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_results_are_refused_with_their_reason() {
    let c = Coordinator::init().start();
    let [a_dir, b_dir]: [PathBuf; 2] = c.enroll_dirs(&["a", "b"]).try_into().unwrap();
    let mut a = open_session(&c, &a_dir).await.expect("session a");
    let mut b = open_session(&c, &b_dir).await.expect("session b");
    until(Duration::from_secs(20), "both sessions live", || async {
        c.agents()
            .await
            .iter()
            .filter(|x| x.connected && x.software_version == "hostile-e2e")
            .count()
            == 2
    })
    .await;
    // A task for agent A only (ad hoc: no campaign).
    let target = r#"{"tcp":{"host":"127.0.0.1","port":9}}"#;
    let task = ctl_ok(&c, &["dispatch", target, "--agents", &a.agent_id]);

    // Something stored first, to be replayed and attacked.
    let original = measurement(&a.agent_id);
    let original_env = a.sign(&original);
    let ack = a.send(vec![original_env.clone()]).await.expect("ack");
    assert_eq!(ack.accepted, vec![original.id.clone()]);

    let before = counters(&c.stats().await);

    let mut forged = original.clone();
    forged.software_version = "forged".into();
    let fresh = measurement(&a.agent_id);
    let mut fresh_forged = fresh.clone();
    fresh_forged.end_us += 1;
    let far = |m: &mut Measurement, start: i64, end: i64| {
        m.start_us = start;
        m.end_us = end;
    };
    let with = |f: &dyn Fn(&mut Measurement)| {
        let mut m = measurement(&a.agent_id);
        f(&mut m);
        a.sign(&m)
    };
    let mut short_sig = a.sign(&measurement(&a.agent_id));
    short_sig.signature = short_sig.signature.slice(..63);

    let rows = vec![
        Row {
            case: "the same envelope resent (redelivery)",
            on: On::A,
            batch: vec![original_env.clone()],
            accepted: 1,
            rejected: vec![],
        },
        Row {
            case: "another payload under a stored id",
            on: On::A,
            batch: vec![a.sign(&forged)],
            accepted: 0,
            rejected: vec!["id_conflict"],
        },
        Row {
            case: "two payloads under one new id in one batch",
            on: On::A,
            batch: vec![a.sign(&fresh), a.sign(&fresh_forged)],
            accepted: 1,
            rejected: vec!["id_conflict"],
        },
        Row {
            case: "signed by A, sent on B's session",
            on: On::B,
            batch: vec![a.sign(&measurement(&a.agent_id))],
            accepted: 0,
            rejected: vec!["agent_mismatch"],
        },
        Row {
            case: "signed by A claiming to be B, sent on B's session",
            on: On::B,
            batch: vec![a.sign(&measurement(&b.agent_id))],
            accepted: 0,
            rejected: vec!["bad_signature"],
        },
        Row {
            case: "end time a day in the future",
            on: On::A,
            batch: vec![with(&|m| m.end_us += 86_400_000_000)],
            accepted: 0,
            rejected: vec!["future_timestamp"],
        },
        Row {
            case: "times at i64::MAX",
            on: On::A,
            batch: vec![with(&|m| far(m, i64::MAX, i64::MAX))],
            accepted: 0,
            rejected: vec!["future_timestamp"],
        },
        Row {
            case: "end before start",
            on: On::A,
            batch: vec![with(&|m| m.end_us = m.start_us - 1)],
            accepted: 0,
            rejected: vec!["bad_timestamp"],
        },
        Row {
            case: "no start time",
            on: On::A,
            batch: vec![with(&|m| far(m, 0, 0))],
            accepted: 0,
            rejected: vec!["bad_timestamp"],
        },
        Row {
            case: "task id that is not an id",
            on: On::A,
            batch: vec![with(&|m| m.task_id = "../../tasks/x".into())],
            accepted: 0,
            rejected: vec!["unknown_task"],
        },
        Row {
            case: "A's task under an unknown campaign",
            on: On::A,
            batch: vec![with(&|m| {
                m.task_id = task.clone();
                m.campaign_id = envelope::new_id();
            })],
            accepted: 0,
            rejected: vec!["campaign_mismatch"],
        },
        Row {
            case: "A's task answered by B",
            on: On::B,
            batch: vec![{
                let mut m = measurement(&b.agent_id);
                m.task_id = task.clone();
                b.sign(&m)
            }],
            accepted: 0,
            rejected: vec!["not_assigned"],
        },
        Row {
            case: "measurement id with path traversal",
            on: On::A,
            batch: vec![with(&|m| m.id = "../../../etc/passwd".into())],
            accepted: 0,
            rejected: vec!["bad_id"],
        },
        Row {
            case: "empty measurement (no id)",
            on: On::A,
            batch: vec![SignedResult {
                measurement: Default::default(),
                signature: vec![0u8; 64].into(),
            }],
            accepted: 0,
            rejected: vec!["bad_id"],
        },
        Row {
            case: "measurement bytes that do not decode",
            on: On::A,
            batch: vec![SignedResult {
                measurement: vec![0xff; 40].into(),
                signature: vec![0u8; 64].into(),
            }],
            accepted: 0,
            rejected: vec!["malformed"],
        },
        Row {
            case: "63-byte signature",
            on: On::A,
            batch: vec![short_sig],
            accepted: 0,
            rejected: vec!["bad_signature"],
        },
        Row {
            case: "A's task answered by A (control row)",
            on: On::A,
            batch: vec![with(&|m| m.task_id = task.clone())],
            accepted: 1,
            rejected: vec![],
        },
    ];

    let mut want_counts: HashMap<&str, u64> = HashMap::new();
    let mut want_stored: HashMap<String, SignedResult> =
        HashMap::from([(original.id.clone(), original_env.clone())]);
    for row in rows {
        let session = match row.on {
            On::A => &mut a,
            On::B => &mut b,
        };
        let ack = session
            .send(row.batch.clone())
            .await
            .unwrap_or_else(|e| panic!("{}: no ack ({e})", row.case));
        let mut reasons: Vec<&str> = ack.rejected.iter().map(|r| r.reason.as_str()).collect();
        reasons.sort();
        assert_eq!(
            (ack.accepted.len(), reasons),
            (row.accepted, row.rejected.clone()),
            "{}: {ack:?}",
            row.case
        );
        for r in &row.rejected {
            *want_counts.entry(r).or_default() += 1;
        }
        for id in &ack.accepted {
            let env = row
                .batch
                .iter()
                .find(|e| envelope::decode(e).map(|m| m.id == *id).unwrap_or(false))
                .expect("acked id was sent");
            want_stored.entry(id.clone()).or_insert_with(|| env.clone());
        }
    }

    // Each refusal was counted under its reason, exactly once.
    let after = counters(&c.stats().await);
    for (reason, n) in &want_counts {
        let name = format!("rejected/{reason}");
        let moved =
            after.get(&name).copied().unwrap_or(0) - before.get(&name).copied().unwrap_or(0);
        assert_eq!(moved, *n, "counter {name}");
    }
    assert_eq!(
        after.get("duplicate_results").copied().unwrap_or(0)
            - before.get("duplicate_results").copied().unwrap_or(0),
        1,
        "the redelivered envelope is counted as a duplicate"
    );

    // Exactly the accepted results are stored, each once, as first sent.
    let got = stored(&c).await;
    assert_eq!(
        got.keys().collect::<HashSet<_>>(),
        want_stored.keys().collect::<HashSet<_>>()
    );
    for (id, env) in &want_stored {
        assert_eq!(got[id].measurement, env.measurement, "{id} was overwritten");
    }
    assert_eq!(c.stats().await.results_stored, want_stored.len() as u64);
    let table = ctl_ok(&c, &["stats"]);
    assert!(table.contains("rejected/id_conflict"), "{table}");
}

// ------------------------------------------------------------ enrollment

async fn enroll_with(c: &Coordinator, token: &str) -> Result<EnrollResponse, tonic::Status> {
    let ch = connect(&c.addr, &c.options(None))
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    AgentServiceClient::new(ch)
        .enroll(EnrollRequest {
            proof: envelope::enroll_proof(&key, token),
            token: token.to_string(),
            public_key: key.verifying_key().to_bytes().to_vec(),
            labels: Some(Labels {
                country: "CN".into(),
                ..Default::default()
            }),
            software_version: "hostile-e2e".into(),
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_token_guessing_is_rate_limited() {
    let c = Coordinator::init().start();
    let real = c.token(1, "1h");
    let addrs = EnrollToken::decode(&real).unwrap().addrs;
    let guess = || {
        EnrollToken {
            addrs: addrs.clone(),
            ca: c.ca_fingerprint(),
            secret: hex::encode(rand::random::<[u8; 32]>()),
        }
        .encode()
    };

    // Well-formed guesses with valid proofs: refused as unknown until the
    // burst is spent, then refused by the limiter before any lookup.
    let mut outcomes = Vec::new();
    for _ in 0..25 {
        let e = enroll_with(&c, &guess())
            .await
            .expect_err("a guess enrolls");
        outcomes.push((e.code(), e.message().to_string()));
    }
    let unknown = outcomes
        .iter()
        .filter(|(code, m)| *code == tonic::Code::PermissionDenied && m.contains("unknown token"))
        .count();
    let limited = outcomes
        .iter()
        .filter(|(code, m)| {
            *code == tonic::Code::ResourceExhausted && m.contains("too many failed attempts")
        })
        .count();
    assert_eq!(unknown, 10, "{outcomes:?}");
    assert_eq!(limited, 15, "{outcomes:?}");
    assert!(
        outcomes[..10]
            .iter()
            .all(|(c, _)| *c == tonic::Code::PermissionDenied),
        "the burst comes first: {outcomes:?}"
    );

    // While limited even the real token is turned away, without using it up;
    // once the allowance refills it enrolls.
    let e = enroll_with(&c, &real).await.expect_err("limited");
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    let start = std::time::Instant::now();
    loop {
        match enroll_with(&c, &real).await {
            Ok(r) => {
                assert!(!r.agent_id.is_empty());
                break;
            }
            Err(e) => assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the limiter never let the real token through"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let n = counters(&c.stats().await);
    assert_eq!(n.get("enrollment_refused/unknown_token"), Some(&10));
    assert!(
        n.get("enrollment_refused/rate_limited")
            .copied()
            .unwrap_or(0)
            >= 16
    );
    assert_eq!(c.agents().await.len(), 1);
    assert!(c
        .log_text()
        .contains("enrollment refused: too many failed attempts"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_country_does_not_use_up_the_token() {
    let c = Coordinator::init().start();
    let token = c.token(1, "1h");
    let bad = Agent::enroll_as(&c, "bad", &token, "China", "")
        .map(|_| ())
        .expect_err("bad country refused");
    assert!(bad.contains("ISO 3166-1"), "{bad}");
    Agent::enroll_as(&c, "good", &token, "CN", "").expect("the token still has its use");
    assert_eq!(c.counter("enrollment_refused/bad_country").await, 1);
}

// ------------------------------------------------------------ revocation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_agent_is_cut_off_on_its_open_session() {
    let c = Coordinator::init().start();
    let token = c.token(1, "1h");
    let dir = Agent::enroll(&c, "a", &token).expect("enroll").dir.clone();
    let mut s = open_session(&c, &dir).await.expect("session");
    let m = measurement(&s.agent_id);
    let ack = s.send(vec![s.sign(&m)]).await.expect("ack");
    assert_eq!(ack.accepted.len(), 1);

    ctl_ok(&c, &["agent", "revoke", &s.agent_id]);
    // Whatever it sends on the session it already had is not taken.
    let late = measurement(&s.agent_id);
    let env = s.sign(&late);
    let outcome = s.send(vec![env]).await;
    let err = outcome.expect_err("a revoked agent's result must not be acked");
    assert!(
        err.contains("PermissionDenied") || err.contains("closed"),
        "{err}"
    );
    // Reconnecting is refused with the reason.
    let again = open_session(&c, &dir).await.err().expect("refused");
    assert_eq!(again.code(), tonic::Code::PermissionDenied, "{again:?}");
    assert!(again.message().contains("agent revoked"));

    let got = stored(&c).await;
    assert_eq!(got.len(), 1, "only the result sent before revocation");
    assert!(got.contains_key(&m.id));
    assert!(c.counter("session_refused/agent_revoked").await >= 1);
}

// ------------------------------------------------------------ admin calls

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_need_the_admin_certificate() {
    let read_token = "hostile-read-token-0123456789";
    let c = Coordinator::init().with_http();
    c.set_read_tokens(&[read_token]);
    let c = c.start();
    let token = c.token(1, "1h");
    let agent = Agent::enroll(&c, "a", &token).expect("enroll");
    let (agent_ident, _, agent_id) = identity_of(&agent.dir);

    type Call = fn(
        tonic::transport::Channel,
        String,
    ) -> futures::future::BoxFuture<'static, Result<(), tonic::Status>>;
    let calls: Vec<(&str, Call)> = vec![
        ("Admin.Stats", |ch, _| {
            Box::pin(async move {
                AdminServiceClient::new(ch)
                    .stats(StatsRequest {})
                    .await
                    .map(|_| ())
            })
        }),
        ("Admin.CreateToken", |ch, _| {
            Box::pin(async move {
                AdminServiceClient::new(ch)
                    .create_token(CreateTokenRequest::default())
                    .await
                    .map(|_| ())
            })
        }),
        ("Admin.RevokeAgent", |ch, id| {
            Box::pin(async move {
                AdminServiceClient::new(ch)
                    .revoke_agent(RevokeAgentRequest { agent_id: id })
                    .await
                    .map(|_| ())
            })
        }),
        ("Admin.Backup", |ch, _| {
            Box::pin(async move {
                let mut s = AdminServiceClient::new(ch)
                    .backup(BackupRequest {})
                    .await?
                    .into_inner();
                s.message().await.map(|_| ())
            })
        }),
        ("Query.ListResults", |ch, _| {
            Box::pin(async move {
                let mut s = QueryServiceClient::new(ch)
                    .list_results(ListResultsRequest::default())
                    .await?
                    .into_inner();
                s.message().await.map(|_| ())
            })
        }),
    ];

    let before = counters(&c.stats().await);
    // (credential, expected code, counter that moves)
    let agent_ch = connect(&c.addr, &c.options(Some(agent_ident.clone())))
        .await
        .expect("agent channel");
    let bare = connect(&c.addr, &c.options(None)).await.expect("channel");
    for (cred, ch, code, counter) in [
        (
            "agent certificate",
            agent_ch,
            tonic::Code::PermissionDenied,
            "refused/not_admin",
        ),
        (
            "no certificate",
            bare,
            tonic::Code::Unauthenticated,
            "refused/no_certificate",
        ),
    ] {
        for (name, call) in &calls {
            let e = call(ch.clone(), agent_id.clone())
                .await
                .expect_err(&format!("{name} with {cred} must be refused"));
            assert_eq!(e.code(), code, "{name} with {cred}: {e:?}");
        }
        let after = counters(&c.stats().await);
        assert_eq!(
            after.get(counter).copied().unwrap_or(0) - before.get(counter).copied().unwrap_or(0),
            calls.len() as u64,
            "{counter} after calls with {cred}"
        );
    }

    // The read token as a gRPC bearer credential is no admin credential.
    let bare = connect(&c.addr, &c.options(None)).await.expect("channel");
    let mut req = tonic::Request::new(StatsRequest {});
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {read_token}").parse().unwrap(),
    );
    let e = AdminServiceClient::new(bare)
        .stats(req)
        .await
        .expect_err("a read token is not the admin certificate");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);

    // vantagectl holding an agent's certificate in place of the admin one.
    let fake = c.root.path().join("fake-admin");
    std::fs::create_dir_all(&fake).unwrap();
    for f in ["ca.pem", "coordinator.toml"] {
        std::fs::copy(c.dir.join(f), fake.join(f)).unwrap();
    }
    std::fs::write(fake.join("admin.pem"), &agent_ident.cert_pem).unwrap();
    std::fs::write(fake.join("admin.key"), &agent_ident.key_pem).unwrap();
    for args in [
        vec!["stats"],
        vec!["agent", "revoke", agent_id.as_str()],
        vec!["token", "create"],
    ] {
        let out = std::process::Command::new(vantagectl_bin())
            .arg("--data-dir")
            .arg(&fake)
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "vantagectl {args:?} with an agent cert"
        );
        assert!(err.contains("admin certificate"), "{args:?}: {err}");
    }

    // Write-like HTTP requests with a valid read token: no such endpoints.
    let http = c.http.clone().unwrap();
    let auth = format!("Bearer {read_token}");
    for (method, path) in [
        ("POST", "/api/v1/campaigns".to_string()),
        ("POST", "/api/v1/tokens".to_string()),
        ("DELETE", format!("/api/v1/agents/{agent_id}")),
        ("PUT", format!("/api/v1/agents/{agent_id}/revoke")),
        ("POST", "/api/v1/agents".to_string()),
    ] {
        let (status, body) = raw_http(&http, method, &path, &[("Authorization", &auth)]).await;
        assert!(
            status == 404 || status == 405,
            "{method} {path}: {status} {body}"
        );
    }
    let agents = c.agents().await;
    assert_eq!(agents.len(), 1);
    assert!(!agents[0].revoked, "nothing revoked the agent");
}

/// One HTTP/1.1 request with any method; (status, body).
async fn raw_http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 2\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n{}");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

// ------------------------------------------------------------ file names

/// A well-formed backup holding one data-dir file called `name`.
fn backup_with_file(name: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"VNTGBKP\0");
    b.extend_from_slice(&1u32.to_be_bytes());
    b.extend_from_slice(&0u64.to_be_bytes());
    b.push(b'F');
    b.extend_from_slice(&(name.len() as u32).to_be_bytes());
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(&0o600u32.to_be_bytes());
    b.extend_from_slice(&5u64.to_be_bytes());
    b.extend_from_slice(b"owned");
    b.push(b'Z');
    for n in [1u64, 0, 0] {
        b.extend_from_slice(&n.to_be_bytes());
    }
    let sum = Sha256::digest(&b);
    b.extend_from_slice(&sum);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_names_from_input_cannot_escape() {
    let mut c = Coordinator::init().with_http().start();
    let http = c.http.clone().unwrap();

    // HTTP: ids in paths and parameters are ids, never file names.
    for path in [
        "/api/v1/campaigns/..%2F..%2F..%2Fetc%2Fpasswd".to_string(),
        "/api/v1/campaigns/..".to_string(),
        format!("/api/v1/results?campaign={}", enc("../../../etc/passwd")),
        format!("/api/v1/results?agent={}", enc("..")),
        format!("/api/v1/results?cursor={}", enc("../../etc/passwd")),
        format!("/api/v1/verdicts?campaign={}", enc("../x")),
        "/../../../../etc/passwd".to_string(),
        "/api/v1/../../../etc/passwd".to_string(),
        "/%2e%2e/%2e%2e/etc/passwd".to_string(),
        "/api/v1/openapi.json/../../../etc/passwd".to_string(),
    ] {
        let r = get_with(&http, &path, &[]).await;
        assert!(
            r.status == 400 || r.status == 404,
            "{path}: {} {}",
            r.status,
            r.body
        );
        assert!(!r.body.contains("root:"), "{path} served a file");
        let code = r.json()["code"].as_str().unwrap_or_default().to_string();
        assert!(
            code == "invalid_argument" || code == "not_found",
            "{path}: {}",
            r.body
        );
    }

    // vantagectl: a campaign id is checked as an id.
    for id in ["../../../etc/passwd", "..", "/etc/passwd"] {
        for cmd in [
            vec!["export", id],
            vec!["verdicts", id],
            vec!["campaign", "status", id],
        ] {
            let out = c.ctl(&cmd);
            assert!(!out.status.success(), "vantagectl {cmd:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!err.contains("panicked"), "{cmd:?}: {err}");
            assert!(
                err.contains("not a valid") || err.contains("no campaign"),
                "{cmd:?}: {err}"
            );
        }
    }

    // restore: file names inside a backup are names, not paths.
    let escape = c.root.path().join("escaped");
    for name in ["../escaped", "sub/../../escaped", "..", "/tmp/escaped"] {
        let file = c.root.path().join("evil.vbk");
        std::fs::write(&file, backup_with_file(name)).unwrap();
        let target = c.root.path().join("restore-target");
        let out = std::process::Command::new(coordinator_bin())
            .args(["restore", "--from"])
            .arg(&file)
            .arg("--data-dir")
            .arg(&target)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "restore of {name:?} succeeded");
        assert!(err.contains("bad file name"), "{name:?}: {err}");
        assert!(!escape.exists(), "{name:?} escaped the data dir");
        assert!(
            std::fs::read_dir(&target).map(|d| d.count()).unwrap_or(0) == 0,
            "{name:?}: nothing is written before the backup is checked"
        );
    }
    // The same backup with a plain name restores (the refusal is the name).
    let file = c.root.path().join("plain.vbk");
    std::fs::write(&file, backup_with_file("notes.txt")).unwrap();
    let target = c.root.path().join("restore-plain");
    let out = std::process::Command::new(coordinator_bin())
        .args(["restore", "--from"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(target.join("notes.txt")).unwrap(), b"owned");
    assert!(c.is_running());
}

// ------------------------------------------------------------ privacy

/// Volunteers connect from 127.0.0.73 (the coordinator listens there, so
/// the kernel uses it as their source address too); results probe a
/// target on 127.0.0.1. That address string must not appear in any export
/// format, in any /api/v1 answer, in the store's files or in the log,
/// except as the coordinator's own listen address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volunteer_addresses_never_reach_exports_or_the_read_api() {
    const VOLUNTEER_IP: &str = "127.0.0.73";
    let mut c = Coordinator::init().with_http();
    // Re-initialise the data dir for the volunteer-side loopback address.
    std::fs::remove_dir_all(&c.dir).unwrap();
    let port = free_port();
    c.addr = format!("{VOLUNTEER_IP}:{port}");
    let out = std::process::Command::new(coordinator_bin())
        .args(["init", "--data-dir"])
        .arg(&c.dir)
        .args(["--listen", &c.addr])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = c.start();
    let _fleet = fleet(&c, 0).await;
    // Something for the agents to measure, on another loopback address.
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tport = target.local_addr().unwrap().port();
    let targets = tcp_targets("127.0.0.1", &[tport]);
    let campaign = c.create_campaign(&campaign_spec("privacy", "5s", "", &targets));
    until(Duration::from_secs(40), "three results", || async {
        c.stats().await.results_stored >= 3
    })
    .await;

    let mut texts: Vec<(String, String)> = Vec::new();
    for format in ["jsonl", "ooni-jsonl", "csv"] {
        let text = ctl_ok(&c, &["export", &campaign, "--format", format]);
        assert!(text.lines().count() >= 3, "{format}: {text}");
        texts.push((format!("export {format}"), text));
    }
    let parquet = c.root.path().join("privacy.parquet");
    ctl_ok(
        &c,
        &[
            "export",
            &campaign,
            "--format",
            "parquet",
            "-o",
            parquet.to_str().unwrap(),
        ],
    );
    texts.push((
        "export parquet".into(),
        String::from_utf8_lossy(&std::fs::read(&parquet).unwrap()).into_owned(),
    ));
    texts.push((
        "vantagectl agents".into(),
        ctl_ok(&c, &["--output", "json", "agents"]),
    ));
    texts.push((
        "vantagectl results".into(),
        ctl_ok(&c, &["--output", "jsonl", "results"]),
    ));
    let http = c.http.clone().unwrap();
    for path in [
        "/api/v1/agents".to_string(),
        "/api/v1/campaigns".to_string(),
        format!("/api/v1/campaigns/{campaign}"),
        "/api/v1/results".to_string(),
        format!("/api/v1/results?campaign={campaign}"),
        format!("/api/v1/verdicts?campaign={campaign}"),
        "/api/v1/aggregation?axis_x=country&axis_y=target".to_string(),
        "/api/v1/aggregation?axis_x=asn&axis_y=day&format=csv".to_string(),
        "/metrics".to_string(),
    ] {
        let r = get_with(&http, &path, &[]).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        texts.push((path, r.body));
    }
    for (what, text) in &texts {
        assert!(
            !text.contains(VOLUNTEER_IP),
            "{what} carries a volunteer address:\n{text}"
        );
    }
    // The results themselves are there (the check is not vacuous).
    assert!(texts[0].1.contains(&format!("127.0.0.1:{tport}")) || texts[0].1.contains("127.0.0.1"));

    // The store's files hold no address either (sled does not compress).
    let mut files = vec![c.dir.join("store")];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            let bytes = std::fs::read(&p).unwrap();
            assert!(
                !bytes
                    .windows(VOLUNTEER_IP.len())
                    .any(|w| w == VOLUNTEER_IP.as_bytes()),
                "{} holds a volunteer address",
                p.display()
            );
        }
    }
    // The log names the coordinator's own address, never a volunteer's
    // (which would carry the volunteer's ephemeral port).
    let log = c.log_text();
    let own = format!("{VOLUNTEER_IP}:{port}");
    for (i, _) in log.match_indices(VOLUNTEER_IP) {
        assert!(
            log[i..].starts_with(&own),
            "the log carries a volunteer address: {}",
            &log[i..(i + 60).min(log.len())]
        );
    }
    drop(target);
}

// ------------------------------------------------------------ network

/// A network attacker who sends the volunteer to their own coordinator
/// (same protocol, own CA) gets nothing: the agent pins the CA fingerprint
/// from the token and aborts the handshake before sending the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_trusts_only_the_pinned_coordinator() {
    let real = Coordinator::init().start();
    let rogue = Coordinator::init().start();
    let token = real.token(1, "1h");
    let mut t = EnrollToken::decode(&token).unwrap();
    t.addrs = vec![rogue.addr.clone()];
    let redirected = t.encode();
    let e = Agent::enroll(&real, "victim", &redirected)
        .map(|_| ())
        .expect_err("the agent must not enroll with another CA's coordinator");
    assert!(!e.contains("panicked"), "{e}");
    assert!(
        rogue.agents().await.is_empty(),
        "the rogue saw an enrollment"
    );
    assert_eq!(
        rogue.counter("enroll_refused/malformed_token").await
            + rogue.counter("enrollment_refused/unknown_token").await
            + rogue
                .counter("enrollment_refused/token_was_issued_by_another_coordinator")
                .await,
        0,
        "the token never reached the rogue"
    );
    // A raw client pinning the real CA cannot talk to the rogue either.
    let pinned = real.options(None);
    assert!(
        vantage_proto::client::connect(&rogue.addr, &pinned)
            .await
            .is_err(),
        "a channel to a coordinator with another CA"
    );
    // The untouched token still works: nothing was used up.
    Agent::enroll(&real, "volunteer", &token).expect("enroll with the real coordinator");
}
