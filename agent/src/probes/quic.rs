//! `quic` probe. (Not yet implemented: returns a refusal.)

use super::{ProbeContext, ProbeOutput};

pub async fn run(_input: &vantage_proto::v1::QuicInput, _ctx: &ProbeContext) -> ProbeOutput {
    ProbeOutput::refused("unsupported: the quic probe is not implemented yet")
}
