//! The stack's app services (see `local/README.md`, "The app"): its PostgreSQL (queried with
//! `psql`, installed with postgresql), its Redis (`redis-cli`), commits to the app's repository,
//! and `replica.py exec` into a running ECS task (ECS Exec's `execute-command`).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::{git, repo_root, Stack};

/// Another session of the app's database holding a lock until released: `BEGIN; <lock>;` then
/// `pg_sleep`. Released (its backend terminated, not only its psql killed: a killed client
/// leaves the backend sleeping with the lock) on `release` or on drop, so a failing test never
/// leaves a lock behind for the next test binary on the same stack.
pub struct LockHolder {
    child: std::process::Child,
    app: String,
    url: String,
}

impl LockHolder {
    /// Runs `lock` (e.g. `LOCK TABLE users IN ACCESS EXCLUSIVE MODE` or
    /// `SELECT id FROM users WHERE id = 7 FOR UPDATE`) in a transaction of a new session named
    /// `test-holder-<name>`, and returns once that session holds it (it is sleeping).
    pub fn start(stack: &Stack, lock: &str, name: &str) -> Result<LockHolder> {
        let app = format!("test-holder-{name}");
        let url = stack.database_url()?;
        let child = Command::new("psql")
            .arg(&url)
            .args([
                "-qX",
                "-c",
                &format!("BEGIN; {lock}; SELECT pg_sleep(600);"),
            ])
            .env("PGAPPNAME", &app)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("psql")?;
        let holder = LockHolder { child, app, url };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while stack.sql_value(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{}' AND wait_event = 'PgSleep'",
            holder.app
        ))? != "1"
        {
            if std::time::Instant::now() > deadline {
                bail!("{} never got past {lock:?}", holder.app);
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        Ok(holder)
    }

    pub fn release(&mut self) {
        let _ = Command::new("psql")
            .arg(&self.url)
            .args([
                "-qAtX",
                "-c",
                &format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{}'",
                    self.app
                ),
            ])
            .output();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        self.release();
    }
}

impl Stack {
    /// A DynamoDB item by its `pk` / `sk` (consistent read), as JSON.
    pub async fn get_item_pk_sk(
        &self,
        table: &str,
        pk: &str,
        sk: &str,
    ) -> Result<Option<serde_json::Value>> {
        self.get_item_keyed(table, &[("pk", pk), ("sk", sk)]).await
    }

    /// The app's `DATABASE_URL` (the one the app secret carries).
    pub fn database_url(&self) -> Result<String> {
        self.info["services"]["postgres"]["url"]
            .as_str()
            .map(str::to_string)
            .context(
                "stack.json has no services.postgres.url: is this stack older than the real app?",
            )
    }

    /// One SQL statement through `psql` (unaligned, tuples only): rows of `|`-separated fields.
    pub fn sql(&self, statement: &str) -> Result<Vec<String>> {
        let out = stdout_of(
            Command::new("psql").arg(self.database_url()?).args([
                "-AtqX",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                statement,
            ]),
            "psql (apt-get install postgresql-client)",
            &format!("psql {statement:?} failed"),
        )?;
        Ok(out.lines().map(str::to_string).collect())
    }

    /// The single value of a one-row, one-column query.
    pub fn sql_value(&self, statement: &str) -> Result<String> {
        let rows = self.sql(statement)?;
        match rows.as_slice() {
            [one] => Ok(one.clone()),
            _ => bail!("{statement:?} returned {} rows: {rows:?}", rows.len()),
        }
    }

    /// The app database's column names of `table`, sorted.
    pub fn columns(&self, table: &str) -> Result<Vec<String>> {
        self.sql(&format!(
            "SELECT column_name FROM information_schema.columns WHERE table_name = '{table}' ORDER BY column_name"
        ))
    }

    /// The app database's applied migration versions (`schema_migrations`), sorted.
    pub fn migration_versions(&self) -> Result<Vec<String>> {
        self.sql("SELECT version FROM schema_migrations ORDER BY version")
    }

    /// A Redis command through `redis-cli` against the stack's redis-server.
    pub fn redis(&self, args: &[&str]) -> Result<String> {
        let r = &self.info["services"]["redis"];
        let out = stdout_of(
            Command::new("redis-cli")
                .args(["-p", &r["port"].to_string(), "--no-auth-warning", "-a"])
                .arg(r["password"].as_str().unwrap_or_default())
                .args(args),
            "redis-cli (apt-get install redis-tools)",
            &format!("redis-cli {args:?}"),
        )?;
        Ok(out.trim().to_string())
    }

    /// Commit `files` (path, content) to the app repository on `branch` (created from `main`
    /// when missing); the commit's SHA. `main` stays checked out afterwards.
    pub fn commit_to_app(
        &self,
        branch: &str,
        files: &[(&str, &str)],
        message: &str,
    ) -> Result<String> {
        let repo = self.app_repo();
        if branch != "main" {
            if git(&repo, &["rev-parse", "--verify", "--quiet", branch]).is_err() {
                git(&repo, &["branch", branch, "main"])?;
            }
            git(&repo, &["checkout", "-q", branch])?;
        }
        let result = (|| {
            for (path, content) in files {
                let p = repo.join(path);
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(&p, content)?;
                git(&repo, &["add", path])?;
            }
            git(
                &repo,
                &[
                    "-c",
                    "user.name=t",
                    "-c",
                    "user.email=t@e",
                    "commit",
                    "-q",
                    "-m",
                    message,
                ],
            )?;
            git(&repo, &["rev-parse", "HEAD"])
        })();
        if branch != "main" {
            git(&repo, &["checkout", "-q", "main"])?;
        }
        result
    }

    /// `replica.py exec` into a running ECS task of this stack: `command` in a pseudo-terminal,
    /// `typed` lines typed at its prompts (as an operator would through ECS Exec). Exit status
    /// and the terminal transcript.
    pub fn exec_typed(
        &self,
        task: &str,
        command: &[&str],
        typed: &[&str],
    ) -> Result<(i32, String)> {
        use std::io::Write;
        let python: PathBuf = repo_root().join(".venv/bin/python");
        let mut child = Command::new(python)
            .arg(repo_root().join("local/replica.py"))
            .args([
                "exec", "--name", &self.name, "--task", task, "--type", "-", "--",
            ])
            .args(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("replica.py exec")?;
        {
            let mut stdin = child.stdin.take().context("stdin")?;
            for line in typed {
                writeln!(stdin, "{line}")?;
            }
        }
        let out = child.wait_with_output()?;
        Ok((
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ))
    }
}

/// Run `cmd` (`tool` names it when it cannot start); its stdout, or an error `failed` with its
/// stderr when it exits unsuccessfully.
fn stdout_of(cmd: &mut Command, tool: &str, failed: &str) -> Result<String> {
    let out = cmd.output().context(tool.to_string())?;
    if !out.status.success() {
        bail!("{failed}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Terminal output without ANSI escape sequences and carriage returns.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        if c != '\r' {
            out.push(c);
        }
    }
    out
}

/// A suffix unique to this run: digits and lowercase letters (Ruby constant- and column-safe).
pub fn suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}", nanos % 0xffff_ffff_ffff)
}

/// A migration version (UTC timestamp) no earlier migration has, and never in the future
/// relative to the previous call (versions must sort).
pub fn version() -> String {
    std::thread::sleep(std::time::Duration::from_millis(1100));
    chrono::Utc::now().format("%Y%m%d%H%M%S").to_string()
}

/// Rails' `camelize` of a file name: `add_x_to_users` → `AddXToUsers`.
pub fn camel(s: &str) -> String {
    s.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// A report the migration shim wrote for the execution `execution` (`preflight.json`,
/// `migrate.json`: the build's artifacts in the logs bucket).
pub async fn migration_report(
    stack: &Stack,
    execution: &str,
    file: &str,
) -> Result<serde_json::Value> {
    let bucket = stack.bucket("LogsBucket")?;
    let body = stack
        .object(&format!(
            "s3://{bucket}/migrations/{execution}/report/{file}"
        ))
        .await
        .with_context(|| format!("{file} of {execution}"))?;
    Ok(serde_json::from_slice(&body)?)
}

/// Migrate `commit` (an execution named `<prefix>-<unique>`) and wait up to `timeout` for the
/// end: the execution's ARN, its name and its end.
pub async fn migrate_within(
    stack: &Stack,
    commit: &str,
    prefix: &str,
    timeout: std::time::Duration,
) -> Result<(String, String, crate::Ended)> {
    let name = crate::unique_name(prefix);
    let arn = stack
        .submit(
            "migration",
            &name,
            &crate::migration_input(commit, serde_json::json!({})),
        )
        .await?;
    let end = stack.wait_end(&arn, timeout).await?;
    Ok((arn, name, end))
}
