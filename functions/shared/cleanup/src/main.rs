//! `cleanup`: see `batchless_core::shared::steps::cleanup`. Wires in the data-patch workflow,
//! whose record an execution stopped or timed out before RecordOutcome leaves open.

use batchless_core::patch::{self, store};
use batchless_core::sfn::ExecutionStatusChange;
use batchless_core::shared::steps::cleanup as step;
use batchless_core::Error;

struct Patches(store::Backend);

impl step::WorkflowRecords for Patches {
    async fn end_unrecorded(&self, change: &ExecutionStatusChange) -> Result<bool, Error> {
        match patch::patch_id_of_execution(&change.execution_arn) {
            Some(id) => store::end_unrecorded(&self.0.store(), id, change.status.as_str()).await,
            None => Ok(false),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let deps = async |sdk: &_| {
        let patches = Patches(store::Backend::from_env(sdk)?);
        Ok::<_, Error>(step::Deps::from_env(sdk).await?.with_workflows(patches))
    };
    batchless_core::lambda::run(deps, step::handle).await
}
