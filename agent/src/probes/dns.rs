//! `dns` probe. (Not yet implemented: returns a refusal.)

use super::{ProbeContext, ProbeOutput};

pub async fn run(_input: &vantage_proto::v1::DnsInput, _ctx: &ProbeContext) -> ProbeOutput {
    ProbeOutput::refused("unsupported: the dns probe is not implemented yet")
}

pub async fn run_injection(_input: &vantage_proto::v1::DnsInput, _ctx: &ProbeContext) -> ProbeOutput {
    ProbeOutput::refused("unsupported: the dns probe is not implemented yet")
}

