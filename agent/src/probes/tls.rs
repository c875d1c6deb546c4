//! `tls` probe. (Not yet implemented: returns a refusal.)

use super::{ProbeContext, ProbeOutput};

pub async fn run(_input: &vantage_proto::v1::TlsInput, _ctx: &ProbeContext) -> ProbeOutput {
    ProbeOutput::refused("unsupported: the tls probe is not implemented yet")
}

