//! A `SignedResult` off the wire: prost decoding, the Measurement inside,
//! Ed25519 verification (single and batch) and the coordinator's stateless
//! ingest checks. None may panic; a forged envelope must never verify.
#![no_main]

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use vantage_coordinator::ingest::{check_envelope, AgentIdentity};
use vantage_proto::envelope;
use vantage_proto::v1::SignedResult;

const AGENT: &str = "01890000-0000-7000-8000-000000000001";

fuzz_target!(|data: &[u8]| {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let vk = key.verifying_key();
    let Ok(env) = SignedResult::decode(data) else {
        // Also try the bytes as a bare measurement body.
        let env = SignedResult {
            measurement: data.to_vec().into(),
            signature: vec![0u8; 64].into(),
        };
        let _ = envelope::decode(&env);
        assert!(envelope::verify(&vk, &env).is_err());
        return;
    };
    let _ = envelope::decode(&env);
    let single = envelope::verify(&vk, &env);
    let batch = envelope::verify_batch(&[(&vk, &env), (&vk, &env)]);
    assert_eq!(batch.len(), 2);
    assert_eq!(
        batch[0].is_ok(),
        single.is_ok(),
        "batch and single disagree"
    );
    let agent = AgentIdentity {
        agent_id: AGENT.into(),
        key16: envelope::parse_id(AGENT).unwrap(),
        key: vk,
    };
    let checked = check_envelope(&agent, env.clone(), 1_700_000_000_000_000);
    if checked.is_ok() {
        assert!(
            single.is_ok(),
            "ingest accepted an envelope that does not verify"
        );
    }
    // Re-signing the decoded body must verify (the envelope helpers agree).
    if let Ok(m) = envelope::decode(&env) {
        let again = envelope::sign(&key, &m);
        assert!(envelope::verify(&vk, &again).is_ok());
    }
});
