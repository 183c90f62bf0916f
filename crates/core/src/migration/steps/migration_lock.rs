//! `migration-lock` (the `AcquireLock` and `ReleaseLock` states): acquire or release the
//! migration lock (`migration:<environment>`, a lease in the locks table). `acquire` fails
//! `LockHeld` (naming the holder) while another execution holds an unexpired lease, and
//! re-acquiring by the same execution succeeds; `release` only releases a lease the caller
//! owns.

use aws_types::SdkConfig;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::platform::{aws, config, time};
use crate::shared::lock::{self, Lease};

/// No lease outlives a week, whatever the input asks.
pub const MAX_TTL_SECONDS: u64 = 7 * 24 * 3600;

pub struct Deps {
    pub db: aws_sdk_dynamodb::Client,
    pub table: String,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps {
            db: aws::dynamodb(sdk),
            table: config::required("LOCKS_TABLE")?,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", tag = "action")]
pub enum Input {
    #[serde(rename = "acquire", rename_all = "camelCase")]
    Acquire {
        lock: String,
        owner: String,
        ttl_seconds: u64,
    },
    #[serde(rename = "release")]
    Release { lock: String, owner: String },
}

#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Output {
    Acquired(Lease),
    Released { lock: String, released: bool },
}

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    match input {
        Input::Acquire {
            lock: name,
            owner,
            ttl_seconds,
        } => {
            let ttl = chrono::Duration::seconds(ttl_seconds.min(MAX_TTL_SECONDS) as i64);
            let lease =
                lock::acquire(&deps.db, &deps.table, &name, &owner, ttl, time::now()).await?;
            tracing::info!(lock = %name, %owner, expires_at = %lease.expires_at, "lock acquired");
            Ok(Output::Acquired(lease))
        }
        Input::Release { lock: name, owner } => {
            let released = lock::release(&deps.db, &deps.table, &name, &owner).await?;
            tracing::info!(lock = %name, %owner, released, "lock release");
            Ok(Output::Released {
                lock: name,
                released,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lambda::invoke;
    use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;

    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use serde_json::json;

    const OWNER: &str = "arn:aws:states:us-east-1:1:execution:m:e1";

    fn deps(rules: &[&Rule]) -> Deps {
        Deps {
            db: mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, rules),
            table: "locks".into(),
        }
    }

    fn conditional_failed_put() -> Rule {
        crate::testing::put_item_exists()
    }

    #[tokio::test]
    async fn acquire_writes_a_lease_that_expires_and_is_conditional() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                let item = r.item().unwrap();
                r.table_name() == Some("locks")
                    && item["lockName"].as_s().unwrap() == "migration:staging"
                    && item["owner"].as_s().unwrap() == OWNER
                    && r.condition_expression().is_some_and(|c| {
                        c.contains("attribute_not_exists(lockName)")
                            && c.contains("expiresAt < :now")
                    })
            })
            .then_output(|| PutItemOutput::builder().build());
        let d = deps(&[&put]);
        let out = invoke(
            &d,
            &handle,
            json!({"action": "acquire", "lock": "migration:staging", "owner": OWNER, "ttlSeconds": 30 * 24 * 3600}),
        )
        .await
        .unwrap();
        assert_eq!(put.num_calls(), 1);
        assert_eq!(out["lockName"], "migration:staging");
        let acquired = time::parse("acquiredAt", out["acquiredAt"].as_str().unwrap()).unwrap();
        let expires = time::parse("expiresAt", out["expiresAt"].as_str().unwrap()).unwrap();
        // Capped at a week.
        assert_eq!(
            time::seconds_between(acquired, expires),
            MAX_TTL_SECONDS as i64
        );
    }

    #[tokio::test]
    async fn a_lock_held_by_another_execution_fails_lock_held_naming_it() {
        let put = conditional_failed_put();
        let get = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| {
            GetItemOutput::builder()
                .set_item(Some(crate::platform::dynamo::to_item(&Lease {
                    lock_name: "migration:staging".into(),
                    owner: "arn:other".into(),
                    acquired_at: "2026-12-01T00:00:00Z".into(),
                    expires_at: "2026-12-01T04:00:00Z".into(),
                })))
                .build()
        });
        let d = deps(&[&put, &get]);
        let err = handle(
            &d,
            Input::Acquire {
                lock: "migration:staging".into(),
                owner: OWNER.into(),
                ttl_seconds: 60,
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::LockHeld);
        assert!(err.to_string().contains("arn:other"), "{err}");
    }

    #[tokio::test]
    async fn release_only_releases_the_callers_lease() {
        let del = mock!(aws_sdk_dynamodb::Client::delete_item)
            .match_requests(|r| {
                r.condition_expression() == Some("#owner = :owner")
                    && crate::testing::attr_s(r.expression_attribute_values(), ":owner")
                        .is_some_and(|o| o == OWNER)
            })
            .then_error(crate::testing::delete_item_failed);
        let d = deps(&[&del]);
        let out = invoke(
            &d,
            &handle,
            json!({"action": "release", "lock": "migration:staging", "owner": OWNER}),
        )
        .await
        .unwrap();
        assert_eq!(out, json!({"lock": "migration:staging", "released": false}));
        let ok = mock!(aws_sdk_dynamodb::Client::delete_item)
            .then_output(|| DeleteItemOutput::builder().build());
        let out = handle(
            &deps(&[&ok]),
            Input::Release {
                lock: "migration:staging".into(),
                owner: OWNER.into(),
            },
        )
        .await
        .unwrap();
        assert_eq!(
            out,
            Output::Released {
                lock: "migration:staging".into(),
                released: true
            }
        );
    }

    #[tokio::test]
    async fn unknown_actions_and_fields_are_refused() {
        let d = deps(&[]);
        for ev in [
            json!({"action": "steal", "lock": "l", "owner": "o"}),
            json!({"action": "release", "lock": "l", "owner": "o", "force": true}),
            json!({"action": "acquire", "lock": "l", "owner": "o"}),
        ] {
            let err = invoke(&d, &handle, ev.clone()).await.unwrap_err();
            assert_eq!(err.kind(), crate::error::Kind::InvalidInput, "{ev}");
        }
    }
}
