//! `notify`: the migration's `Notify` step (`batchless_core::migration::steps::notify`).
//! Temporarily also the scheduled jobs' plain messages, see `others.rs` (removed when the
//! scheduled job has its own notify step).

mod others;

use batchless_core::migration::steps::notify as step;
use batchless_core::{lambda, Error};
use others::Deps;
use serde_json::Value;

async fn handle(deps: &Deps, event: Value) -> Result<Value, Error> {
    match others::message(deps, &event)? {
        Some(message) => others::post(deps, message).await, // removed with others.rs
        None => lambda::invoke(&deps.migration, &step::handle, event).await,
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda::run(Deps::from_env, handle).await
}
