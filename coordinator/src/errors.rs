//! One table from service errors to gRPC status codes (and, for the HTTP
//! face, HTTP status codes), so both faces agree on what went wrong.

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
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// (gRPC code, HTTP status) for this error.
    pub fn codes(&self) -> (Code, u16) {
        match self {
            ServiceError::InvalidArgument(_) => (Code::InvalidArgument, 400),
            ServiceError::Unauthenticated(_) => (Code::Unauthenticated, 401),
            ServiceError::PermissionDenied(_) => (Code::PermissionDenied, 403),
            ServiceError::NotFound(_) => (Code::NotFound, 404),
            ServiceError::ResourceExhausted(_) => (Code::ResourceExhausted, 429),
            ServiceError::Internal(_) => (Code::Internal, 500),
        }
    }
}

impl From<ServiceError> for tonic::Status {
    fn from(e: ServiceError) -> Self {
        tonic::Status::new(e.codes().0, e.to_string())
    }
}

impl From<crate::store::StoreError> for ServiceError {
    fn from(e: crate::store::StoreError) -> Self {
        ServiceError::Internal(e.to_string())
    }
}
