//! gRPC services: `AgentService` (enrollment and sessions), `AdminService`
//! (admin certificate only), `QueryService` (read role), and the standard
//! health and reflection services (`standard`). Handlers check
//! the caller, then hand the work to the store, the hub or the ingest path.

pub mod admin;
pub mod agent;
pub mod query;
pub mod standard;

use tonic::Request;

use crate::errors::ServiceError;
use crate::state::Shared;

/// SHA-256 of the verified client certificate, if the caller presented one.
pub(crate) fn peer_fingerprint<T>(req: &Request<T>) -> Option<String> {
    req.peer_certs()
        .and_then(|c| c.first().map(|d| vantage_proto::cert_fingerprint(d)))
}

/// Refuses callers without the admin certificate.
pub(crate) fn require_admin<T>(shared: &Shared, req: &Request<T>) -> Result<(), ServiceError> {
    match peer_fingerprint(req) {
        Some(fp) if fp == shared.admin_fingerprint => Ok(()),
        Some(_) => {
            shared.count("refused/not_admin");
            Err(ServiceError::PermissionDenied(
                "this call needs the admin certificate".into(),
            ))
        }
        None => {
            shared.count("refused/no_certificate");
            Err(ServiceError::Unauthenticated(
                "this call needs a client certificate".into(),
            ))
        }
    }
}
