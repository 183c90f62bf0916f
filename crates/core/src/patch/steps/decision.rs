//! `decision`: the IAM-authenticated decision endpoint (issue 15), a Lambda function URL with
//! `AuthType: AWS_IAM`. `batchless patch approve|reject|cancel` and `batchless migrations
//! approve|reject` sign their request with SigV4; Lambda verifies the signature and puts the
//! caller's ARN in the request context (`requestContext.authorizer.iam.userArn`), and that
//! ARN, mapped through the deployed people map, is the decider. Nothing the caller writes
//! names the decider: the body only says what to decide.
//!
//! The decision is recorded and sealed exactly as a Slack click is ([`super::approval`]'s
//! [`Endpoint`]): this function and the Slack endpoint are the only roles the decision
//! signing key lets sign, and the CLI holds no write access to the tables and no
//! `states:SendTaskSuccess`.
//!
//! It also takes submissions ([`crate::shared::submission`]): `batchless patch submit`,
//! `batchless run migration`, `batchless jobs run` and `batchless jobs backfill` send the
//! input they are about to start here first; the endpoint writes the caller in as the
//! starter, seals the input for that execution name and answers it, and the CLI starts the
//! execution with it (with the caller's own credentials). The workflow's first state refuses
//! an input whose seal does not verify.
//!
//! Body (JSON, unknown fields refused):
//! `{"action": "approve" | "reject" | "cancel", "patchId": "..."}` or
//! `{"action": "approve" | "reject", "approvalId": "migration-..."}`, with an optional
//! `"comment"`; or `{"action": "submit", "workflow": "data-patch" | "migration" |
//! "scheduled-job", "name": "<execution name>", "input": {...}}`. Answers: 200 decided,
//! cancelled or sealed (`{"ok": true, "input": {...}}`); 400 a bad body; 403 an
//! unauthenticated request, a principal nobody in the people map is, or a refused decision
//! (audited `DECISION_REFUSED`); 404 no such subject; 409 a cancel of a patch that already
//! ended.

use aws_types::SdkConfig;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::approval::{valid_id, Endpoint};
use crate::error::Error;
use crate::patch::approval::{Decision, Via};
use crate::patch::store::{self, Decider};
use crate::platform::slack::function_url::{raw_body, respond};
use crate::platform::{aws, config, input, time};
use crate::shared::approval::record::SubjectKind;
use crate::shared::submission::{self, Workflow};

pub struct Deps {
    pub endpoint: Endpoint,
    /// Stops a cancelled patch's build.
    pub codebuild: aws_sdk_codebuild::Client,
    /// `BATCHLESS_ENV`: a submission is sealed for this environment only.
    pub environment: String,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps {
            endpoint: Endpoint::from_env(sdk).await?,
            codebuild: aws::codebuild(sdk),
            environment: config::environment()?,
        })
    }
}

/// A function URL request (payload format 2.0).
pub type Input = Value;

/// The function URL response (`statusCode`, `headers`, `body`).
pub type Output = Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Approve,
    Reject,
    Cancel,
    Submit,
}

/// What the caller asks for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Request {
    pub action: Action,
    #[serde(default)]
    pub patch_id: Option<String>,
    #[serde(default)]
    pub approval_id: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    /// `submit`: the workflow, the execution name and the input to seal.
    #[serde(default)]
    pub workflow: Option<Workflow>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub input: Option<Value>,
}

/// The caller's ARN as Lambda verified it (absent on a request the URL did not authenticate).
pub fn caller(event: &Value) -> Option<&str> {
    event["requestContext"]["authorizer"]["iam"]["userArn"]
        .as_str()
        .filter(|a| !a.is_empty())
}

fn error(status: u16, message: impl Into<String>) -> Output {
    respond(status, json!({"ok": false, "error": message.into()}))
}

/// `submit`: write the caller in as the starter and seal the input for that execution.
async fn submit(deps: &Deps, arn: &str, request: Request) -> Result<Output, Error> {
    let (Some(workflow), Some(name), Some(mut input)) =
        (request.workflow, request.name, request.input)
    else {
        return Ok(error(400, "a submission gives workflow, name and input"));
    };
    if request.patch_id.is_some() || request.approval_id.is_some() || request.comment.is_some() {
        return Ok(error(
            400,
            "a submission gives only workflow, name and input",
        ));
    }
    // An execution name as the CLI makes them (`sfn::execution::name_safe`).
    if !input::made_of(&name, 80, b"-_") {
        return Ok(error(
            400,
            format!("name: {name:?} is not an execution name (1 to 80 of A-Z a-z 0-9 - _)"),
        ));
    }
    let ep = &deps.endpoint;
    let Some(person) = ep.people.by_principal(arn) else {
        tracing::warn!(
            caller = arn,
            workflow = workflow.name(),
            "a submission by nobody in the people map"
        );
        return Ok(error(
            403,
            ep.people
                .why_unknown(arn)
                .unwrap_or_else(|| format!("{arn} is nobody in the people map")),
        ));
    };
    if let Err(e) = submission::fill(workflow, &mut input, arn, &person.id) {
        return Ok(error(400, e));
    }
    let at = time::rfc3339(time::now());
    submission::seal(
        &ep.sealer,
        &deps.environment,
        workflow,
        &name,
        &mut input,
        arn,
        &person.id,
        &at,
    )
    .await?;
    tracing::info!(caller = arn, person = %person.id, workflow = workflow.name(), execution = %name, "submission sealed");
    Ok(respond(200, json!({"ok": true, "input": input})))
}

/// The subject and its id, checked.
fn subject(r: &Request) -> Result<(Option<SubjectKind>, &str), String> {
    let (kind, field, id) = match (&r.patch_id, &r.approval_id) {
        (Some(p), None) => (None, "patchId", p),
        (None, Some(a)) => (Some(SubjectKind::Migration), "approvalId", a),
        _ => return Err("give exactly one of patchId and approvalId".into()),
    };
    if kind.is_some() && r.action == Action::Cancel {
        return Err("a migration approval cannot be cancelled here (stop its execution)".into());
    }
    valid_id(kind, field, id).map_err(|e| e.to_string())?;
    if r.comment.as_ref().is_some_and(|c| c.chars().count() > 1000) {
        return Err("comment: at most 1000 characters".into());
    }
    Ok((kind, id.as_str()))
}

pub async fn handle(deps: &Deps, event: Input) -> Result<Output, Error> {
    let Some(arn) = caller(&event) else {
        tracing::warn!("a request without a verified IAM caller");
        return Ok(error(403, "not an IAM-authenticated request"));
    };
    let request: Request = match raw_body(&event)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => return Ok(error(400, format!("not a decision request: {e}"))),
    };
    if request.action == Action::Submit {
        return submit(deps, arn, request).await;
    }
    if request.workflow.is_some() || request.name.is_some() || request.input.is_some() {
        return Ok(error(
            400,
            "workflow, name and input belong to a submission",
        ));
    }
    let (kind, id) = match subject(&request) {
        Ok(s) => s,
        Err(e) => return Ok(error(400, e)),
    };
    let ep = &deps.endpoint;
    let person = ep.people.by_principal(arn);
    tracing::info!(caller = arn, person = ?person.map(|p| &p.id), action = ?request.action, subject = id, "decision request");
    let decision = match request.action {
        Action::Approve => Decision::Approve,
        Action::Reject => Decision::Reject,
        Action::Submit => unreachable!("a submission is answered above"),
        Action::Cancel => {
            let Some(person) = person else {
                return Ok(error(
                    403,
                    ep.people
                        .why_unknown(arn)
                        .unwrap_or_else(|| format!("{arn} is nobody in the people map")),
                ));
            };
            let st = ep.backend.store();
            return Ok(
                match store::cancel(&st, &ep.wait(), &deps.codebuild, id, person).await {
                    Ok(c) => respond(200, json!({"ok": true, "cancelled": c})),
                    Err(Error::NotFound(_)) => error(404, format!("no patch {id}")),
                    Err(Error::Forbidden(m)) => error(403, m),
                    Err(Error::Conflict(m)) => error(409, m),
                    Err(e) => return Err(e),
                },
            );
        }
    };
    let decider = Decider {
        person,
        identity: arn.to_string(),
        via: Via::Cli,
        comment: request.comment.clone(),
    };
    let outcome = match ep.decide(kind, id, &decider, decision).await? {
        Ok(o) => o,
        Err(missing) => return Ok(error(404, missing)),
    };
    let who = person
        .map(|p| p.name.clone())
        .unwrap_or_else(|| arn.to_string());
    let text = outcome.summary(&who, decision);
    if outcome.refusal.is_none() {
        ep.tell_thread(&outcome, &text).await;
    }
    let status = if outcome.refusal.is_some() { 403 } else { 200 };
    Ok(respond(
        status,
        json!({"ok": status == 200, "outcome": outcome, "text": text}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::steps::approval::tests::endpoint;
    use crate::patch::steps::fixtures::{self, stored};
    use crate::patch::Status;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn deps(db: aws_sdk_dynamodb::Client) -> Deps {
        let mut endpoint = endpoint(db);
        let anchor = fixtures::anchor();
        endpoint.backend.s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&anchor]);
        Deps {
            endpoint,
            codebuild: mock_client!(aws_sdk_codebuild, RuleMode::MatchAny, []),
            environment: "staging".into(),
        }
    }

    fn request(arn: Option<&str>, body: Value) -> Value {
        let mut e = json!({"body": body.to_string(), "requestContext": {}});
        if let Some(a) = arn {
            e["requestContext"]["authorizer"] = json!({"iam": {"userArn": a}});
        }
        e
    }

    fn status(out: &Value) -> u64 {
        out["statusCode"].as_u64().unwrap()
    }

    #[tokio::test]
    async fn an_unauthenticated_or_malformed_request_changes_nothing() {
        let db = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, []);
        let d = deps(db);
        let alice = Some("arn:aws:iam::123456789012:user/alice");
        let ok = json!({"action": "approve", "patchId": "p1"});
        // No IAM caller in the request context (a function URL without AWS_IAM, a raw invoke).
        assert_eq!(
            status(&handle(&d, request(None, ok.clone())).await.unwrap()),
            403
        );
        for bad in [
            json!({"action": "approve"}),
            json!({"action": "approve", "patchId": "p1", "approvalId": "migration-x"}),
            json!({"action": "approve", "patchId": "p1", "by": "bob"}),
            json!({"action": "cancel", "approvalId": "migration-x"}),
            json!({"action": "approve", "patchId": "p 1;"}),
            json!({"action": "approve", "patchId": "p1", "comment": "x".repeat(1001)}),
            json!({"action": "launch", "patchId": "p1"}),
        ] {
            let out = handle(&d, request(alice, bad.clone())).await.unwrap();
            assert_eq!(status(&out), 400, "{bad}: {out}");
        }
        let mut not_json = request(alice, json!({}));
        not_json["body"] = json!("approve p1");
        assert_eq!(status(&handle(&d, not_json).await.unwrap()), 400);
    }

    #[tokio::test]
    async fn the_decider_is_the_verified_caller_and_a_stranger_is_refused_and_audited() {
        // bob requested fixtures' patch; an approval by the caller mallory (nobody) is refused.
        let rec = fixtures::record(Status::PendingApproval);
        let id = rec.patch_id.clone();
        let get = stored(rec);
        let [audit_get, audit_put] = fixtures::audit_append();
        let db = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::MatchAny,
            [&get, &audit_get, &audit_put]
        );
        let d = deps(db);
        let body = json!({"action": "approve", "patchId": id});
        let out = handle(
            &d,
            request(Some("arn:aws:iam::123456789012:user/mallory"), body.clone()),
        )
        .await
        .unwrap();
        assert_eq!(status(&out), 403, "{out}");
        let reply: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
        assert_eq!(
            reply["outcome"]["refusal"]["refusal"], "unknown_person",
            "{reply}"
        );
        assert_eq!(audit_put.num_calls(), 1, "the refusal is audited");
        // The requester approving their own patch through the endpoint is refused too.
        let out = handle(
            &d,
            request(Some("arn:aws:iam::123456789012:user/bob"), body),
        )
        .await
        .unwrap();
        assert_eq!(status(&out), 403, "{out}");
        assert!(out["body"].as_str().unwrap().contains("self_approval"));
        // A cancel by a principal nobody is refused before anything is read.
        let cancel = json!({"action": "cancel", "patchId": id});
        let out = handle(
            &d,
            request(
                Some("arn:aws:sts::123456789012:assumed-role/ops/bob@example.com"),
                cancel,
            ),
        )
        .await
        .unwrap();
        assert_eq!(status(&out), 403, "{out}");
        assert_eq!(get.num_calls(), 2);
    }

    #[tokio::test]
    async fn an_approval_is_sealed_before_it_is_written() {
        let rec = fixtures::record(Status::PendingApproval);
        let id = rec.patch_id.clone();
        let get = stored(rec);
        let update = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| {
                r.expression_attribute_values()
                    .and_then(|v| v.get(":d"))
                    .and_then(|d| d.as_m().ok())
                    .and_then(|m| m.get("seal"))
                    .and_then(|s| s.as_s().ok())
                    .is_some_and(|s| !s.is_empty())
                    && r.expression_attribute_values()
                        .and_then(|v| v.get(":d"))
                        .and_then(|d| d.as_m().ok())
                        .and_then(|m| m.get("identity"))
                        .and_then(|s| s.as_s().ok())
                        .is_some_and(|s| s == "arn:aws:iam::123456789012:user/alice")
            })
            .then_error(crate::testing::update_item_failed);
        let [audit_get, audit_put] = fixtures::audit_append();
        let db = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::MatchAny,
            [&get, &update, &audit_get, &audit_put]
        );
        let d = deps(db);
        let out = handle(
            &d,
            request(
                Some("arn:aws:iam::123456789012:user/alice"),
                json!({"action": "approve", "patchId": id}),
            ),
        )
        .await
        .unwrap();
        assert_eq!(update.num_calls(), 1, "{out}");
    }

    fn reply(out: &Value) -> Value {
        serde_json::from_str(out["body"].as_str().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_submission_names_the_verified_caller_as_starter_and_is_sealed_for_that_execution() {
        let d = deps(mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, []));
        let alice = "arn:aws:iam::123456789012:user/alice";
        let body = json!({"action": "submit", "workflow": "data-patch", "name": "patch-1",
            "input": {"ticket": "OPS-1", "database": "app"}});
        let out = handle(&d, request(Some(alice), body)).await.unwrap();
        assert_eq!(status(&out), 200, "{out}");
        let input = &reply(&out)["input"];
        assert_eq!(input["requestedBy"], alice);
        assert_eq!(input["ticket"], "OPS-1");
        assert_eq!(input["submission"]["by"], alice);
        assert_eq!(input["submission"]["person"], "alice");
        assert_eq!(input["submission"]["seal"], "c2VhbGVkLWJ5LXRlc3Q=");
        // What the endpoint sealed opens in the workflow's first state, for that name only.
        let (rest, s) = submission::open(
            &d.endpoint.sealer,
            "staging",
            Workflow::DataPatch,
            "patch-1",
            input.clone(),
        )
        .await
        .unwrap();
        assert!(rest.get("submission").is_none() && s.is_some());
        // A job run names the person, in the part that starts it.
        let body = json!({"action": "submit", "workflow": "scheduled-job", "name": "job-1",
            "input": {"job": "nightly", "manual": {}}});
        let out = handle(&d, request(Some(alice), body)).await.unwrap();
        assert_eq!(
            reply(&out)["input"]["manual"]["requestedBy"],
            "alice",
            "{out}"
        );
    }

    #[tokio::test]
    async fn a_submission_by_nobody_naming_someone_else_or_malformed_is_refused() {
        let d = deps(mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, []));
        let alice = Some("arn:aws:iam::123456789012:user/alice");
        let submit = |workflow: &str, name: &str, input: Value| json!({"action": "submit", "workflow": workflow, "name": name, "input": input});
        let cases = [
            (None, submit("migration", "m", json!({"commit": "c"})), 403),
            (
                Some("arn:aws:iam::123456789012:user/mallory"),
                submit("migration", "m", json!({"commit": "c"})),
                403,
            ),
            // alice naming bob as the starter, or bringing her own seal.
            (
                alice,
                submit("migration", "m", json!({"commit": "c", "startedBy": "bob"})),
                400,
            ),
            (
                alice,
                submit(
                    "data-patch",
                    "p",
                    json!({"requestedBy": "arn:aws:iam::123456789012:user/bob"}),
                ),
                400,
            ),
            (
                alice,
                submit("migration", "m", json!({"commit": "c", "submission": {}})),
                400,
            ),
            // A scheduled occurrence is EventBridge Scheduler's to start.
            (
                alice,
                submit(
                    "scheduled-job",
                    "j",
                    json!({"job": "j", "scheduledTime": "t"}),
                ),
                400,
            ),
            (alice, submit("bastion-session", "b", json!({})), 400),
            (
                alice,
                submit("migration", "bad name:1", json!({"commit": "c"})),
                400,
            ),
            (
                alice,
                submit("migration", &"n".repeat(81), json!({"commit": "c"})),
                400,
            ),
            (
                alice,
                json!({"action": "submit", "workflow": "migration", "name": "m"}),
                400,
            ),
            (
                alice,
                json!({"action": "submit", "workflow": "migration", "name": "m", "input": {}, "patchId": "p1"}),
                400,
            ),
            (
                alice,
                json!({"action": "approve", "patchId": "p1", "input": {}}),
                400,
            ),
        ];
        for (who, body, expected) in cases {
            let out = handle(&d, request(who, body.clone())).await.unwrap();
            assert_eq!(status(&out), expected, "{body}: {out}");
            assert!(reply(&out).get("input").is_none(), "{body}: nothing sealed");
        }
    }
}
