//! `migration-approval`: the migration workflow's approval states (issue 19), for a run whose
//! pre-flight found dangerous operations under the `require-approval` policy.
//!
//! - `{"mode": "check"}` (`AskApproval`): creates the run's approval once (approvals table,
//!   `PENDING_APPROVAL`, bound to the run, commit and pending set's digest; `REQUESTED` on the
//!   `migrations` audit chain), then reads it and re-counts its decisions: approved and
//!   holding up → the approved build may start; pending → wait (for what is left of its
//!   expiry); rejected, expired, or an approval that does not hold up → `MigrationNeedsApproval`
//!   with why and how to approve. A run that was already approved and comes back (its second
//!   pre-flight found another pending set) fails the same way: an approval is for one digest.
//! - `{"mode": "wait"}` (`WaitForApproval`, `.waitForTaskToken`): posts the request to the
//!   migrations channel once (findings, recipes, Approve / Reject), registers the wait
//!   (`migration-approval#<approvalId>`) and re-checks the record; the `approval` function ends
//!   the wait when a decision concludes. The wake is discarded: `AskApproval` decides.
//! - `{"mode": "expire"}` (`ExpireApproval`, after the wait's timeout): `PENDING_APPROVAL` →
//!   `EXPIRED` (audited, said in the request's thread); returns the run's error,
//!   `MigrationNeedsApproval` with why and how (the ASL puts it at `$.error`).

use aws_types::SdkConfig;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::Error;
use crate::migration::approval::{self, ApprovalSettings, ApprovalState};
use crate::migration::report::MigrationReport;
use crate::migration::MigrationRun;
use crate::platform::dynamo::{Once, Table};
use crate::platform::slack::SlackClient;
use crate::platform::{aws, config, time};
use crate::sfn::waits;
use crate::shared::approval::record::{migration_approval_id, ApprovalRecord, MIGRATION_CHAIN};
use crate::shared::approval::{self as shared, Approvable};
use crate::shared::audit::{self, Trail};
use crate::shared::build::StartedBuild;
use crate::shared::people::People;

pub struct Deps {
    pub db: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub slack: SlackClient,
    pub people: People,
    pub approvals_table: String,
    pub audit_table: String,
    pub bucket: String,
    pub waits_table: String,
    pub channel: String,
    pub settings: ApprovalSettings,
    /// Verifies the decisions' seals (`DECISION_SIGNING_KEY`).
    pub sealer: shared::Sealer,
}

impl Deps {
    /// `APPROVALS_TABLE`, `AUDIT_TABLE`, `LOGS_BUCKET` (the audit anchors), `WAITS_TABLE`,
    /// Slack (`SLACK_MIGRATIONS_CHANNEL`), the people map and the approval settings.
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps {
            db: aws::dynamodb(sdk),
            s3: aws::s3(sdk),
            sfn: aws::sfn(sdk),
            slack: config::slack_client(sdk).await?,
            people: People::load(&config::environment()?)?,
            approvals_table: config::required("APPROVALS_TABLE")?,
            audit_table: config::required("AUDIT_TABLE")?,
            bucket: config::required("LOGS_BUCKET")?,
            waits_table: config::required("WAITS_TABLE")?,
            channel: config::required("SLACK_MIGRATIONS_CHANNEL")?,
            settings: ApprovalSettings::from_env()?,
            sealer: shared::Sealer::from_env(sdk)?,
        })
    }

    fn trail(&self) -> Trail<'_> {
        Trail {
            db: &self.db,
            s3: &self.s3,
            table: &self.audit_table,
            bucket: &self.bucket,
            chain: MIGRATION_CHAIN,
        }
    }

    fn records(&self) -> Table<ApprovalRecord> {
        Table::new(self.db.clone(), &self.approvals_table)
    }
}

#[derive(Debug, Deserialize)]
#[serde(
    tag = "mode",
    rename_all = "lowercase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum Input {
    Check {
        run: MigrationRun,
        report: Box<MigrationReport>,
        build: StartedBuild,
        /// `$.approval`: `null` the first time.
        approval: Option<ApprovalState>,
    },
    Wait {
        task_token: String,
        run: MigrationRun,
        approval: ApprovalState,
    },
    Expire {
        run: MigrationRun,
        approval: ApprovalState,
    },
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Output {
    Checked(ApprovalState),
    Waiting {
        #[serde(rename = "waitKey")]
        wait_key: String,
        #[serde(rename = "waitEnded")]
        wait_ended: bool,
    },
    /// What the run fails with (`ExpireApproval`'s result, at `$.error`).
    Failed(crate::sfn::execution::StepError),
}

async fn append(
    deps: &Deps,
    rec: &ApprovalRecord,
    key: String,
    event: &str,
    data: serde_json::Value,
) -> Result<(), Error> {
    audit::append(&deps.trail(), &rec.entry(key, event, "workflow", data)).await?;
    Ok(())
}

async fn check(
    deps: &Deps,
    run: &MigrationRun,
    report: &MigrationReport,
    build: &StartedBuild,
    previous: Option<&ApprovalState>,
) -> Result<ApprovalState, Error> {
    let id = migration_approval_id(&run.execution_name);
    let Some(m) = approval::subject(run, report, &build.build_id) else {
        return Err(Error::MigrationNeedsApproval(
            crate::migration::steps::read_migration_report::needs_approval_message(run, report),
        ));
    };
    let records = deps.records();
    let rec = match records.get(&id).await? {
        Some(rec) => rec,
        None => {
            let new = approval::new_record(run, &m, deps.settings, time::now());
            let rec = match records.put_once(&new).await? {
                Once::First => new,
                Once::Seen(existing) => existing,
            };
            let data = approval::requested_data(&rec, &m);
            append(deps, &rec, format!("request:{id}"), "REQUESTED", data).await?;
            tracing::info!(approval = %id, digest = %m.digest, "migration approval requested");
            rec
        }
    };
    let not_approved = |why: String| {
        Error::MigrationNeedsApproval(approval::not_approved_message(run, &rec, &why))
    };
    if let Some(prev) = previous.filter(|p| p.approved) {
        return Err(not_approved(format!(
            "it approved the pending set {}, and the approved build's pre-flight found {} (an approval is for one pending set)",
            prev.digest, m.digest
        )));
    }
    match rec.status.as_str() {
        shared::PENDING => {
            let left = time::parse("expiresAt", &rec.expires_at)
                .map(|e| (e - time::now()).num_seconds())
                .unwrap_or(0);
            if left <= 0 {
                return Err(expire(deps, run, &rec).await?);
            }
            Ok(ApprovalState {
                approval_id: id,
                approved: false,
                digest: m.digest,
                approvers: Vec::new(),
                wait_seconds: left as u64,
                preflight_build_id: m.preflight_build_id,
            })
        }
        shared::APPROVED => match approval::holds_up(&rec, run, &m.digest, &{
            let t = shared::counted(&deps.sealer, &deps.people, &rec).await?;
            shared::audit_forgeries(&deps.trail(), &rec, &t, "migration-approval").await?;
            t
        }) {
            Ok(approvers) => Ok(ApprovalState {
                approval_id: id,
                approved: true,
                digest: m.digest,
                approvers,
                wait_seconds: 0,
                preflight_build_id: m.preflight_build_id,
            }),
            Err(why) => {
                tracing::warn!(approval = %id, %why, "an approval that does not hold up");
                append(
                    deps,
                    &rec,
                    format!("not-approved:{id}"),
                    "NOT_APPROVED",
                    json!({"why": why}),
                )
                .await?;
                Err(not_approved(why))
            }
        },
        shared::REJECTED => Err(not_approved(format!(
            "{} rejected it",
            rec.rejected_by.as_deref().unwrap_or("an approver")
        ))),
        other => Err(not_approved(format!("it is {other}"))),
    }
}

/// `PENDING_APPROVAL` → `EXPIRED` (audited, said in the thread); the error the run fails with.
async fn expire(deps: &Deps, run: &MigrationRun, rec: &ApprovalRecord) -> Result<Error, Error> {
    let id = &rec.approval_id;
    let records = deps.records();
    let now = time::rfc3339(time::now());
    let rec = match shared::transition(
        &records,
        id,
        &[shared::PENDING],
        shared::EXPIRED,
        &[("expiredAt", json!(now))],
    )
    .await?
    {
        Some(expired) => {
            append(
                deps,
                &expired,
                format!("expired:{id}"),
                shared::EXPIRED,
                json!({"expiresAt": expired.expires_at}),
            )
            .await?;
            if let Some(t) = &expired.approval_message {
                let text = format!(
                    "Nobody approved migration {id} before {}: the run fails MigrationNeedsApproval, nothing was migrated.",
                    expired.expires_at
                );
                if let Err(e) = deps
                    .slack
                    .post_message(&crate::platform::slack::Message {
                        channel: t.channel.clone(),
                        text,
                        blocks: None,
                        thread_ts: Some(t.ts.clone()),
                    })
                    .await
                {
                    tracing::warn!(error = %e, "could not post the expiry in the thread");
                }
            }
            expired
        }
        None => records.must_get(id).await?,
    };
    let why = match rec.status.as_str() {
        shared::EXPIRED => format!("nobody approved it before {}", rec.expires_at),
        shared::REJECTED => format!(
            "{} rejected it",
            rec.rejected_by.as_deref().unwrap_or("an approver")
        ),
        other => format!("it is {other} at its expiry"),
    };
    Ok(Error::MigrationNeedsApproval(
        approval::not_approved_message(run, &rec, &why),
    ))
}

async fn wait(
    deps: &Deps,
    task_token: &str,
    run: &MigrationRun,
    state: &ApprovalState,
) -> Result<Output, Error> {
    let records = deps.records();
    let rec = records.must_get(&state.approval_id).await?;
    if rec.approval_message.is_none() && rec.status == shared::PENDING {
        let m = rec.migration()?;
        let msg = approval::request_message(&rec, &m, &deps.channel);
        let posted = shared::post_request(&deps.slack, &msg).await?;
        records
            .set_fields(
                &rec.approval_id,
                &[
                    ("approvalMessage", json!(posted)),
                    ("updatedAt", json!(time::rfc3339(time::now()))),
                ],
                Some("attribute_not_exists(approvalMessage)"),
                &[],
            )
            .await?;
        tracing::info!(approval = %rec.approval_id, channel = %posted.channel, ts = %posted.ts, "migration approval request posted");
    }
    // A decision that concluded before the token was stored could not end the wait.
    let recheck = async || -> Result<Option<serde_json::Value>, Error> {
        Ok(records.must_get(&state.approval_id).await?.decided())
    };
    let registered = waits::register_then_recheck(
        &deps.db,
        &deps.sfn,
        &deps.waits_table,
        rec.subject.wait(),
        &state.approval_id,
        task_token,
        &run.run_id,
        time::now(),
        recheck,
    )
    .await?;
    Ok(Output::Waiting {
        wait_key: registered.wait_key,
        wait_ended: registered.completed_now,
    })
}

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    match input {
        Input::Check {
            run,
            report,
            build,
            approval,
        } => Ok(Output::Checked(
            check(deps, &run, &report, &build, approval.as_ref()).await?,
        )),
        Input::Wait {
            task_token,
            run,
            approval,
        } => wait(deps, &task_token, &run, &approval).await,
        Input::Expire { run, approval } => {
            let rec = deps.records().must_get(&approval.approval_id).await?;
            let err = expire(deps, &run, &rec).await?;
            Ok(Output::Failed(crate::sfn::execution::StepError {
                error: err.kind().name().to_string(),
                cause: err.to_string(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::approval::tests::{report, run};
    use crate::platform::dynamo::to_item;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};

    fn deps(db: &[&Rule]) -> Deps {
        Deps {
            db: mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, db),
            s3: mock_client!(aws_sdk_s3, RuleMode::MatchAny, []),
            sfn: mock_client!(aws_sdk_sfn, RuleMode::MatchAny, []),
            slack: SlackClient::new("http://127.0.0.1:9/api", "t"),
            people: People::parse(crate::shared::people::EMBEDDED, "production").unwrap(),
            approvals_table: "approvals".into(),
            audit_table: "audit".into(),
            bucket: "logs".into(),
            waits_table: "waits".into(),
            channel: "C0MIGRATIONS".into(),
            settings: ApprovalSettings::from_values("240", "1").unwrap(),
            sealer: crate::shared::approval::seal::tests::sealer(true),
        }
    }

    fn stored(status: &str) -> Rule {
        let run = run();
        let m = approval::subject(&run, &report(), "migrate:1").unwrap();
        let mut rec = approval::new_record(&run, &m, deps(&[]).settings, time::now());
        rec.status = status.into();
        rec.rejected_by = Some("carol".into());
        let item = to_item(&rec);
        mock!(aws_sdk_dynamodb::Client::get_item)
            .match_requests(|r| r.table_name() == Some("approvals"))
            .then_output(move || {
                GetItemOutput::builder()
                    .set_item(Some(item.clone()))
                    .build()
            })
    }

    fn check(previous: Option<ApprovalState>) -> Input {
        Input::Check {
            run: run(),
            report: Box::new(report()),
            build: StartedBuild {
                build_id: "migrate:1".into(),
            },
            approval: previous,
        }
    }

    #[tokio::test]
    async fn a_pending_approval_waits_for_what_is_left_of_its_expiry() {
        let get = stored(shared::PENDING);
        let out = handle(&deps(&[&get]), check(None)).await.unwrap();
        let Output::Checked(state) = out else {
            panic!("checked")
        };
        assert!(!state.approved);
        assert_eq!(state.approval_id, "migration-e1");
        assert!((14_000..=14_400).contains(&state.wait_seconds), "{state:?}");
    }

    #[tokio::test]
    async fn a_rejection_fails_naming_who_rejected_it() {
        let get = stored(shared::REJECTED);
        let err = handle(&deps(&[&get]), check(None)).await.unwrap_err();
        assert_eq!(err.kind().name(), "MigrationNeedsApproval");
        assert!(err.to_string().contains("carol rejected it"), "{err}");
        assert!(err.to_string().contains("How to approve"), "{err}");
    }

    #[tokio::test]
    async fn an_approved_run_that_comes_back_with_another_pending_set_fails() {
        let get = stored(shared::APPROVED);
        let previous = ApprovalState {
            approval_id: "migration-e1".into(),
            approved: true,
            digest: "d0".into(),
            approvers: vec!["alice".into()],
            wait_seconds: 0,
            preflight_build_id: "migrate:1".into(),
        };
        let err = handle(&deps(&[&get]), check(Some(previous)))
            .await
            .unwrap_err();
        assert_eq!(err.kind().name(), "MigrationNeedsApproval");
        assert!(
            err.to_string()
                .contains("an approval is for one pending set"),
            "{err}"
        );
    }

    #[test]
    fn each_mode_parses_strictly() {
        let v = json!({"mode": "expire", "run": run(), "approval": {"approvalId": "migration-e1",
            "approved": false, "digest": "d1", "approvers": [], "waitSeconds": 5, "preflightBuildId": "migrate:1"}});
        assert!(serde_json::from_value::<Input>(v.clone()).is_ok());
        let mut extra = v;
        extra["approved"] = json!(true);
        assert!(serde_json::from_value::<Input>(extra).is_err());
    }
}
