//! Who may read: a bearer token whose SHA-256 is in `read_tokens`, or
//! anyone on a loopback listener when no tokens are configured. Each caller
//! (token, or the anonymous loopback caller) has a token bucket of
//! `http_rate_per_minute` requests; an empty bucket answers 429 with
//! `Retry-After`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::App;
use crate::config::Config;
use crate::errors::ServiceError;
use crate::query::access::ReadTokens;

/// Access rules of the HTTP face; the tokens and buckets are shared with
/// gRPC `QueryService`.
pub(crate) struct Access {
    readers: Arc<ReadTokens>,
    /// No tokens configured and a loopback listener: anyone may read.
    open: bool,
}

impl Access {
    /// Checks the configuration: hashes must be 64 hex digits, and a
    /// non-loopback listener needs tokens.
    #[cfg(test)]
    pub(crate) fn new(config: &Config, loopback: bool) -> Result<Access, String> {
        Access::with(Arc::new(ReadTokens::new(config)?), config, loopback)
    }

    /// The same over tokens already checked (and shared with gRPC).
    pub(crate) fn with(
        readers: Arc<ReadTokens>,
        config: &Config,
        loopback: bool,
    ) -> Result<Access, String> {
        if readers.is_empty() && !loopback {
            return Err(format!(
                "http_listen {:?} is not a loopback address, so read_tokens must list at \
                 least one token hash",
                config.http_listen.clone().unwrap_or_default()
            ));
        }
        Ok(Access {
            open: readers.is_empty(),
            readers,
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
        self.readers.check(token)
    }

    /// Takes one request from `key`'s bucket; `Err(seconds)` when empty.
    pub(crate) fn take(&self, key: &str, now: Instant) -> Result<(), u64> {
        self.readers.take(key, now)
    }
}

/// Middleware: authenticate, then rate-limit, then the handler.
pub(crate) async fn guard(State(app): State<App>, req: Request, next: Next) -> Response {
    let key = match app.access.authenticate(req.headers()) {
        Ok(k) => k,
        Err(e) => {
            crate::metrics::count_http_refusal("unauthenticated");
            return e.into_response();
        }
    };
    if let Err(secs) = app.access.take(&key, Instant::now()) {
        crate::metrics::count_http_refusal("rate_limited");
        return app.access.readers.exhausted(secs).into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use sha2::{Digest, Sha256};

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
