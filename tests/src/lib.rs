//! Helpers for the scenario tests: a handle on a running local replica stack (named by
//! `BATCHLESS_STACK`, see `local/README.md`), SDK clients pointed at it, and polling with a
//! deadline (never sleep-and-hope).

pub mod app;
pub mod bastion;
pub mod other;
pub mod patch;
pub mod scenario;

pub use app::LockHolder;
pub use scenario::{fault, post_containing, Expect, INFRA_SECRET};

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent};
use serde_json::{json, Value};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A name stack.json lists for `logical_id` (at `v`); an error naming the `what` when none.
fn listed(v: &Value, what: &str, logical_id: &str) -> Result<String> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no {what} {logical_id} in stack.json"))
}

/// A running replica stack and clients for it.
pub struct Stack {
    pub name: String,
    pub info: Value,
    pub sfn: aws_sdk_sfn::Client,
    pub s3: aws_sdk_s3::Client,
    pub db: aws_sdk_dynamodb::Client,
    pub codebuild: aws_sdk_codebuild::Client,
    pub http: reqwest::Client,
}

impl Stack {
    /// The stack named by `BATCHLESS_STACK`; fails with how to start one.
    pub async fn from_env() -> Result<Stack> {
        let name = std::env::var("BATCHLESS_STACK")
            .context("BATCHLESS_STACK is not set: run the scenario tests with `make test` (it starts a replica stack)")?;
        Stack::named(&name).await
    }

    /// The running local stack `name`.
    pub async fn named(name: &str) -> Result<Stack> {
        let name = name.to_string();
        let path = repo_root().join(".local").join(&name).join("stack.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{} not found: is the stack {name} up?", path.display()))?;
        let info: Value = serde_json::from_str(&text)?;
        let config = sdk_config(&info, "testing").await?;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        );
        Ok(Stack {
            name,
            sfn: aws_sdk_sfn::Client::new(&config),
            db: aws_sdk_dynamodb::Client::new(&config),
            codebuild: aws_sdk_codebuild::Client::new(&config),
            s3,
            info,
            http: reqwest::Client::new(),
        })
    }

    pub fn environment(&self) -> &str {
        self.info["environment"].as_str().unwrap_or("staging")
    }

    pub fn endpoint(&self) -> &str {
        self.info["endpoint"].as_str().unwrap_or_default()
    }

    pub fn state_machine(&self, logical_id: &str) -> Result<String> {
        listed(
            &self.info["state_machines"][logical_id],
            "state machine",
            logical_id,
        )
    }

    pub fn table(&self, logical_id: &str) -> Result<String> {
        listed(&self.info["tables"][logical_id], "table", logical_id)
    }

    pub fn bucket(&self, logical_id: &str) -> Result<String> {
        listed(&self.info["buckets"][logical_id], "bucket", logical_id)
    }

    pub fn function_name(&self, logical_id: &str) -> Result<String> {
        listed(
            &self.info["functions"][logical_id]["name"],
            "function",
            logical_id,
        )
    }

    pub fn physical_id(&self, logical_id: &str) -> Result<String> {
        listed(
            &self.info["resources"][logical_id]["physical_id"],
            "resource",
            logical_id,
        )
    }

    fn replica_url(&self) -> String {
        self.info["replica_url"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}/_replica", self.endpoint()))
    }

    fn slack_url(&self) -> &str {
        self.info["slack_url"].as_str().unwrap_or_default()
    }

    /// The app's repository (CodeBuild sources check out from it).
    pub fn app_repo(&self) -> PathBuf {
        PathBuf::from(self.info["app_repo"]["path"].as_str().unwrap_or_default())
    }

    /// The app's current `main` commit.
    pub fn app_head(&self) -> Result<String> {
        git(&self.app_repo(), &["rev-parse", "main"])
    }

    /// Inject a fault (see local/README.md); cleared by [`Stack::clear_faults`].
    pub async fn fault(&self, fault: Value) -> Result<()> {
        let resp = self
            .http
            .post(format!("{}/faults", self.replica_url()))
            .json(&fault)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!(
                "fault {fault} rejected: {} {}",
                resp.status(),
                resp.text().await?
            );
        }
        Ok(())
    }

    /// Clear injected AWS faults and fake-Slack failures.
    pub async fn clear_faults(&self) -> Result<()> {
        self.http
            .delete(format!("{}/faults", self.replica_url()))
            .send()
            .await?;
        self.http
            .delete(format!("{}/_fake/fail", self.slack_url()))
            .send()
            .await?;
        Ok(())
    }

    /// Make the fake Slack answer the next `count` calls of `method` with `ok: false`.
    pub async fn slack_fail(&self, method: &str, error: &str, count: u32) -> Result<()> {
        let resp = self
            .http
            .post(format!("{}/_fake/fail", self.slack_url()))
            .json(&json!({"method": method, "error": error, "count": count}))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("slack failure injection rejected: {}", resp.status());
        }
        Ok(())
    }

    /// Messages the fake Slack recorded in `channel`.
    pub async fn slack_messages(&self, channel: &str) -> Result<Vec<Value>> {
        let v: Value = self
            .http
            .get(format!("{}/_fake/messages", self.slack_url()))
            .query(&[("channel", channel)])
            .send()
            .await?
            .json()
            .await?;
        Ok(match v {
            Value::Array(items) => items,
            Value::Object(mut o) => match o.remove("messages") {
                Some(Value::Array(items)) => items,
                _ => vec![],
            },
            _ => vec![],
        })
    }

    /// A request the fake Slack signs with the stack's signing secret (or as `spec` says:
    /// `signing_secret`, `timestamp`, `retry_num`, ...) and sends to `spec.url`; returns the
    /// response's status and its JSON body.
    pub async fn slack_send(&self, spec: &Value) -> Result<(u16, Value)> {
        let resp: Value = self
            .http
            .post(format!("{}/_fake/send", self.slack_url()))
            .json(spec)
            .send()
            .await?
            .json()
            .await?;
        let status = resp["status"]
            .as_u64()
            .context("no status from the fake Slack")? as u16;
        let body =
            serde_json::from_str(resp["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// Invoke a function through the replica's Lambda API (synchronously).
    pub async fn invoke(&self, logical_id: &str, payload: &Value) -> Result<Value> {
        let name = self.function_name(logical_id)?;
        let resp = self
            .http
            .post(format!("{}/2015-03-31/functions/{name}/invocations", self.endpoint()))
            .header("authorization", "AWS4-HMAC-SHA256 Credential=testing/20261128/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=0")
            .json(payload)
            .send()
            .await?;
        let errored = resp.headers().contains_key("x-amz-function-error");
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if errored {
            bail!("{logical_id} failed: {body}");
        }
        Ok(body)
    }

    /// GET a replica introspection endpoint (e.g. `events`, `invocations`).
    pub async fn replica_get(&self, path: &str) -> Result<Value> {
        Ok(self
            .http
            .get(format!("{}/{path}", self.replica_url()))
            .send()
            .await?
            .json()
            .await?)
    }

    /// CodePipeline reaching the Migrate stage of pipeline `pipeline` (the replica's
    /// `POST /codepipeline/executions`): one action execution of `provider` (`Lambda`,
    /// `StepFunctions`) with `configuration`, in progress. Its `pipelineExecutionId`,
    /// `actionExecutionId`, `jobId` and `resolvedConfiguration`.
    pub async fn pipeline_run(
        &self,
        pipeline: &str,
        provider: &str,
        configuration: &Value,
    ) -> Result<Value> {
        let resp = self
            .http
            .post(format!("{}/codepipeline/executions", self.replica_url()))
            .json(
                &serde_json::json!({"pipelineName": pipeline, "provider": provider,
                                      "configuration": configuration}),
            )
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!(
                "pipeline run refused: {} {}",
                resp.status(),
                resp.text().await?
            );
        }
        Ok(resp.json().await?)
    }

    /// Pipeline `app-deploy` reaching its Migrate stage for `commit` with the Lambda invoke
    /// action on `pipeline-bridge` (the UserParameters of `infra/examples/`); the run as
    /// [`Stack::pipeline_run`] gives it.
    pub async fn bridge_run(&self, commit: &str) -> Result<Value> {
        let params = serde_json::json!({"commit": commit, "pipeline": {"name": "app-deploy",
            "executionId": "#{codepipeline.PipelineExecutionId}"}});
        self.pipeline_run(
            "app-deploy",
            "Lambda",
            &serde_json::json!({"FunctionName": self.function_name("PipelineBridgeFunction")?,
                                "UserParameters": params.to_string()}),
        )
        .await
    }

    /// Start an execution through the one StartExecution of the core
    /// (`batchless_core::sfn::execution::start`); its ARN.
    pub async fn start(
        &self,
        state_machine_arn: &str,
        name: &str,
        input: &Value,
    ) -> Result<String> {
        let started =
            batchless_core::sfn::execution::start(&self.sfn, state_machine_arn, name, input)
                .await
                .with_context(|| format!("StartExecution {name}"))?;
        Ok(started.execution_arn)
    }

    /// Submit a person's run the way they do (issue 15): `batchless run <workflow> --input
    /// <file> --name <name> --no-follow`, signed as the person the input names as its starter
    /// (`requestedBy` of a patch, `startedBy` of a migration, `manual.requestedBy` or
    /// `backfill.requestedBy` of a job run; [`Stack::key_of`]), or as the replica's default
    /// identity (local-operator) when it names none. The decision endpoint writes the starter
    /// in and seals the input; the CLI starts the execution with it. Its ARN.
    pub async fn submit(&self, workflow: &str, name: &str, input: &Value) -> Result<String> {
        let named = [
            &input["requestedBy"],
            &input["startedBy"],
            &input["manual"]["requestedBy"],
            &input["backfill"]["requestedBy"],
        ]
        .into_iter()
        .find_map(Value::as_str);
        let key = match named {
            Some(who) => Some(self.key_of(who).await?),
            None => None,
        };
        let out = self
            .run_with_key(key, workflow, name, input, "--no-follow")
            .await?;
        out.lines()
            .rev()
            .find(|l| l.starts_with("arn:"))
            .map(str::to_string)
            .with_context(|| format!("no execution ARN in {out:?}"))
    }

    /// The input as the decision endpoint seals it for execution `name` when `who` (a person
    /// id or principal ARN) submits it (`batchless run <workflow> --seal-only`); nothing started.
    pub async fn sealed(
        &self,
        who: &str,
        workflow: &str,
        name: &str,
        input: &Value,
    ) -> Result<Value> {
        let key = self.key_of(who).await?;
        let out = self
            .run_with_key(Some(key), workflow, name, input, "--seal-only")
            .await?;
        serde_json::from_str(&out).with_context(|| format!("not a sealed input: {out}"))
    }

    /// An access key that signs as `who` (a person id or an IAM principal ARN): the first
    /// principal the stack environment's people map gives the person (an IAM user, or an
    /// assumed-role session such as IAM Identity Center's), else the IAM user of that name.
    pub async fn key_of(&self, who: &str) -> Result<String> {
        let people = batchless_core::shared::people::People::load(self.environment())?;
        let principal = people
            .by_id(who)
            .and_then(|p| p.principals.first().cloned())
            .unwrap_or_else(|| who.to_string());
        match principal.split_once(":assumed-role/") {
            Some((prefix, rest)) => {
                let (role, session) = rest.split_once('/').context("a role session ARN")?;
                let account = prefix.rsplit(':').next().unwrap_or_default();
                self.role_session_key(&format!("arn:aws:iam::{account}:role/{role}"), session)
                    .await
            }
            None => {
                let user = principal.rsplit('/').next().unwrap_or(&principal);
                self.access_key(user).await
            }
        }
    }

    /// `batchless run <workflow> --input <file> --name <name> <flag>` signed with `key` (the
    /// replica's default identity when `None`): its stdout, or an error with its stderr.
    async fn run_with_key(
        &self,
        key: Option<String>,
        workflow: &str,
        name: &str,
        input: &Value,
        flag: &str,
    ) -> Result<String> {
        let file = repo_root()
            .join(".local")
            .join(&self.name)
            .join(format!("input-{name}.json"));
        std::fs::write(&file, serde_json::to_vec(input)?)?;
        let path = file.to_string_lossy().into_owned();
        let args = ["run", workflow, "--input", &path, "--name", name, flag];
        let signed = key.is_some();
        let ran = self.run_cli(key, &args);
        let _ = std::fs::remove_file(&file);
        let (code, out, err) = ran?;
        anyhow::ensure!(
            code == 0,
            "batchless run {workflow} {flag} ({}) exited {code}: {err}",
            if signed {
                "as the input's starter"
            } else {
                "as local-operator"
            }
        );
        Ok(out)
    }

    /// Stop an execution (StopExecution, no error or cause).
    pub async fn stop(&self, execution_arn: &str) -> Result<()> {
        self.sfn
            .stop_execution()
            .execution_arn(execution_arn)
            .send()
            .await
            .with_context(|| format!("StopExecution {execution_arn}"))?;
        Ok(())
    }

    /// Wait (with a deadline) until the execution is no longer RUNNING.
    pub async fn wait_end(&self, execution_arn: &str, timeout: Duration) -> Result<Ended> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.describe(execution_arn).await?;
            if *out.status() != ExecutionStatus::Running {
                return Ok(Ended {
                    status: out.status().as_str().to_string(),
                    output: out.output().and_then(|o| serde_json::from_str(o).ok()),
                    error: out.error().map(str::to_string),
                    cause: out.cause().map(str::to_string),
                });
            }
            if Instant::now() > deadline {
                bail!("execution {execution_arn} still RUNNING after {timeout:?}; states so far: {:?}", self.states_entered(execution_arn).await?);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub async fn history(&self, execution_arn: &str) -> Result<Vec<HistoryEvent>> {
        let mut events = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .sfn
                .get_execution_history()
                .execution_arn(execution_arn)
                .set_next_token(token)
                .max_results(1000)
                .send()
                .await?;
            events.extend(out.events().iter().cloned());
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(events);
            }
        }
    }

    /// The names of the states entered, in order: the path the execution took.
    pub async fn states_entered(&self, execution_arn: &str) -> Result<Vec<String>> {
        Ok(self
            .history(execution_arn)
            .await?
            .iter()
            .filter_map(|e| {
                e.state_entered_event_details()
                    .map(|d| d.name().to_string())
            })
            .collect())
    }

    /// Error names of failed Lambda tasks in the execution.
    pub async fn task_errors(&self, execution_arn: &str) -> Result<Vec<String>> {
        Ok(self
            .history(execution_arn)
            .await?
            .iter()
            .filter_map(|e| {
                e.lambda_function_failed_event_details()
                    .and_then(|d| d.error().map(str::to_string))
                    .or_else(|| {
                        e.task_failed_event_details()
                            .and_then(|d| d.error().map(str::to_string))
                    })
            })
            .collect())
    }

    /// A Slack button click on an approval request (a patch's or a migration's: `action` is
    /// its action id, `id` the button's value), posted to the approval function URL and
    /// signed by the fake Slack (or with `extra` overriding the signing).
    pub async fn approval_click(
        &self,
        id: &str,
        user: &str,
        action: &str,
        mut extra: Value,
    ) -> Result<(u16, Value)> {
        let action_ts = extra
            .as_object_mut()
            .and_then(|e| e.remove("action_ts"))
            .unwrap_or_else(|| json!(unique_name("a")));
        // Every real click has its own trigger_id and action_ts (the replay key).
        let trigger_id = format!("t{}", action_ts.as_str().unwrap_or_default());
        let payload = json!({
            "type": "block_actions",
            "user": {"id": user},
            "trigger_id": trigger_id,
            "actions": [{"action_id": action, "value": id, "type": "button", "action_ts": action_ts}],
            "container": {"type": "message"},
        });
        let body = format!("payload={}", patch::urlencode(&payload.to_string()));
        let spec = json!({
            "url": self.info["function_urls"]["ApprovalFunction"],
            "body": body,
            "content_type": "application/x-www-form-urlencoded",
        });
        self.slack_send_with(spec, &extra).await
    }

    /// Whether a task-token wait is registered under `wait_key` (e.g. `patch-approval#<id>`)
    /// in the waits table: the one place every workflow keeps its tokens.
    pub async fn wait_registered(&self, wait_key: &str) -> Result<bool> {
        Ok(self.wait(wait_key).await?.is_some())
    }

    /// The task-token wait registered under `wait_key` in the waits table, if any.
    pub async fn wait(&self, wait_key: &str) -> Result<Option<Value>> {
        let waits = self.table("WaitsTable")?;
        self.get_item(&waits, "waitKey", wait_key).await
    }

    pub async fn get_item(&self, table: &str, key: &str, value: &str) -> Result<Option<Value>> {
        self.get_item_keyed(table, &[(key, value)]).await
    }

    /// A DynamoDB item by its string key attributes (consistent read), as JSON.
    pub async fn get_item_keyed(&self, table: &str, key: &[(&str, &str)]) -> Result<Option<Value>> {
        let key = key
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    aws_sdk_dynamodb::types::AttributeValue::S(v.to_string()),
                )
            })
            .collect();
        let out = self
            .db
            .get_item()
            .table_name(table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await?;
        Ok(out
            .item()
            .map(batchless_core::platform::dynamo::item_to_value))
    }

    pub async fn object(&self, uri: &str) -> Result<Vec<u8>> {
        let rest = uri.strip_prefix("s3://").context("not an s3:// URI")?;
        let (bucket, key) = rest.split_once('/').context("no key in URI")?;
        let out = self.s3.get_object().bucket(bucket).key(key).send().await?;
        Ok(out.body.collect().await?.to_vec())
    }

    /// Builds of a CodeBuild project, newest first.
    pub async fn builds(&self, project: &str) -> Result<Vec<aws_sdk_codebuild::types::Build>> {
        let ids = self
            .codebuild
            .list_builds_for_project()
            .project_name(project)
            .send()
            .await?;
        self.builds_by_id(ids.ids().to_vec()).await
    }

    /// The CodeBuild builds with these ids.
    pub async fn builds_by_id(
        &self,
        ids: Vec<String>,
    ) -> Result<Vec<aws_sdk_codebuild::types::Build>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let out = self
            .codebuild
            .batch_get_builds()
            .set_ids(Some(ids))
            .send()
            .await?;
        Ok(out.builds().to_vec())
    }
}

#[derive(Debug, Clone)]
pub struct Ended {
    pub status: String,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
}

/// Poll `check` until it returns `Some`, or fail after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub fn git(repo: &std::path::Path, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// A benchmark's `--<name> N` argument (`default` when absent); a value that is not a count is
/// an error.
pub fn count_arg(flag: &str, default: usize) -> Result<usize> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == flag) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("{flag} takes a count")),
    }
}

/// The `p` quantile (0..=1, nearest rank) of `sorted`; `None` when it is empty.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    let last = sorted.len().checked_sub(1)?;
    sorted.get(((last as f64) * p).round() as usize).copied()
}

/// A benchmark table row `| label | p50 | min | max |` of `v` (sorted in place), two decimals.
pub fn p50_min_max_row(label: &str, v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "| {label} | {:.2} | {:.2} | {:.2} |",
        percentile(v, 0.5).unwrap_or_default(),
        v.first().copied().unwrap_or_default(),
        v.last().copied().unwrap_or_default()
    )
}

/// A random past day (never used before), as `YYYY-MM-DD`: occurrences on it belong to one test.
pub fn past_day() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let days = 400 + (nanos / 1000 % 3000) as i64;
    (chrono::Utc::now() - chrono::Duration::days(days))
        .date_naive()
        .format("%Y-%m-%d")
        .to_string()
}

/// The SDK's configuration for the stack `info` describes, acting as `access_key` (the
/// replica's default identity is `testing`).
async fn sdk_config(info: &Value, access_key: &str) -> Result<aws_config::SdkConfig> {
    let endpoint = info["endpoint"]
        .as_str()
        .context("stack.json has no endpoint")?;
    let region = info["region"].as_str().unwrap_or("us-east-1").to_string();
    let creds = aws_sdk_sfn::config::Credentials::new(access_key, "testing", None, None, "replica");
    Ok(aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(batchless_core::platform::aws::http_client())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(region))
        .credentials_provider(creds)
        .load()
        .await)
}

impl Stack {
    /// The SDK's configuration acting as IAM user `who` of the replica (an operator calling
    /// AWS directly, around batchless).
    pub async fn sdk_config_as(&self, who: &str) -> Result<aws_config::SdkConfig> {
        sdk_config(&self.info, &self.access_key(who).await?).await
    }

    /// An access key of IAM user `name` in the replica (created once per stack and cached in
    /// `.local/<stack>/key-<name>-<replica pid>`: a restarted stack has new users).
    pub async fn access_key(&self, name: &str) -> Result<String> {
        let file = repo_root()
            .join(".local")
            .join(&self.name)
            .join(format!("key-{name}-{}", self.info["pid"]));
        if let Ok(k) = std::fs::read_to_string(&file) {
            return Ok(k);
        }
        let iam = |action: &'static str| {
            self.http
                .post(format!("{}/", self.endpoint()))
                .header("authorization", "AWS4-HMAC-SHA256 Credential=testing/20261128/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0")
                .form(&[("Action", action), ("UserName", name), ("Version", "2010-05-08")])
                .send()
        };
        iam("CreateUser").await?;
        let xml = iam("CreateAccessKey").await?.text().await?;
        let key = xml
            .split("<AccessKeyId>")
            .nth(1)
            .and_then(|s| s.split("</AccessKeyId>").next())
            .with_context(|| format!("no access key in {xml}"))?
            .to_string();
        std::fs::write(&file, &key)?;
        Ok(key)
    }

    /// An access key of an `sts:AssumeRole` session of `role_arn` named `session` (how IAM
    /// Identity Center signs a person in: `AWSReservedSSO_*` roles, the session their e-mail).
    pub async fn role_session_key(&self, role_arn: &str, session: &str) -> Result<String> {
        let sts = aws_sdk_sts::Client::new(&sdk_config(&self.info, "testing").await?);
        let out = sts
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(session)
            .send()
            .await
            .context("AssumeRole")?;
        Ok(out
            .credentials()
            .context("no credentials")?
            .access_key_id()
            .to_string())
    }

    /// What an operator with write access to an approvals-bearing table (patches, approvals)
    /// can do around batchless: write alice's approval of `request_hash` (as the Slack
    /// endpoint would have recorded it, `seal` made up or left out) on the item `key` =
    /// `id` and, with `mark_approved`, mark it `APPROVED` by her.
    pub async fn plant_approval(
        &self,
        table: &str,
        key: &str,
        id: &str,
        request_hash: &str,
        seal: Option<&str>,
        mark_approved: bool,
    ) -> Result<()> {
        use aws_sdk_dynamodb::types::AttributeValue as A;
        let s = |v: &str| A::S(v.to_string());
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let mut decision: std::collections::HashMap<String, A> = [
            ("decision", "approve"),
            ("by", "alice"),
            ("byName", "Alice Example"),
            ("via", "slack"),
            ("at", now.as_str()),
            ("identity", "slack:U0ALICE01"),
            ("requestHash", request_hash),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), s(v)))
        .collect();
        if let Some(seal) = seal {
            decision.insert("seal".into(), s(seal));
        }
        let mut req = self
            .db
            .update_item()
            .table_name(table)
            .key(key, s(id))
            .expression_attribute_values(":d", A::M(decision));
        req = if mark_approved {
            req.update_expression(
                "SET decisions.alice = :d, #s = :approved, approvers = :a, approvedAt = :now",
            )
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":approved", s("APPROVED"))
            .expression_attribute_values(":a", A::L(vec![s("alice")]))
            .expression_attribute_values(":now", s(&now))
        } else {
            req.update_expression("SET decisions.alice = :d")
        };
        req.send()
            .await
            .context("UpdateItem (a planted approval)")?;
        Ok(())
    }

    /// [`Stack::cli`] with `access_key` (say, a [`Stack::role_session_key`]).
    pub fn cli_with_key(&self, access_key: &str, args: &[&str]) -> Result<(i32, String, String)> {
        self.run_cli(Some(access_key.to_string()), args)
    }

    /// `batchless --stack <this stack> args...` with the replica's default identity: its exit
    /// code, stdout and stderr.
    pub fn cli(&self, args: &[&str]) -> Result<(i32, String, String)> {
        self.run_cli(None, args)
    }

    /// [`Stack::cli`] as IAM user `who` (the replica's default identity when `None`).
    pub async fn cli_as(&self, who: Option<&str>, args: &[&str]) -> Result<(i32, String, String)> {
        let key = match who {
            Some(u) => Some(self.access_key(u).await?),
            None => None,
        };
        self.run_cli(key, args)
    }

    fn run_cli(&self, access_key: Option<String>, args: &[&str]) -> Result<(i32, String, String)> {
        let bin = repo_root().join("target/debug/batchless");
        let mut cmd = std::process::Command::new(&bin);
        cmd.arg("--stack")
            .arg(&self.name)
            .args(args)
            .current_dir(repo_root())
            .env_remove("BATCHLESS_LOCAL_ACCESS_KEY_ID");
        if let Some(k) = access_key {
            cmd.env("BATCHLESS_LOCAL_ACCESS_KEY_ID", k);
        }
        let out = cmd
            .output()
            .with_context(|| format!("running {} (cargo build -p batchless-cli)", bin.display()))?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// The ECS tasks of the jobs cluster (other workflows' tasks, e.g. bastion sessions,
    /// excluded).
    pub async fn job_tasks(&self) -> Result<Vec<Value>> {
        let cluster = format!(":cluster/{}", self.physical_id("JobsCluster")?);
        Ok(self.replica_get("tasks").await?["tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| {
                t["clusterArn"]
                    .as_str()
                    .is_some_and(|c| c.ends_with(&cluster))
            })
            .collect())
    }
}

/// A unique, valid execution name for a test.
/// The event CodePipeline invokes `pipeline-bridge` with for the job of `run` (a
/// [`Stack::bridge_run`]): its resolved UserParameters, artifact credentials with `secret` and
/// `token` (which nothing may log), and the continuation token of a re-invocation.
pub fn bridge_job_event(
    run: &Value,
    secret: &str,
    token: &str,
    continuation: Option<&str>,
) -> Value {
    serde_json::json!({"CodePipeline.job": {
        "id": run["jobId"],
        "accountId": "123456789012",
        "data": {
            "actionConfiguration": {"configuration": {
                "FunctionName": "batchless-staging-pipeline-bridge",
                "UserParameters": run["resolvedConfiguration"]["UserParameters"]
            }},
            "inputArtifacts": [],
            "outputArtifacts": [],
            "artifactCredentials": {"accessKeyId": "ASIAREPLICAEXAMPLE01", "secretAccessKey": secret, "sessionToken": token},
            "continuationToken": continuation
        }
    }})
}

pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

pub fn migration_input(commit: &str, overrides: Value) -> Value {
    json!({ "commit": commit, "environmentOverrides": overrides, "startedBy": "alice" })
}
