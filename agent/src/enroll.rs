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
    #[error("consent was not given: {0}")]
    NoConsent(String),
}

/// Where the volunteer's acceptance of [`CONSENT_NOTICE`] is recorded.
pub const CONSENT_FILE: &str = "consent.json";

/// Version of [`CONSENT_NOTICE`]; bump it when the notice changes meaning.
pub const CONSENT_VERSION: u32 = 1;

/// The plain-language notice a volunteer must accept before enrolling.
pub const CONSENT_NOTICE: &str = "\
Before you enroll: what running a Vantage agent means
======================================================

What the agent does
  It connects to the coordinator named in your token and, when asked, tests
  whether websites and internet services can be reached from your network:
  DNS lookups, TCP connections, TLS and HTTP requests, QUIC, app store
  lookups, and - only if you enable them in agent.toml - VPN (OpenVPN,
  WireGuard), Tor and fully-encrypted-proxy probes. It never probes your
  own local network unless you set allow_private_targets = true.

What others on your network can see
  Your internet provider, your employer or school network, and your
  government can see that this computer connects to the tested sites and,
  if enabled, to VPN servers and Tor relays, and that it talks to the
  Vantage coordinator. In some countries visiting or testing blocked
  services can draw attention or carry legal risk. Only run the agent if
  you accept that risk.

What data leaves this computer
  - Measurement results (which address was tested, what happened, timings),
    signed with this agent's own key; the key never leaves this computer.
  - Your country and network (ASN), only if you give them and only while
    share_network_labels = true in agent.toml.
  - Never your browsing history, files, passwords or other traffic.

You can stop at any time: stop the agent (systemctl stop vantage-agent) and
delete its data directory. Change what it may test in agent.toml.
";

/// A recorded acceptance of the consent notice.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ConsentRecord {
    /// Version of the notice that was accepted.
    pub version: u32,
    /// When (microseconds since the epoch).
    pub accepted_us: i64,
    /// How: "prompt" (typed yes) or "flag" (--accept-consent).
    pub method: String,
    /// SHA-256 of the notice text accepted.
    pub notice_sha256: String,
}

/// The recorded acceptance in `dir`, if any (and of the current version).
pub fn consent(dir: &Path) -> Option<ConsentRecord> {
    let text = std::fs::read(dir.join(CONSENT_FILE)).ok()?;
    let rec: ConsentRecord = serde_json::from_slice(&text).ok()?;
    (rec.version == CONSENT_VERSION).then_some(rec)
}

/// Records that the volunteer accepted the notice (`method`: "prompt" or
/// "flag"), creating `dir` if needed.
pub fn record_consent(dir: &Path, method: &str) -> Result<ConsentRecord, EnrollError> {
    use sha2::Digest;
    let io = |e| EnrollError::Io(dir.join(CONSENT_FILE).display().to_string(), e);
    std::fs::create_dir_all(dir).map_err(io)?;
    let rec = ConsentRecord {
        version: CONSENT_VERSION,
        accepted_us: vantage_proto::now_us(),
        method: method.to_string(),
        notice_sha256: hex::encode(sha2::Sha256::digest(CONSENT_NOTICE.as_bytes())),
    };
    let json = serde_json::to_vec_pretty(&rec).unwrap_or_default();
    let tmp = dir.join(format!(".{CONSENT_FILE}.tmp"));
    std::fs::write(&tmp, json)
        .and_then(|_| std::fs::rename(&tmp, dir.join(CONSENT_FILE)))
        .map_err(io)?;
    Ok(rec)
}

/// Reads the volunteer's answer to the notice: `Ok(())` only for `yes`
/// (case-insensitive, surrounding blanks ignored).
pub fn check_answer(answer: &str) -> Result<(), EnrollError> {
    if answer.trim().eq_ignore_ascii_case("yes") {
        Ok(())
    } else {
        Err(EnrollError::NoConsent(format!(
            "you answered {:?}; enrollment needs the answer \"yes\"",
            answer.trim()
        )))
    }
}

/// Checks the token and that `dir` is not enrolled yet, before asking for
/// consent or touching the network.
pub fn precheck(dir: &Path, token: &str) -> Result<(), EnrollError> {
    EnrollToken::decode(token)?;
    if let Ok(existing) = Identity::load(dir) {
        return Err(EnrollError::AlreadyEnrolled(existing.agent_id));
    }
    Ok(())
}

/// Enrolls the agent in `dir` with `token`. Consent is the caller's job
/// (see [`consent`] and [`record_consent`]).
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
        bind: None,
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

/// What `vantage-agent enroll` tells the volunteer about probe kinds: which
/// ones `agent.toml` in `dir` turns on, which it leaves off, and how to turn
/// one on. Tasks of a kind that is off are never sent to this agent (the
/// coordinator counts them as skipped for want of consent).
pub fn kinds_notice(dir: &Path) -> String {
    let path = dir.join(CONFIG_FILE);
    let cfg = match AgentConfig::load(dir) {
        Ok(c) => c,
        Err(e) => return format!("Probe kinds: cannot read {}: {e}\n", path.display()),
    };
    let on: Vec<&str> = vantage_proto::PROBE_KINDS
        .iter()
        .copied()
        .filter(|k| cfg.consent.kinds.iter().any(|c| c == k))
        .collect();
    let off: Vec<&str> = vantage_proto::PROBE_KINDS
        .iter()
        .copied()
        .filter(|k| !on.contains(k))
        .collect();
    let mut out = format!(
        "Probe kinds on:  {}\n",
        if on.is_empty() {
            "none".to_string()
        } else {
            on.join(", ")
        }
    );
    if off.is_empty() {
        out.push_str("Probe kinds off: none\n");
        return out;
    }
    out.push_str(&format!(
        "Probe kinds off: {} (VPN, Tor and encrypted probes can draw attention to your connection)\n",
        off.join(", ")
    ));
    let mut example: Vec<String> = on.iter().map(|k| format!("{k:?}")).collect();
    example.push(format!("{:?}", off[0]));
    out.push_str(&format!(
        "  To turn one on, add it to `kinds` under [consent] in {}, e.g.\n    kinds = [{}]\n  then restart the agent (systemctl restart vantage-agent).\n",
        path.display(),
        example.join(", ")
    ));
    out
}

#[cfg(test)]
mod kinds_notice_tests {
    use super::*;

    #[test]
    fn names_the_kinds_that_are_off_and_how_to_turn_them_on() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(CONFIG_FILE), AgentConfig::default_file_text()).unwrap();
        let text = kinds_notice(d.path());
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix:?} line in {text}"))
                .to_string()
        };
        // The kinds a line lists, as words ("tor" is not in "app_store").
        let kinds = |l: String| -> Vec<String> {
            l.split([' ', ',', ':', '('])
                .map(str::to_string)
                .filter(|w| !w.is_empty())
                .collect()
        };
        let on = kinds(line("Probe kinds on:"));
        let off = kinds(line("Probe kinds off:"));
        let has = |list: &[String], k: &str| list.iter().any(|w| w == k);
        for k in crate::config::DEFAULT_KINDS {
            assert!(has(&on, k), "{k} on: {text}");
        }
        for k in vantage_proto::PROBE_KINDS
            .iter()
            .filter(|k| !crate::config::DEFAULT_KINDS.contains(k))
        {
            assert!(has(&off, k) && !has(&on, k), "{k} off: {text}");
        }
        assert!(
            text.contains("[consent]") && text.contains("agent.toml"),
            "{text}"
        );
        // The example line is a valid kinds list with one more kind on.
        let example = line("    kinds = ");
        let toml_text = AgentConfig::default_file_text().replace(
            &AgentConfig::default_file_text()
                .lines()
                .find(|l| l.starts_with("kinds = "))
                .unwrap()
                .to_string(),
            example.trim(),
        );
        let cfg = AgentConfig::parse(&toml_text).unwrap();
        assert_eq!(
            cfg.consent.kinds.len(),
            crate::config::DEFAULT_KINDS.len() + 1
        );

        // Everything on: nothing to explain.
        let all = vantage_proto::PROBE_KINDS
            .iter()
            .map(|k| format!("{k:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(
            d.path().join(CONFIG_FILE),
            toml_text.replace(example.trim(), &format!("kinds = [{all}]")),
        )
        .unwrap();
        let text = kinds_notice(d.path());
        assert!(text.contains("Probe kinds off: none"), "{text}");
        assert!(!text.contains("To turn one on"), "{text}");
    }
}
