//! `lock`: acquire or release a named lease in the locks table. `acquire` fails `LockHeld`
//! (naming the holder) while someone else holds an unexpired lease; `release` only releases
//! a lease the caller owns.

use batchless_core::platform::input::parse_strict;
use batchless_core::{platform::aws, platform::config, platform::time, shared::lock, Error};
use lambda_runtime::{service_fn, LambdaEvent};
use serde::Deserialize;
use serde_json::{json, Value};

struct Deps {
    db: aws_sdk_dynamodb::Client,
    table: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", tag = "action")]
enum Event {
    #[serde(rename = "acquire", rename_all = "camelCase")]
    Acquire {
        lock: String,
        owner: String,
        ttl_seconds: u64,
    },
    #[serde(rename = "release")]
    Release { lock: String, owner: String },
}

async fn handler(event: Value, deps: &Deps) -> Result<Value, Error> {
    match parse_strict(event)? {
        Event::Acquire {
            lock: name,
            owner,
            ttl_seconds,
        } => {
            let ttl = chrono::Duration::seconds(ttl_seconds.min(7 * 24 * 3600) as i64);
            let lease =
                lock::acquire(&deps.db, &deps.table, &name, &owner, ttl, time::now()).await?;
            tracing::info!(lock = %name, %owner, expires_at = %lease.expires_at, "lock acquired");
            Ok(serde_json::to_value(lease).expect("lease serializes"))
        }
        Event::Release { lock: name, owner } => {
            let released = lock::release(&deps.db, &deps.table, &name, &owner).await?;
            tracing::info!(lock = %name, %owner, released, "lock release");
            Ok(json!({ "lock": name, "released": released }))
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let deps = Deps {
        db: aws::dynamodb(&sdk),
        table: config::required("LOCKS_TABLE")?,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler(event.payload, &deps)
    }))
    .await
}
