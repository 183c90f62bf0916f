//! `session-deadline`: the bastion watch's steps around the approval deadline.
//! - `register` (the `.waitForTaskToken` step): store the task token in the waits table under
//!   `session-approval#<sessionId>`, then re-check the session once — an approval recorded
//!   before the token was stored ends the wait at once (`sfn::waits::register_then_recheck`);
//!   `slack-events` completes the wait when it records the evidence;
//! - `remind`: the reminder in the login thread;
//! - `alert`: no approval by the deadline → alert channel + a note in the thread, recorded
//!   (an approval recorded in the meantime wins: `{"alerted": false}`);
//! - `confirm` (right after every wake of the wait): re-read the session record and report
//!   whether approval evidence is recorded (`confirmed`); only then confirm it in the thread.
//!   The wake itself proves nothing: anyone holding the task token can send
//!   `SendTaskSuccess` with anything, so the workflow routes on `confirmed`, and a wake without
//!   recorded evidence goes to the alert path (README "Trust model").

use aws_types::SdkConfig;
use serde::{Deserialize, Serialize};

use crate::bastion::session::{self, Alert, Approval, SessionRecord, SessionStatus, Store};
use crate::error::Error;
use crate::platform::slack::SlackClient;
use crate::platform::{aws, config, time};
use crate::sfn::waits::{self, Registered, WaitKind};
use crate::shared::approval::Sealer;

pub struct Deps {
    pub store: Store,
    pub db: aws_sdk_dynamodb::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub slack: SlackClient,
    pub waits_table: String,
    pub alert_channel: String,
    /// Verifies the approval evidence's seal and seals the alert (`DECISION_SIGNING_KEY`).
    pub sealer: Sealer,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        let db = aws::dynamodb(sdk);
        Ok(Deps {
            store: Store::new(db.clone(), &config::required("BASTION_TABLE")?),
            db,
            sfn: aws::sfn(sdk),
            slack: config::slack_client(sdk).await?,
            waits_table: config::required("WAITS_TABLE")?,
            alert_channel: config::required("SLACK_ALERTS_CHANNEL")?,
            sealer: Sealer::from_env(sdk)?,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "action", rename_all = "lowercase")]
pub enum Input {
    #[serde(rename_all = "camelCase")]
    Register {
        task_token: String,
        session_id: String,
        execution_arn: String,
    },
    #[serde(rename_all = "camelCase")]
    Remind { session_id: String },
    #[serde(rename_all = "camelCase")]
    Alert { session_id: String },
    #[serde(rename_all = "camelCase")]
    Confirm { session_id: String },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged, rename_all_fields = "camelCase")]
pub enum Output {
    /// `register`: where the token is stored, and whether the re-check ended the wait.
    Registered(Registered),
    /// `remind`.
    Reminded { reminded: bool },
    /// `alert`: `alerted: false` when an approval was recorded in the meantime.
    Alerted {
        alerted: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        alert: Option<Alert>,
    },
    /// `confirm`: `confirmed` is whether the session record holds approval evidence.
    Confirmed {
        confirmed: bool,
        session_id: String,
        status: SessionStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        approval: Option<Approval>,
    },
}

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    match input {
        Input::Register {
            task_token,
            session_id,
            execution_arn,
        } => register(deps, &session_id, &task_token, &execution_arn).await,
        Input::Remind { session_id } => remind(deps, &session_id).await,
        Input::Alert { session_id } => alert(deps, &session_id).await,
        Input::Confirm { session_id } => confirm(deps, &session_id).await,
    }
}

async fn register(
    deps: &Deps,
    session_id: &str,
    task_token: &str,
    execution_arn: &str,
) -> Result<Output, Error> {
    // Re-check: an approval recorded before the token was stored ends the wait now.
    let recheck = async || -> Result<Option<serde_json::Value>, Error> {
        let rec = deps.store.must_get(session_id).await?;
        Ok(rec
            .approval
            .map(|a| serde_json::to_value(a).expect("an approval serializes")))
    };
    let registered = waits::register_then_recheck(
        &deps.db,
        &deps.sfn,
        &deps.waits_table,
        WaitKind::SessionApproval,
        session_id,
        task_token,
        execution_arn,
        time::now(),
        recheck,
    )
    .await?;
    tracing::info!(%session_id, key = %registered.wait_key, completed_now = registered.completed_now, "approval wait registered");
    Ok(Output::Registered(registered))
}

async fn remind(deps: &Deps, session_id: &str) -> Result<Output, Error> {
    let rec = deps.store.must_get(session_id).await?;
    if rec.reminded_at.is_none() {
        if let Some(msg) = session::reminder_message(&rec) {
            deps.slack.post_message(&msg).await?;
        }
        deps.store
            .set_reminded(session_id, &time::rfc3339(time::now()))
            .await?;
    }
    Ok(Output::Reminded { reminded: true })
}

/// The session's approval evidence, if `slack-events` recorded it: evidence whose seal does not
/// verify was written by someone else and is no evidence (logged as the forgery it is).
async fn evidence<'r>(deps: &Deps, rec: &'r SessionRecord) -> Result<Option<&'r Approval>, Error> {
    let Some(a) = &rec.approval else {
        return Ok(None);
    };
    if deps
        .sealer
        .valid(a.seal_message(&rec.session_id), a.seal.as_deref())
        .await?
    {
        return Ok(Some(a));
    }
    tracing::warn!(session_id = %rec.session_id, by = %a.by, "the session record holds approval evidence whose seal does not verify (not recorded by slack-events): no evidence");
    Ok(None)
}

async fn alert(deps: &Deps, session_id: &str) -> Result<Output, Error> {
    let rec = deps.store.must_get(session_id).await?;
    if evidence(deps, &rec).await?.is_some() {
        tracing::info!(%session_id, "approval recorded in the meantime: no alert");
        return Ok(Output::Alerted {
            alerted: false,
            alert: None,
        });
    }
    if let Some(alert) = rec.alert.clone() {
        let sealed = deps
            .sealer
            .valid(alert.seal_message(session_id), alert.seal.as_deref())
            .await?;
        if sealed {
            return Ok(Output::Alerted {
                alerted: true,
                alert: Some(alert),
            });
        }
        tracing::warn!(%session_id, "the session record holds an alert this step did not seal (planted): alerting");
    }
    let posted = deps
        .slack
        .post_message(&session::alert_message(&rec, &deps.alert_channel))
        .await?;
    if let Some(note) = session::alert_note_message(&rec, &deps.alert_channel) {
        if let Err(e) = deps.slack.post_message(&note).await {
            tracing::warn!(error = %e, "could not note the alert in the login thread");
        }
    }
    let mut alert = Alert {
        at: time::rfc3339(time::now()),
        channel: posted.channel,
        ts: posted.ts,
        deadline_at: rec.deadline_at,
        seal: None,
    };
    alert.seal = Some(deps.sealer.sign(alert.seal_message(session_id)).await?);
    deps.store.set_alerted(session_id, &alert).await?;
    tracing::warn!(%session_id, "no executive approval by the deadline: alerted");
    Ok(Output::Alerted {
        alerted: true,
        alert: Some(alert),
    })
}

async fn confirm(deps: &Deps, session_id: &str) -> Result<Output, Error> {
    let rec = deps.store.must_get(session_id).await?;
    let Some(approval) = evidence(deps, &rec).await? else {
        tracing::warn!(
            %session_id,
            "the approval wait was woken but no approval evidence is recorded (a forged or stray SendTaskSuccess): alert path"
        );
        return Ok(Output::Confirmed {
            confirmed: false,
            session_id: session_id.to_string(),
            status: rec.status,
            approval: None,
        });
    };
    // Only now, with the evidence read from the record: a Slack failure here (SlackError) is
    // cosmetic, and the workflow may treat it as confirmed.
    if let Some(msg) = session::approved_message(&rec, approval) {
        deps.slack.post_message(&msg).await?;
    }
    Ok(Output::Confirmed {
        confirmed: true,
        session_id: session_id.to_string(),
        status: rec.status,
        approval: Some(approval.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bastion::session::SessionRecord;
    use crate::bastion::steps::fake_slack;
    use crate::platform::dynamo::to_item;
    use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    use aws_sdk_sfn::operation::send_task_success::SendTaskSuccessOutput;
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use serde_json::{json, Value};

    fn record(approved: bool) -> SessionRecord {
        let mut rec = crate::bastion::fixtures::posted("s1", false);
        if approved {
            rec.status = SessionStatus::Approved;
            rec.approval = Some(crate::bastion::fixtures::carol_approves("approved", "1.6"));
        }
        rec
    }

    fn get(rec: SessionRecord) -> Rule {
        mock!(aws_sdk_dynamodb::Client::get_item)
            .match_requests(|r| r.key().unwrap()["pk"].as_s().unwrap() == "session#s1")
            .then_output(move || {
                GetItemOutput::builder()
                    .set_item(Some(to_item(&rec)))
                    .build()
            })
    }

    async fn deps(db: &[&Rule], sfn: &[&Rule]) -> (Deps, fake_slack::Calls) {
        let (slack, calls) = fake_slack::start(false).await;
        let db = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, db);
        let d = Deps {
            store: Store::new(db.clone(), "bastion"),
            db,
            sfn: mock_client!(aws_sdk_sfn, RuleMode::MatchAny, sfn),
            slack,
            waits_table: "waits".into(),
            alert_channel: "C0ALERTS".into(),
            sealer: crate::shared::approval::seal::tests::sealer(true),
        };
        (d, calls)
    }

    fn alert() -> Input {
        Input::Alert {
            session_id: "s1".into(),
        }
    }

    fn confirm() -> Input {
        Input::Confirm {
            session_id: "s1".into(),
        }
    }

    fn register_input() -> Value {
        json!({"action": "register", "taskToken": "tok", "sessionId": "s1", "executionArn": "arn:e"})
    }

    fn put_waiter() -> Rule {
        mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                r.table_name() == Some("waits")
                    && r.item().unwrap()["waitKey"].as_s().unwrap() == "session-approval#s1"
                    && r.item().unwrap()["taskToken"].as_s().unwrap() == "tok"
            })
            .then_output(|| PutItemOutput::builder().build())
    }

    #[tokio::test]
    async fn register_stores_the_token_in_the_waits_table_and_waits() {
        let put = put_waiter();
        let get = get(record(false));
        let (d, _) = deps(&[&put, &get], &[]).await;
        let input = crate::platform::input::parse_strict(register_input()).unwrap();
        let out = handle(&d, input).await.unwrap();
        assert_eq!(
            serde_json::to_value(&out).unwrap(),
            json!({"waitKey": "session-approval#s1", "completedNow": false})
        );
        assert_eq!((put.num_calls(), get.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn an_approval_recorded_before_the_token_ends_the_wait_at_once() {
        let put = put_waiter();
        let get = get(record(true));
        let take = mock!(aws_sdk_dynamodb::Client::delete_item).then_output(|| {
            DeleteItemOutput::builder()
                .set_attributes(Some(to_item(&crate::bastion::fixtures::waiter())))
                .build()
        });
        let send = mock!(aws_sdk_sfn::Client::send_task_success)
            .match_requests(|r| {
                let out: Value = serde_json::from_str(r.output().unwrap()).unwrap();
                r.task_token() == Some("tok") && out["by"] == "carol"
            })
            .then_output(|| SendTaskSuccessOutput::builder().build());
        let (d, _) = deps(&[&put, &get, &take], &[&send]).await;
        let input = crate::platform::input::parse_strict(register_input()).unwrap();
        let Output::Registered(r) = handle(&d, input).await.unwrap() else {
            panic!("registered")
        };
        assert!(r.completed_now);
        assert_eq!(send.num_calls(), 1);
    }

    #[tokio::test]
    async fn register_needs_the_execution() {
        let err = crate::platform::input::parse_strict::<Input>(
            json!({"action": "register", "taskToken": "tok", "sessionId": "s1"}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("executionArn"), "{err}");
    }

    #[tokio::test]
    async fn the_alert_is_posted_once_and_recorded() {
        let get = get(record(false));
        let update = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| {
                r.expression_attribute_values()
                    .unwrap()
                    .values()
                    .any(|v| v.as_s().is_ok_and(|s| s == "alerted"))
            })
            .then_output(|| UpdateItemOutput::builder().build());
        let (d, calls) = deps(&[&get, &update], &[]).await;
        let out = handle(&d, alert()).await.unwrap();
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(json["alerted"], true);
        assert_eq!(json["alert"]["channel"], "C0ALERTS");
        assert_eq!(json["alert"]["deadlineAt"], "2026-11-29T13:00:00Z");
        let posts = calls.of("chat.postMessage");
        assert_eq!(posts.len(), 2, "the alert and the note in the thread");
        assert_eq!(posts[0]["channel"], "C0ALERTS");
        assert_eq!(posts[1]["thread_ts"], "1.5");
        assert_eq!(update.num_calls(), 1);
    }

    #[tokio::test]
    async fn an_approval_in_the_meantime_wins_over_the_alert() {
        let get = get(record(true));
        let (d, calls) = deps(&[&get], &[]).await;
        let out = handle(&d, alert()).await.unwrap();
        assert_eq!(
            serde_json::to_value(&out).unwrap(),
            json!({"alerted": false})
        );
        assert!(calls.all().is_empty());
    }

    #[tokio::test]
    async fn confirm_posts_the_approval_and_needs_one() {
        let get_ok = get(record(true));
        let (d, calls) = deps(&[&get_ok], &[]).await;
        let out = handle(&d, confirm()).await.unwrap();
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(
            (
                &json["confirmed"],
                &json["sessionId"],
                &json["status"],
                &json["approval"]["by"]
            ),
            (
                &json!(true),
                &json!("s1"),
                &json!("approved"),
                &json!("carol")
            )
        );
        assert_eq!(calls.of("chat.postMessage").len(), 1);
    }

    #[tokio::test]
    async fn a_wake_without_recorded_evidence_is_not_confirmed_and_posts_nothing() {
        // What a forged `SendTaskSuccess` with `{}` (or any approval-looking payload) finds:
        // the record, which has no approval. The workflow routes on `confirmed: false`.
        let get_open = get(record(false));
        let (d, calls) = deps(&[&get_open], &[]).await;
        let out = handle(&d, confirm()).await.unwrap();
        assert_eq!(
            serde_json::to_value(&out).unwrap(),
            json!({"confirmed": false, "sessionId": "s1", "status": "open"})
        );
        assert!(calls.all().is_empty(), "nothing confirmed in the thread");
    }

    #[tokio::test]
    async fn an_alert_on_the_record_stops_a_second_post_only_when_this_step_sealed_it() {
        let mut planted = record(false);
        planted.alert = Some(Alert {
            at: "2026-11-29T13:00:00Z".into(),
            channel: "C0ALERTS".into(),
            ts: "9.9".into(),
            deadline_at: "2026-11-29T13:00:00Z".into(),
            seal: None,
        });
        let mut sealed = planted.clone();
        sealed.alert.as_mut().unwrap().seal = Some("c2VhbGVk".into());
        // Sealed by this step (a retry): nothing posted again.
        let get_sealed = get(sealed);
        let (d, calls) = deps(&[&get_sealed], &[]).await;
        let out = serde_json::to_value(handle(&d, alert()).await.unwrap()).unwrap();
        assert_eq!(out["alert"]["ts"], "9.9", "{out}");
        assert!(calls.all().is_empty());
        // Planted (no seal): the alert is posted and recorded, sealed, over it.
        let get_planted = get(planted);
        let update = mock!(aws_sdk_dynamodb::Client::update_item)
            .then_output(|| UpdateItemOutput::builder().build());
        let (d, calls) = deps(&[&get_planted, &update], &[]).await;
        let out = serde_json::to_value(handle(&d, alert()).await.unwrap()).unwrap();
        assert_ne!(out["alert"]["ts"], "9.9", "{out}");
        assert!(out["alert"]["seal"].is_string(), "{out}");
        assert_eq!(calls.of("chat.postMessage")[0]["channel"], "C0ALERTS");
        assert_eq!(update.num_calls(), 1);
    }

    #[tokio::test]
    async fn evidence_whose_seal_does_not_verify_is_no_evidence() {
        // An `approval` written onto the record by someone other than slack-events (its seal
        // made up): confirm does not confirm it, and the alert is posted over it.
        let get_forged = get(record(true));
        let update = mock!(aws_sdk_dynamodb::Client::update_item)
            .then_output(|| UpdateItemOutput::builder().build());
        let (mut d, calls) = deps(&[&get_forged, &update], &[]).await;
        d.sealer = crate::shared::approval::seal::tests::sealer(false);
        let out = serde_json::to_value(handle(&d, confirm()).await.unwrap()).unwrap();
        assert_eq!(out["confirmed"], false, "{out}");
        assert!(calls.of("chat.postMessage").is_empty());
        let out = serde_json::to_value(handle(&d, alert()).await.unwrap()).unwrap();
        assert_eq!(out["alerted"], true, "{out}");
        assert_eq!(calls.of("chat.postMessage")[0]["channel"], "C0ALERTS");
        assert_eq!(update.num_calls(), 1);
    }

    #[tokio::test]
    async fn the_reminder_is_posted_in_the_thread_once() {
        let mut reminded = record(false);
        reminded.reminded_at = Some("2026-11-29T12:00:00Z".into());
        let get_done = get(reminded);
        let (d, calls) = deps(&[&get_done], &[]).await;
        let input = Input::Remind {
            session_id: "s1".into(),
        };
        assert_eq!(
            handle(&d, input.clone()).await.unwrap(),
            Output::Reminded { reminded: true }
        );
        assert!(calls.all().is_empty(), "already reminded");
        let get_new = get(record(false));
        let update = mock!(aws_sdk_dynamodb::Client::update_item)
            .then_output(|| UpdateItemOutput::builder().build());
        let (d, calls) = deps(&[&get_new, &update], &[]).await;
        handle(&d, input).await.unwrap();
        let posts = calls.of("chat.postMessage");
        assert_eq!((posts.len(), update.num_calls()), (1, 1));
        assert_eq!(posts[0]["thread_ts"], "1.5");
    }
}
