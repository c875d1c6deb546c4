//! Read tokens and their rate limit, shared by the HTTP API and gRPC
//! `QueryService`: a token is good when its SHA-256 is listed in
//! `read_tokens`, and each caller key (a token, or the HTTP face's
//! anonymous loopback caller) has one token bucket of
//! `http_rate_per_minute` requests, whichever face it calls.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::errors::ServiceError;

/// The configured read tokens (hashed) and the per-caller buckets.
pub(crate) struct ReadTokens {
    tokens: Vec<[u8; 32]>,
    pub(crate) per_minute: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl ReadTokens {
    /// Checks the configuration: hashes must be 64 hex digits.
    pub(crate) fn new(config: &Config) -> Result<ReadTokens, String> {
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
        Ok(ReadTokens {
            tokens,
            per_minute: config.http_rate_per_minute,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// No tokens configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The rate-limit key of a presented token, or why it is refused.
    pub(crate) fn check(&self, token: &str) -> Result<String, ServiceError> {
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

    /// The refusal for an empty bucket.
    pub(crate) fn exhausted(&self, secs: u64) -> ServiceError {
        ServiceError::RateLimited {
            message: format!(
                "rate limit of {} requests per minute reached; retry in {secs} s",
                self.per_minute
            ),
            retry_after_s: secs,
        }
    }
}
