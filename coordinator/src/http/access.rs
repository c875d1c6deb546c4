//! Who may read: a bearer token whose SHA-256 is in `read_tokens`, or
//! anyone on a loopback listener when no tokens are configured. Each caller
//! (token, or the anonymous loopback caller) has a token bucket of
//! `http_rate_per_minute` requests; an empty bucket answers 429 with
//! `Retry-After`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::{App, HttpError};
use crate::config::Config;
use crate::errors::ServiceError;

/// Access rules and per-caller buckets.
pub(crate) struct Access {
    tokens: Vec<[u8; 32]>,
    /// No tokens configured and a loopback listener: anyone may read.
    open: bool,
    per_minute: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Access {
    /// Checks the configuration: hashes must be 64 hex digits, and a
    /// non-loopback listener needs tokens.
    pub(crate) fn new(config: &Config, loopback: bool) -> Result<Access, String> {
        let mut tokens = Vec::new();
        for (i, t) in config.read_tokens.iter().enumerate() {
            let h = hex::decode(t.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    format!(
                        "read_tokens[{i}] is not a SHA-256 in hex (64 hex digits); \
                         make one with: printf %s \"$TOKEN\" | sha256sum"
                    )
                })?;
            tokens.push(h);
        }
        if tokens.is_empty() && !loopback {
            return Err(format!(
                "http_listen {:?} is not a loopback address, so read_tokens must list at \
                 least one token hash",
                config.http_listen.clone().unwrap_or_default()
            ));
        }
        Ok(Access {
            open: tokens.is_empty(),
            tokens,
            per_minute: config.http_rate_per_minute,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// The caller's rate-limit key, or why it may not read.
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<String, ServiceError> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .map(|v| {
                v.to_str()
                    .ok()
                    .and_then(|s| s.strip_prefix("Bearer "))
                    .map(str::trim)
                    .ok_or_else(|| {
                        ServiceError::Unauthenticated(
                            "the Authorization header must be \"Bearer <read token>\"".into(),
                        )
                    })
            })
            .transpose()?;
        if self.open {
            return Ok("anonymous".into());
        }
        let Some(token) = bearer else {
            return Err(ServiceError::Unauthenticated(
                "this API needs a read token: Authorization: Bearer <token>".into(),
            ));
        };
        let h: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if self.tokens.iter().any(|t| ct_eq(t, &h)) {
            Ok(hex::encode(&h[..8]))
        } else {
            Err(ServiceError::Unauthenticated("unknown read token".into()))
        }
    }

    /// Takes one request from `key`'s bucket; `Err(seconds)` when empty.
    pub(crate) fn take(&self, key: &str, now: Instant) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let cap = self.per_minute as f64;
        let per_s = cap / 60.0;
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = b.entry(key.to_string()).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        let dt = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + dt * per_s).min(cap);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / per_s).ceil().max(1.0) as u64)
        }
    }
}

/// Middleware: authenticate, then rate-limit, then the handler.
pub(crate) async fn guard(State(app): State<App>, req: Request, next: Next) -> Response {
    let key = match app.access.authenticate(req.headers()) {
        Ok(k) => k,
        Err(e) => {
            super::metrics::count_http_refusal("unauthenticated");
            return HttpError::from(e).into_response();
        }
    };
    if let Err(secs) = app.access.take(&key, Instant::now()) {
        super::metrics::count_http_refusal("rate_limited");
        return HttpError {
            error: ServiceError::ResourceExhausted(format!(
                "rate limit of {} requests per minute reached; retry in {secs} s",
                app.access.per_minute
            )),
            retry_after_s: Some(secs),
        }
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn config(tokens: &[&str], rate: u32) -> Config {
        let mut c = Config::new("127.0.0.1:1".into(), vec![]);
        c.http_listen = Some("0.0.0.0:9090".into());
        c.read_tokens = tokens
            .iter()
            .map(|t| hex::encode(Sha256::digest(t.as_bytes())))
            .collect();
        c.http_rate_per_minute = rate;
        c
    }

    fn bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
        h
    }

    #[test]
    fn tokens_are_checked_by_hash() {
        let a = Access::new(&config(&["s3cret"], 60), false).unwrap();
        assert!(a.authenticate(&bearer("s3cret")).is_ok());
        assert!(a.authenticate(&bearer("wrong")).is_err());
        assert!(a.authenticate(&HeaderMap::new()).is_err());
        // No tokens: only a loopback listener may serve.
        assert!(Access::new(&config(&[], 60), false).is_err());
        let open = Access::new(&config(&[], 60), true).unwrap();
        assert!(open.authenticate(&HeaderMap::new()).is_ok());
        let mut bad = config(&[], 60);
        bad.read_tokens = vec!["xyz".into()];
        assert!(Access::new(&bad, true)
            .err()
            .unwrap_or_default()
            .contains("read_tokens[0]"));
    }

    #[test]
    fn bucket_refills_at_the_configured_rate() {
        let a = Access::new(&config(&["t"], 2), false).unwrap();
        let t0 = Instant::now();
        assert!(a.take("k", t0).is_ok());
        assert!(a.take("k", t0).is_ok());
        let wait = a.take("k", t0).unwrap_err();
        assert_eq!(wait, 30);
        assert!(a.take("other", t0).is_ok());
        assert!(a.take("k", t0 + std::time::Duration::from_secs(31)).is_ok());
    }
}
