//! `validate-input`: the migration's `ValidateInput` step (`migration::steps::validate_input`).
//! Temporarily also the data patch's (`"workflow": "data-patch"`), see `data_patch.rs`
//! (removed when data-patch has its own validate/notify).

mod data_patch;

use batchless_core::migration::steps::validate_input as step;
use batchless_core::{lambda, Error};
use data_patch::Deps;
use serde_json::Value;

async fn handle(deps: &Deps, event: Value) -> Result<Value, Error> {
    match data_patch::is_data_patch(&event) {
        true => data_patch::validate(deps, event), // removed with data_patch.rs
        false => lambda::invoke(&deps.migration, &step::handle, event).await,
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda::run(Deps::from_env, handle).await
}
