//! Enrollment: generate the key locally, prove possession, pin the CA from
//! the token, obtain a client certificate, write the identity.

use std::path::Path;
use std::time::Duration;

use vantage_proto::client::{connect_any, ConnectOptions};
use vantage_proto::token::EnrollToken;
use vantage_proto::v1::agent_service_client::AgentServiceClient;
use vantage_proto::v1::{EnrollRequest, Labels};

use crate::config::{AgentConfig, FILE as CONFIG_FILE};
use crate::identity::{self, Identity};

/// Enrollment failures, phrased for the volunteer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollError {
    #[error("the token is not valid: {0}")]
    Token(#[from] vantage_proto::token::TokenError),
    #[error("this agent is already enrolled as {0}; use a new --data-dir to enroll again")]
    AlreadyEnrolled(String),
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error("cannot reach the coordinator: {0}")]
    Connect(#[from] vantage_proto::client::ClientError),
    #[error("the coordinator refused enrollment: {0}")]
    Refused(String),
    #[error("writing {0}: {1}")]
    Io(String, std::io::Error),
}

/// Enrolls the agent in `dir` with `token`.
pub async fn enroll(dir: &Path, token: &str, labels: Labels) -> Result<Identity, EnrollError> {
    let parsed = EnrollToken::decode(token)?;
    if let Ok(existing) = Identity::load(dir) {
        return Err(EnrollError::AlreadyEnrolled(existing.agent_id));
    }
    let key = identity::load_or_create_key(dir)?;
    let opts = ConnectOptions {
        ca_sha256: parsed.ca.clone(),
        identity: None,
        connect_timeout: Duration::from_secs(10),
    };
    let channel = connect_any(&parsed.addrs, &opts).await?;
    let resp = AgentServiceClient::new(channel)
        .enroll(EnrollRequest {
            token: token.trim().to_string(),
            public_key: key.verifying_key().to_bytes().to_vec(),
            labels: Some(labels.clone()),
            proof: vantage_proto::envelope::enroll_proof(&key, token.trim()),
            software_version: vantage_proto::SOFTWARE_VERSION.into(),
        })
        .await
        .map_err(|s| EnrollError::Refused(s.message().to_string()))?
        .into_inner();
    let id = Identity {
        agent_id: resp.agent_id,
        coordinators: parsed.addrs,
        ca_sha256: parsed.ca,
        client_cert_pem: resp.client_cert_pem,
        ca_cert_pem: resp.ca_cert_pem,
        country: labels.country.to_ascii_uppercase(),
        asn: labels.asn,
        tags: labels.tags,
        enrolled_us: vantage_proto::now_us(),
    };
    id.save(dir)?;
    let cfg = dir.join(CONFIG_FILE);
    if !cfg.exists() {
        std::fs::write(&cfg, AgentConfig::default_file_text())
            .map_err(|e| EnrollError::Io(cfg.display().to_string(), e))?;
    }
    Ok(id)
}
