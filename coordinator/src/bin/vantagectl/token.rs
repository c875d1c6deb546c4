//! `vantagectl token`: enrollment tokens.

use anyhow::Result;
use clap::Subcommand;
use tonic::transport::Channel;
use vantage_proto::v1::CreateTokenRequest;

use crate::common::{admin, human, print_one, Output};

#[derive(Subcommand)]
pub(crate) enum TokenCmd {
    /// Create an enrollment token.
    Create {
        /// How many agents may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Lifetime, e.g. 30m, 24h, 7d.
        #[arg(long, default_value = "24h")]
        expires: humantime::Duration,
        /// Tags given to agents enrolled with it.
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
    },
}

pub(crate) async fn run(ch: Channel, output: Output, cmd: &TokenCmd) -> Result<()> {
    let TokenCmd::Create {
        uses,
        expires,
        tags,
    } = cmd;
    let r = admin(ch)
        .create_token(CreateTokenRequest {
            uses: *uses,
            ttl_s: expires.as_secs(),
            tags: tags.clone(),
        })
        .await
        .map_err(human)?
        .into_inner();
    print_one(output, &r, false, || {
        println!("{}", r.token);
        eprintln!("valid for {uses} enrollment(s), until {expires} from now");
    })
}
