//! Where the CLI talks to: the repository root, a local replica stack, the environment and
//! the AWS configuration. `main` builds one [`Context`] from the global options; a command that
//! talks to AWS connects it once with [`Context::aws`] (commands that work offline — `local`,
//! `jobs validate|generate`, `jobs list --offline` — never do, so they work without a stack).

use std::collections::BTreeMap;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use aws_config::BehaviorVersion;
use aws_types::SdkConfig;
use serde::Deserialize;

pub const DEFAULT_ENVIRONMENT: &str = "staging";

/// The repository root: `BATCHLESS_ROOT`, else the nearest directory at or above the current
/// one that contains `local/replica.py`.
pub fn repo_root() -> Result<PathBuf> {
    if let Some(root) = std::env::var_os("BATCHLESS_ROOT") {
        return Ok(PathBuf::from(root));
    }
    let cwd = std::env::current_dir().context("current directory")?;
    find_root(&cwd).with_context(|| {
        format!(
            "no batchless repository at or above {} (looked for local/replica.py); \
             run inside the repository or set BATCHLESS_ROOT",
            cwd.display()
        )
    })
}

pub fn find_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|d| d.join("local").join("replica.py").is_file())
        .map(Path::to_path_buf)
}

/// What `local/replica.py up` writes to `.local/NAME/stack.json` (the fields the CLI uses).
#[derive(Debug, Clone, Deserialize)]
pub struct StackInfo {
    pub endpoint: String,
    pub region: String,
    #[serde(default)]
    pub environment: Option<String>,
    /// Logical id → ARN.
    #[serde(default)]
    pub state_machines: BTreeMap<String, String>,
    /// The replica's app repository (`{"path": ...}`).
    #[serde(default)]
    pub app_repo: Option<serde_json::Value>,
    /// Logical id → function URL.
    #[serde(default)]
    pub function_urls: BTreeMap<String, String>,
}

pub fn stack_file(root: &Path, name: &str) -> PathBuf {
    root.join(".local").join(name).join("stack.json")
}

pub fn load_stack(root: &Path, name: &str) -> Result<StackInfo> {
    let path = stack_file(root, name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "local stack {name:?} is not running (no {}); start it with `batchless local up --name {name}`",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a stack description", path.display()))
}

/// `host:port` of an `http://host:port[/...]` endpoint.
pub fn endpoint_authority(endpoint: &str) -> Option<&str> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))?;
    let authority = rest.split('/').next()?;
    (!authority.is_empty()).then_some(authority)
}

/// Fail clearly when the stack's endpoint refuses connections (a stale stack.json).
fn check_reachable(name: &str, endpoint: &str) -> Result<()> {
    let authority = endpoint_authority(endpoint)
        .with_context(|| format!("local stack {name:?}: bad endpoint {endpoint:?}"))?;
    let addrs: Vec<_> = authority
        .to_socket_addrs()
        .with_context(|| format!("local stack {name:?}: cannot resolve {authority}"))?
        .collect();
    let reachable = addrs
        .iter()
        .any(|a| std::net::TcpStream::connect_timeout(a, Duration::from_secs(2)).is_ok());
    if !reachable {
        bail!(
            "local stack {name:?} is not running: {endpoint} refuses connections \
             (stale stack.json?); start it with `batchless local up --name {name}`"
        );
    }
    Ok(())
}

/// The global options (`--stack`, `--env`), and the AWS connection made from them on first use.
pub struct Context {
    stack: Option<String>,
    environment: Option<String>,
    aws: tokio::sync::OnceCell<Aws>,
}

impl Context {
    /// No I/O: nothing is read or connected until [`Context::aws`]. An empty value
    /// (`BATCHLESS_STACK=`) means unset.
    pub fn new(stack: Option<String>, environment: Option<String>) -> Context {
        Context {
            stack: stack.filter(|s| !s.is_empty()),
            environment: environment.filter(|s| !s.is_empty()),
            aws: tokio::sync::OnceCell::new(),
        }
    }

    /// `--stack`, if given.
    pub fn stack_name(&self) -> Option<&str> {
        self.stack.as_deref()
    }

    /// `--env`, if given.
    pub fn environment_option(&self) -> Option<&str> {
        self.environment.as_deref()
    }

    /// The AWS side (the local stack's endpoint with `--stack`), connected once.
    pub async fn aws(&self) -> Result<&Aws> {
        self.aws
            .get_or_try_init(|| Aws::connect(self.stack_name(), self.environment_option()))
            .await
    }
}

/// Everything a command that talks to AWS needs.
pub struct Aws {
    pub environment: String,
    pub stack: Option<StackInfo>,
    pub config: SdkConfig,
}

impl Aws {
    async fn connect(stack: Option<&str>, environment: Option<&str>) -> Result<Aws> {
        let Some(name) = stack else {
            return Ok(Aws {
                environment: environment.unwrap_or(DEFAULT_ENVIRONMENT).to_string(),
                stack: None,
                config: batchless_core::platform::aws::load_config().await,
            });
        };
        let root = repo_root()?;
        let info = load_stack(&root, name)?;
        check_reachable(name, &info.endpoint)?;
        let config = aws_config::defaults(BehaviorVersion::latest())
            .http_client(batchless_core::platform::aws::http_client())
            .region(aws_config::Region::new(info.region.clone()))
            .endpoint_url(&info.endpoint)
            // The replica's default identity, or an IAM user created in it (tests and the demo
            // act as different people through their access keys).
            .credentials_provider(aws_sdk_sts::config::Credentials::new(
                std::env::var("BATCHLESS_LOCAL_ACCESS_KEY_ID").unwrap_or_else(|_| "testing".into()),
                "testing",
                None,
                None,
                "batchless-local-stack",
            ))
            .load()
            .await;
        Ok(Aws {
            environment: environment
                .map(str::to_string)
                .or_else(|| info.environment.clone())
                .unwrap_or_else(|| DEFAULT_ENVIRONMENT.to_string()),
            stack: Some(info),
            config,
        })
    }

    pub fn is_local(&self) -> bool {
        self.stack.is_some()
    }

    pub fn sfn(&self) -> aws_sdk_sfn::Client {
        batchless_core::platform::aws::sfn(&self.config)
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        batchless_core::platform::aws::dynamodb(&self.config)
    }

    pub fn scheduler(&self) -> aws_sdk_scheduler::Client {
        batchless_core::platform::aws::scheduler(&self.config)
    }

    pub fn sts(&self) -> aws_sdk_sts::Client {
        batchless_core::platform::aws::sts(&self.config)
    }

    pub fn state_machine_name(&self, workflow: &str) -> String {
        state_machine_name(&self.environment, workflow)
    }

    /// The environment's resource `batchless-<env>-<suffix>` (a table, say).
    pub fn resource(&self, suffix: &str) -> String {
        format!("batchless-{}-{suffix}", self.environment)
    }

    /// The IAM-authenticated decision endpoint: the local stack's `DecisionFunction` URL, or
    /// `BATCHLESS_DECISION_URL` (the stack's `DecisionUrl` output).
    pub fn decision_url(&self) -> Result<String> {
        if let Ok(url) = std::env::var("BATCHLESS_DECISION_URL") {
            if !url.is_empty() {
                return Ok(url);
            }
        }
        match &self.stack {
            Some(s) => s
                .function_urls
                .get("DecisionFunction")
                .cloned()
                .context("the local stack has no DecisionFunction URL (restart it)"),
            None => anyhow::bail!(
                "where is the decision endpoint? set BATCHLESS_DECISION_URL to the stack's DecisionUrl output"
            ),
        }
    }

    pub fn runs_table(&self) -> String {
        self.resource("runs")
    }

    /// The data-patch store and audit trail of the environment (`account` names the logs
    /// bucket).
    pub fn patch_backend(&self, account: &str) -> batchless_core::patch::store::Backend {
        batchless_core::patch::store::Backend {
            db: self.dynamodb(),
            s3: batchless_core::platform::aws::s3(&self.config),
            patches_table: self.resource("patches"),
            audit_table: self.resource("audit"),
            bucket: self.resource(&format!("logs-{account}")),
        }
    }
}

pub fn state_machine_name(environment: &str, workflow: &str) -> String {
    format!("batchless-{environment}-{workflow}")
}

/// The ARN of the state machine called `name` among the stack's recorded ARNs.
pub fn arn_in_stack<'a>(stack: &'a StackInfo, name: &str) -> Option<&'a str> {
    let suffix = format!(":stateMachine:{name}");
    stack
        .state_machines
        .values()
        .find(|arn| arn.ends_with(&suffix))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_root_above_the_current_directory() {
        let tmp = std::env::temp_dir().join(format!("batchless-root-{}", std::process::id()));
        let deep = tmp.join("crates").join("cli");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::create_dir_all(tmp.join("local")).unwrap();
        assert_eq!(find_root(&deep), None);
        std::fs::write(tmp.join("local").join("replica.py"), "").unwrap();
        assert_eq!(find_root(&deep), Some(tmp.clone()));
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn stack_files() {
        let tmp = std::env::temp_dir().join(format!("batchless-stack-{}", std::process::id()));
        let err = load_stack(&tmp, "dev").unwrap_err().to_string();
        assert!(
            err.contains("not running") && err.contains("batchless local up --name dev"),
            "{err}"
        );
        std::fs::create_dir_all(tmp.join(".local/dev")).unwrap();
        std::fs::write(
            stack_file(&tmp, "dev"),
            r#"{"endpoint": "http://127.0.0.1:4599", "region": "us-east-1", "environment": "staging",
                "state_machines": {"MigrationStateMachine": "arn:aws:states:us-east-1:123456789012:stateMachine:batchless-staging-migration"},
                "tables": {"Runs": "batchless-staging-runs"}}"#,
        )
        .unwrap();
        let info = load_stack(&tmp, "dev").unwrap();
        assert_eq!(endpoint_authority(&info.endpoint), Some("127.0.0.1:4599"));
        assert_eq!(
            arn_in_stack(&info, "batchless-staging-migration"),
            Some("arn:aws:states:us-east-1:123456789012:stateMachine:batchless-staging-migration")
        );
        assert_eq!(arn_in_stack(&info, "batchless-staging-data-patch"), None);
        // "batchless-staging-migration" must not match a longer name's suffix only.
        assert_eq!(arn_in_stack(&info, "staging-migration"), None);
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn a_stale_stack_is_reported_not_running() {
        // Bind then drop a listener: its port now refuses connections.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = check_reachable("dev", &format!("http://127.0.0.1:{port}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not running"), "{err}");
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        check_reachable("dev", &format!("http://127.0.0.1:{port}")).unwrap();
    }

    #[test]
    fn names() {
        assert_eq!(
            state_machine_name("production", "data-patch"),
            "batchless-production-data-patch"
        );
    }
}
