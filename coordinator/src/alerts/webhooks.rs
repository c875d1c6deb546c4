//! Sending webhook deliveries from the durable queue (`store/alerts.rs`).
//!
//! Each delivery is an HTTP POST of a JSON body built when it was queued,
//! so every attempt sends the same bytes. The receiver can check it came
//! from this coordinator with the secret it was given at `vantagectl
//! webhook add`, the way GitHub and Stripe sign theirs:
//!
//! ```text
//! Vantage-Signature: t=<unix seconds>,k=<key id>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//! Vantage-Delivery: <idempotency key: event id "." revision>
//! Vantage-Attempt: <n>
//! ```
//!
//! The timestamp is signed with the body so a receiver can refuse replays
//! (older than a few minutes); the key id names the secret so it can be
//! rotated. Any 2xx answer is success. Anything else (an error status, no
//! connection, no answer within `timeout_ms`) is retried with exponential
//! backoff and jitter — `retry_base_ms` doubled per attempt up to
//! `retry_max_ms`, each wait drawn between half and all of it — until
//! `give_up_after` has passed since the delivery was queued; then it is
//! kept as dead and counted. Deliveries to one webhook go one at a time,
//! in the order they are due; different webhooks are served concurrently.
//! Because the queue is in the store, a restart (even `kill -9`) loses no
//! delivery; one whose answer was lost is sent again, with the same key.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::now_us;
use crate::config::Webhooks;
use crate::errors::ServiceError;
use crate::outbound::{self, Url};
use crate::state::Shared;
use crate::store::{Delivery, Queued, WebhookRecord};
use vantage_proto::v1::{
    AddWebhookRequest, AddWebhookResponse, ListWebhooksResponse, RemoveWebhookResponse,
    TestWebhookResponse, Webhook,
};

/// How often the sender looks at the queue when nothing is due sooner.
const IDLE: Duration = Duration::from_millis(250);
/// Deliveries taken from the queue per round.
const ROUND: usize = 64;
/// The system's roots, Debian's path.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The `Vantage-Signature` value for `body` at unix time `t`.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!(
        "t={t},k={},v1={}",
        key_id(secret),
        hex::encode(mac(secret, t, body).finalize().into_bytes())
    )
}

/// HMAC-SHA256 with `secret` over "<t>.<body>", not yet finalised.
fn mac(secret: &[u8], t: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// A secret's id in signatures: the first 8 bytes of its SHA-256, hex.
pub fn key_id(secret: &[u8]) -> String {
    hex::encode(&Sha256::digest(secret)[..8])
}

/// Whether `header` is a valid signature of `body` with `secret`, made
/// within `tolerance_s` of `now_s` (what a receiver checks).
pub fn verify(secret: &[u8], header: &str, body: &[u8], now_s: i64, tolerance_s: i64) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = x.parse::<i64>().ok(),
            Some(("v1", x)) => v1 = hex::decode(x).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if (now_s - t).abs() > tolerance_s {
        return false;
    }
    mac(secret, t, body).verify_slice(&v1).is_ok()
}

/// How long to wait before attempt `attempts + 1`, with "equal jitter":
/// half the exponential step, plus a random share of the other half.
pub fn backoff(cfg: &Webhooks, attempts: u32, random: f64) -> Duration {
    let step = cfg
        .retry_base_ms
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(40))
        .min(cfg.retry_max_ms);
    Duration::from_millis(step / 2 + (step as f64 / 2.0 * random.clamp(0.0, 1.0)) as u64)
}

/// The TLS settings for https receivers; `None` (https deliveries fail
/// with the reason) when the roots cannot be read.
fn tls_config(cfg: &Webhooks) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let path = if cfg.ca_file.is_empty() {
        SYSTEM_ROOTS
    } else {
        &cfg.ca_file
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("webhook TLS roots {path}: {e}"))?;
    for c in certs {
        let c = c.map_err(|e| format!("webhook TLS roots {path}: {e}"))?;
        let _ = roots.add(c);
    }
    if roots.is_empty() {
        return Err(format!("webhook TLS roots {path}: no certificate"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let c = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(c))
}

/// Starts the sender.
pub(crate) fn spawn(shared: &Shared) {
    let s = shared.clone();
    let cfg = shared.config.webhooks.clone();
    let tls = match tls_config(&cfg) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!("{e}: https webhooks will fail until it is fixed");
            None
        }
    };
    tokio::spawn(async move {
        loop {
            let s2 = s.clone();
            let due = tokio::task::spawn_blocking(move || {
                let now = now_us();
                Ok::<_, crate::store::StoreError>((
                    s2.store.due_deliveries(now, ROUND)?,
                    s2.store.next_due_us()?,
                ))
            })
            .await;
            let (due, next) = match due {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => {
                    tracing::warn!("webhook queue: {e}");
                    (Vec::new(), None)
                }
                Err(_) => (Vec::new(), None),
            };
            if due.is_empty() {
                let wait = next
                    .map(|n| Duration::from_micros((n - now_us()).max(0) as u64))
                    .unwrap_or(IDLE)
                    .min(IDLE);
                tokio::time::sleep(wait).await;
                continue;
            }
            // One task per webhook, its deliveries in order.
            let mut per_hook: BTreeMap<String, Vec<Queued>> = BTreeMap::new();
            for q in due {
                per_hook.entry(q.1.webhook.clone()).or_default().push(q);
            }
            let mut tasks = tokio::task::JoinSet::new();
            for (hook, queued) in per_hook {
                let (s, cfg, tls) = (s.clone(), cfg.clone(), tls.clone());
                tasks.spawn(async move { send_all(&s, &cfg, tls.as_ref(), &hook, queued).await });
            }
            while tasks.join_next().await.is_some() {}
        }
    });
}

/// Sends one webhook's due deliveries, one at a time.
async fn send_all(
    s: &Shared,
    cfg: &Webhooks,
    tls: Option<&Arc<rustls::ClientConfig>>,
    hook_id: &str,
    queued: Vec<Queued>,
) {
    let hook = match s.store.webhook(hook_id) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(webhook = %hook_id, "read webhook: {e}");
            return;
        }
    };
    let Some(mut hook) = hook else {
        for (key, _) in queued {
            let _ = s.store.drop_delivery(&key);
        }
        return;
    };
    for (key, mut d) in queued {
        let outcome = attempt(cfg, tls, &hook, &d).await;
        d.attempts += 1;
        let now = now_us();
        let (retry_at, dead) = match &outcome {
            Ok(()) => {
                hook.delivered += 1;
                hook.last_success_us = now;
                (None, false)
            }
            Err(e) => {
                hook.failed_attempts += 1;
                hook.last_error = e.clone();
                d.last_error = e.clone();
                let give_up = cfg.give_up().unwrap_or(Duration::from_secs(72 * 3600));
                if now - d.first_us >= give_up.as_micros() as i64 {
                    hook.dead += 1;
                    (None, true)
                } else {
                    let wait = backoff(cfg, d.attempts, rand::random::<f64>());
                    (Some(now + wait.as_micros() as i64), false)
                }
            }
        };
        let counter = match (&outcome, dead) {
            (Ok(()), _) => "webhook_delivered",
            (Err(_), false) => "webhook_failed_attempts",
            (Err(_), true) => "webhook_given_up",
        };
        match &outcome {
            Ok(()) => tracing::debug!(webhook = %hook.id, key = %d.key, "webhook delivered"),
            Err(e) => tracing::info!(
                webhook = %hook.id, key = %d.key, attempt = d.attempts, dead,
                "webhook delivery failed: {e}"
            ),
        }
        let stored = s
            .store
            .delivery_attempted(&key, &d, retry_at, dead, &hook)
            .and_then(|_| s.store.add_counter(counter, 1));
        if let Err(e) = stored {
            tracing::warn!(webhook = %hook.id, "record webhook delivery: {e}");
            return;
        }
    }
}

/// One POST of delivery `d` to `hook`.
async fn attempt(
    cfg: &Webhooks,
    tls: Option<&Arc<rustls::ClientConfig>>,
    hook: &WebhookRecord,
    d: &Delivery,
) -> Result<(), String> {
    let url = Url::parse(&hook.url)?;
    let secret = hex::decode(&hook.secret).map_err(|_| "the webhook's secret is not hex")?;
    let t = now_us() / 1_000_000;
    let headers = [
        ("Content-Type", "application/json".to_string()),
        (
            "User-Agent",
            format!("vantage-coordinator/{}", env!("CARGO_PKG_VERSION")),
        ),
        ("Vantage-Delivery", d.key.clone()),
        ("Vantage-Attempt", (d.attempts + 1).to_string()),
        (
            "Vantage-Signature",
            signature(&secret, t, d.body.as_bytes()),
        ),
    ];
    let timeout = Duration::from_millis(cfg.timeout_ms);
    match outbound::request(&url, &headers, d.body.as_bytes(), timeout, tls).await {
        Ok((status, _)) if (200..300).contains(&status) => Ok(()),
        Ok((status, body)) => Err(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body)
                .trim()
                .chars()
                .take(200)
                .collect::<String>()
        )),
        Err(e) => Err(e.to_string()),
    }
}

// ------------------------------------------------------------ managing

/// Webhooks one coordinator keeps at most.
const MAX_WEBHOOKS: usize = 100;

fn invalid(msg: String) -> ServiceError {
    ServiceError::invalid(msg)
}

/// Checks a new webhook's URL, filter and description.
fn validate(s: &Shared, r: &AddWebhookRequest) -> Result<Url, ServiceError> {
    let url = Url::parse(r.url.trim()).map_err(|e| invalid(format!("url: {e}")))?;
    if r.description.chars().count() > 200 || r.description.chars().any(char::is_control) {
        return Err(invalid(
            "description: at most 200 characters, no control characters".into(),
        ));
    }
    let f = r.filter.clone().unwrap_or_default();
    if !f.campaign_id.is_empty() && s.store.campaign(&f.campaign_id)?.is_none() {
        return Err(ServiceError::NotFound(format!(
            "no campaign with id {:?}",
            f.campaign_id
        )));
    }
    for c in &f.countries {
        if c.len() != 2 || !c.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(invalid(format!(
                "filter country {c:?}: two upper-case letters (ISO 3166), like CN"
            )));
        }
    }
    for k in &f.changes {
        if !crate::changes::KINDS.contains(&k.as_str()) {
            return Err(invalid(format!(
                "filter change {k:?}: one of {}",
                crate::changes::KINDS.join(", ")
            )));
        }
    }
    if f.targets.len() > 1_000
        || f.targets
            .iter()
            .any(|t| t.is_empty() || t.len() > 1_000 || t.chars().any(char::is_control))
    {
        return Err(invalid(
            "filter targets: at most 1000, each 1 to 1000 characters".into(),
        ));
    }
    Ok(url)
}

/// `AdminService.AddWebhook`: the webhook, and its secret (shown once).
pub fn add(s: &Shared, r: AddWebhookRequest) -> Result<AddWebhookResponse, ServiceError> {
    validate(s, &r)?;
    if s.store.webhooks()?.len() >= MAX_WEBHOOKS {
        return Err(ServiceError::invalid(format!(
            "at most {MAX_WEBHOOKS} webhooks; remove one first"
        )));
    }
    let mut secret = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
    let f = r.filter.unwrap_or_default();
    let rec = WebhookRecord {
        id: uuid::Uuid::now_v7().to_string(),
        url: r.url.trim().to_string(),
        secret: hex::encode(secret),
        campaign_id: f.campaign_id,
        countries: f.countries,
        targets: f.targets,
        changes: f.changes,
        description: r.description,
        created_us: now_us(),
        ..Default::default()
    };
    s.store.put_webhook(&rec)?;
    tracing::info!(webhook = %rec.id, url = %rec.url, "webhook added");
    Ok(AddWebhookResponse {
        webhook: Some(view(&rec, (0, 0))),
        secret: rec.secret,
    })
}

/// A webhook as the API shows it: never its secret.
fn view(h: &WebhookRecord, (pending, dead): (u64, u64)) -> Webhook {
    Webhook {
        id: h.id.clone(),
        url: h.url.clone(),
        filter: Some(h.filter()),
        description: h.description.clone(),
        created_us: h.created_us,
        key_id: hex::decode(&h.secret)
            .map(|k| key_id(&k))
            .unwrap_or_default(),
        pending,
        delivered: h.delivered,
        failed_attempts: h.failed_attempts,
        dead: dead.max(h.dead),
        last_error: h.last_error.clone(),
        last_success_us: h.last_success_us,
    }
}

/// `AdminService.ListWebhooks`.
pub fn list(s: &Shared) -> Result<ListWebhooksResponse, ServiceError> {
    let counts = s.store.delivery_counts()?;
    Ok(ListWebhooksResponse {
        webhooks: s
            .store
            .webhooks()?
            .iter()
            .map(|h| view(h, counts.get(&h.id).copied().unwrap_or_default()))
            .collect(),
    })
}

/// `AdminService.RemoveWebhook`: its queued deliveries go with it.
pub fn remove(s: &Shared, id: &str) -> Result<RemoveWebhookResponse, ServiceError> {
    match s.store.remove_webhook(id)? {
        Some(dropped) => {
            tracing::info!(webhook = %id, dropped, "webhook removed");
            Ok(RemoveWebhookResponse { dropped })
        }
        None => Err(ServiceError::NotFound(format!("no webhook with id {id:?}"))),
    }
}

/// `AdminService.TestWebhook`: queues a signed `ping`, due now.
pub fn test(s: &Shared, id: &str) -> Result<TestWebhookResponse, ServiceError> {
    let Some(h) = s.store.webhook(id)? else {
        return Err(ServiceError::NotFound(format!("no webhook with id {id:?}")));
    };
    let did = uuid::Uuid::now_v7().to_string();
    let now = now_us();
    let d = Delivery {
        id: did.clone(),
        webhook: h.id.clone(),
        key: did.clone(),
        body: super::body("ping", &did, &h.id, None),
        attempts: 0,
        first_us: now,
        last_error: String::new(),
    };
    s.store.queue_delivery(&d, now)?;
    Ok(TestWebhookResponse { delivery_id: did })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_a_changed_byte_or_an_old_time_does_not() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let body = br#"{"type":"ping"}"#;
        let h = signature(secret, 1_700_000_000, body);
        assert!(h.starts_with("t=1700000000,k="), "{h}");
        assert!(h.contains(&format!(",k={},", key_id(secret))));
        assert!(verify(secret, &h, body, 1_700_000_100, 300));
        assert!(!verify(
            secret,
            &h,
            br#"{"type":"pong"}"#,
            1_700_000_100,
            300
        ));
        assert!(!verify(b"another secret", &h, body, 1_700_000_100, 300));
        assert!(!verify(secret, &h, body, 1_700_000_400, 300));
        let forged = h.replace("t=1700000000", "t=1700000399");
        assert!(!verify(secret, &forged, body, 1_700_000_400, 300));
        assert!(!verify(secret, "v1=00", body, 1_700_000_000, 300));
        // The HMAC itself, against RFC 4231 test case 2.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[tokio::test]
    async fn a_delivery_failing_past_give_up_after_is_kept_as_dead_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let s = crate::server::test_state(dir.path());
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = add(
            &s,
            AddWebhookRequest {
                url: format!("http://127.0.0.1:{port}/h"),
                ..Default::default()
            },
        )
        .unwrap();
        let id = r.webhook.unwrap().id;
        test(&s, &id).unwrap();
        let cfg = Webhooks {
            give_up_after: "1h".into(),
            ..Default::default()
        };
        // A fresh one is retried...
        let due = s.store.due_deliveries(now_us(), 10).unwrap();
        send_all(&s, &cfg, None, &id, due).await;
        assert_eq!(s.store.delivery_counts().unwrap()[&id], (1, 0));
        // ...one queued longer ago than give_up_after is given up.
        let (key, mut d) = s.store.due_deliveries(i64::MAX - 1, 10).unwrap().remove(0);
        d.first_us -= 2 * 3600 * 1_000_000;
        send_all(&s, &cfg, None, &id, vec![(key, d)]).await;
        assert_eq!(s.store.delivery_counts().unwrap()[&id], (0, 1));
        let h = &list(&s).unwrap().webhooks[0];
        assert_eq!(
            (h.pending, h.dead, h.failed_attempts, h.delivered),
            (0, 1, 2, 0)
        );
        assert!(h.last_error.contains("connect"), "{}", h.last_error);
        assert_eq!(remove(&s, &id).unwrap().dropped, 0);
        assert!(remove(&s, &id).is_err());
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let cfg = Webhooks {
            retry_base_ms: 1_000,
            retry_max_ms: 60_000,
            ..Default::default()
        };
        let ms = |a, r| backoff(&cfg, a, r).as_millis() as u64;
        assert_eq!((ms(1, 0.0), ms(1, 1.0)), (500, 1_000));
        assert_eq!((ms(2, 0.0), ms(2, 1.0)), (1_000, 2_000));
        assert_eq!((ms(3, 0.5), ms(7, 1.0)), (3_000, 60_000));
        assert_eq!(ms(200, 1.0), 60_000);
        assert!((1..30).all(|a| ms(a, 0.3) <= ms(a + 1, 0.3)));
    }
}
