//! One table from service errors to gRPC status codes and HTTP status
//! codes, so every face agrees on what went wrong. Handlers return a
//! [`ServiceError`]; the gRPC face converts it with `From` (into
//! `tonic::Status`, with `retry-after` metadata when rate-limited), the HTTP
//! face answers it as JSON (`crate::http`). No handler builds a status by
//! hand. [`ServeError`] is what keeps the coordinator from serving.

use tonic::Code;

/// What went wrong, as callers see it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    ResourceExhausted(String),
    /// A caller's rate limit: the answer says when to retry
    /// (`Retry-After`, or `retry-after` metadata on gRPC).
    #[error("{message}")]
    RateLimited { message: String, retry_after_s: u64 },
    /// The work was cut short by something newer (a replaced session).
    #[error("{0}")]
    Aborted(String),
    /// Cannot be done now but may be later (a full disk, a store that cannot
    /// commit): the caller keeps its data and retries.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// A bad argument, as a sentence naming it.
    pub fn invalid(msg: impl Into<String>) -> ServiceError {
        ServiceError::InvalidArgument(msg.into())
    }

    /// (gRPC code, HTTP status) for this error.
    pub fn codes(&self) -> (Code, u16) {
        match self {
            ServiceError::InvalidArgument(_) => (Code::InvalidArgument, 400),
            ServiceError::Unauthenticated(_) => (Code::Unauthenticated, 401),
            ServiceError::PermissionDenied(_) => (Code::PermissionDenied, 403),
            ServiceError::NotFound(_) => (Code::NotFound, 404),
            ServiceError::ResourceExhausted(_) | ServiceError::RateLimited { .. } => {
                (Code::ResourceExhausted, 429)
            }
            ServiceError::Aborted(_) => (Code::Aborted, 409),
            ServiceError::Unavailable(_) => (Code::Unavailable, 503),
            ServiceError::Internal(_) => (Code::Internal, 500),
        }
    }

    /// Seconds after which a refused caller may retry, when known.
    pub fn retry_after_s(&self) -> Option<u64> {
        match self {
            ServiceError::RateLimited { retry_after_s, .. } => Some(*retry_after_s),
            _ => None,
        }
    }
}

impl From<ServiceError> for tonic::Status {
    fn from(e: ServiceError) -> Self {
        let mut status = tonic::Status::new(e.codes().0, e.to_string());
        if let Some(v) = e.retry_after_s().and_then(|s| s.to_string().parse().ok()) {
            status.metadata_mut().insert("retry-after", v);
        }
        status
    }
}

impl From<crate::store::StoreError> for ServiceError {
    fn from(e: crate::store::StoreError) -> Self {
        ServiceError::Internal(e.to_string())
    }
}

/// Serving failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Transport(#[from] tonic::transport::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_table_for_both_faces() {
        let limited = ServiceError::RateLimited {
            message: "slow down".into(),
            retry_after_s: 7,
        };
        assert_eq!(limited.codes(), (Code::ResourceExhausted, 429));
        let status = tonic::Status::from(limited);
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), "slow down");
        assert_eq!(status.metadata().get("retry-after").unwrap(), "7");
        let full = tonic::Status::from(ServiceError::Unavailable("disk full".into()));
        assert_eq!(
            (full.code(), full.message()),
            (Code::Unavailable, "disk full")
        );
        assert_eq!(ServiceError::Unavailable(String::new()).codes().1, 503);
        assert!(tonic::Status::from(ServiceError::invalid("x"))
            .metadata()
            .get("retry-after")
            .is_none());
    }
}
