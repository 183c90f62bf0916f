//! `batchless follow`: attach to an execution (running or ended) and follow it live.

use std::process::ExitCode;

use anyhow::Result;

use crate::context::Context;
use crate::sfn::{self, PollArgs};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The execution ARN.
    pub execution_arn: String,
    #[command(flatten)]
    pub poll: PollArgs,
}

/// Exit 0 when the execution succeeded, 1 otherwise, 130 on Ctrl-C (see [`sfn::follow`]).
pub async fn run(cx: &Context, args: Args) -> Result<ExitCode> {
    let aws = cx.aws().await?;
    sfn::follow(&aws.sfn(), &args.execution_arn, args.poll.interval()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arn_is_required() {
        let a: Args = crate::testing::parse_args(&["arn:x", "--poll-ms", "50"]).unwrap();
        assert_eq!((a.execution_arn.as_str(), a.poll.poll_ms), ("arn:x", 50));
        assert!(crate::testing::parse_args::<Args>(&[]).is_err());
    }
}
