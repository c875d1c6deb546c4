//! `encrypted` probe. (Not yet implemented: returns a refusal.)

use super::{ProbeContext, ProbeOutput};

pub async fn run(_input: &vantage_proto::v1::EncryptedInput, _ctx: &ProbeContext) -> ProbeOutput {
    ProbeOutput::refused("unsupported: the encrypted probe is not implemented yet")
}
