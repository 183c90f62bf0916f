//! What the migration build reports about itself (the shim's `preflight.json` and
//! `migrate.json`, uploaded as the build's artifacts) and the result card made from it: the
//! pending list, findings, per-migration duration, lock waits and retries, and on failure the
//! failing migration, its statement and the PostgreSQL error.

use serde::{Deserialize, Serialize};

use crate::migration::preflight::{Gate, Policy};

/// At most this many statements per migration and this many findings travel in the workflow's
/// state (the full report stays in S3).
pub const MAX_STATEMENTS: usize = 20;
pub const MAX_FINDINGS: usize = 40;
const MAX_SQL: usize = 400;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Preflight {
    #[serde(default)]
    pub approach: String,
    #[serde(default)]
    pub policy: String,
    #[serde(default)]
    pub pending: Vec<Pending>,
    #[serde(default)]
    pub findings: Vec<Finding>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub scratch_error: Option<String>,
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub gate: Option<String>,
    #[serde(default)]
    pub duration_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    pub version: String,
    #[serde(rename = "class")]
    pub class_name: String,
    pub file: String,
    #[serde(default)]
    pub disables_ddl_transaction: bool,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub statements: Vec<Statement>,
    #[serde(default)]
    pub scratch_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Statement {
    pub sql: String,
    #[serde(default)]
    pub line: Option<u32>,
    #[serde(default)]
    pub raw: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub rule: String,
    pub version: String,
    #[serde(rename = "class")]
    pub class_name: String,
    pub file: String,
    #[serde(default)]
    pub line: Option<u32>,
    pub message: String,
    pub recipe: String,
    #[serde(default)]
    pub sql: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Migrate {
    #[serde(default)]
    pub lock_timeout: String,
    #[serde(default)]
    pub statement_timeout: String,
    #[serde(default)]
    pub lock_retries: u32,
    #[serde(default)]
    pub migrations: Vec<Applied>,
    #[serde(default)]
    pub failure: Option<Failure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    pub version: String,
    #[serde(rename = "class")]
    pub class_name: String,
    #[serde(default)]
    pub file: String,
    pub status: String,
    #[serde(default)]
    pub attempts: Vec<LockWait>,
    #[serde(default)]
    pub duration_ms: Option<u64>,
    #[serde(default)]
    pub lock_wait_ms: Option<u64>,
    #[serde(default)]
    pub retries: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockWait {
    pub attempt: u32,
    #[serde(default)]
    pub waited_ms: u64,
    #[serde(default)]
    pub table: Option<String>,
    #[serde(default)]
    pub statement: String,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub blockers: Vec<Blocker>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blocker {
    pub pid: i64,
    pub mode: String,
    #[serde(default)]
    pub application: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub version: String,
    #[serde(rename = "class")]
    pub class_name: String,
    #[serde(default)]
    pub file: String,
    #[serde(default)]
    pub statement: String,
    #[serde(default)]
    pub error_class: String,
    #[serde(default)]
    pub pg_error: String,
    #[serde(default)]
    pub pg_code: Option<String>,
    #[serde(default)]
    pub lock_timeout: bool,
    #[serde(default)]
    pub table: Option<String>,
    #[serde(default)]
    pub attempts: Option<u32>,
    #[serde(default)]
    pub message: Option<String>,
}

/// The run's report as the workflow carries it (bounded; `uri` has the full files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MigrationReport {
    pub policy: Policy,
    pub gate: Gate,
    pub uri: String,
    #[serde(default)]
    pub preflight: Option<Preflight>,
    #[serde(default)]
    pub migrate: Option<Migrate>,
}

fn clip(s: &str, max: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= max {
        one
    } else {
        format!("{}…", one.chars().take(max).collect::<String>())
    }
}

impl MigrationReport {
    /// Bound what the state carries: statements and findings clipped, the rest left in S3.
    pub fn bounded(mut self) -> Self {
        if let Some(p) = self.preflight.as_mut() {
            for m in &mut p.pending {
                m.statements.truncate(MAX_STATEMENTS);
                for s in &mut m.statements {
                    s.sql = clip(&s.sql, MAX_SQL);
                }
            }
            p.findings.truncate(MAX_FINDINGS);
            for f in &mut p.findings {
                f.sql = f.sql.as_deref().map(|s| clip(s, MAX_SQL));
            }
            p.error = p.error.as_deref().map(|e| clip(e, 600));
            p.scratch_error = p.scratch_error.as_deref().map(|e| clip(e, 600));
        }
        if let Some(m) = self.migrate.as_mut() {
            for a in &mut m.migrations {
                a.attempts.truncate(MAX_STATEMENTS);
                for w in &mut a.attempts {
                    w.statement = clip(&w.statement, MAX_SQL);
                }
            }
            if let Some(f) = m.failure.as_mut() {
                f.statement = clip(&f.statement, 600);
                f.pg_error = f.pg_error.chars().take(800).collect();
            }
        }
        self
    }

    pub fn findings(&self) -> &[Finding] {
        self.preflight
            .as_ref()
            .map(|p| p.findings.as_slice())
            .unwrap_or_default()
    }

    pub fn failure(&self) -> Option<&Failure> {
        self.migrate.as_ref().and_then(|m| m.failure.as_ref())
    }

    /// The first line of a failed migration: version, class, statement, PG error.
    pub fn failure_text(&self) -> Option<String> {
        let f = self.failure()?;
        let mut t = format!(
            "Failing migration: {} {} ({})\n",
            f.version, f.class_name, f.file
        );
        if let Some(msg) = &f.message {
            t.push_str(&format!("{msg}\n"));
        }
        if !f.statement.is_empty() {
            t.push_str(&format!("Statement: {}\n", clip(&f.statement, 600)));
        }
        t.push_str(&format!(
            "PostgreSQL error{}{}: {}\n",
            f.pg_code
                .as_deref()
                .map(|c| format!(" {c}"))
                .unwrap_or_default(),
            if f.error_class.is_empty() {
                String::new()
            } else {
                format!(" ({})", f.error_class)
            },
            clip(&f.pg_error, 800)
        ));
        Some(t)
    }

    /// The card as plain text (CodePipeline's failure message, the history, the CLI), within
    /// `max` characters.
    pub fn card(&self, max: usize) -> String {
        let mut t = String::new();
        if let Some(p) = &self.preflight {
            t.push_str(&format!(
                "Pre-flight ({}, policy {}): {} pending, {} finding(s), gate {}\n",
                p.approach,
                self.policy.as_str(),
                p.pending.len(),
                p.findings.len(),
                serde_json::to_value(&self.gate)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            ));
            if let Some(e) = &p.error {
                t.push_str(&format!(
                    "Pre-flight could not complete: {}\n",
                    clip(e, 300)
                ));
            }
            for m in &p.pending {
                let applied = self
                    .migrate
                    .as_ref()
                    .and_then(|r| r.migrations.iter().find(|a| a.version == m.version));
                let how = match applied {
                    Some(a) => format!(
                        " — {} in {} ms{}",
                        a.status,
                        a.duration_ms.unwrap_or_default(),
                        match (a.retries.unwrap_or_default(), a.attempts.len()) {
                            (_, 0) => String::new(),
                            (r, n) => format!(
                                ", {n} lock wait(s) ({} ms), {r} retr{}",
                                a.lock_wait_ms.unwrap_or_default(),
                                if r == 1 { "y" } else { "ies" }
                            ),
                        }
                    ),
                    None => " — not run".to_string(),
                };
                t.push_str(&format!(
                    "- {} {} ({}){}{}\n",
                    m.version,
                    m.class_name,
                    m.file,
                    if m.disables_ddl_transaction {
                        " [no DDL transaction]"
                    } else {
                        ""
                    },
                    how
                ));
            }
            for f in &p.findings {
                t.push_str(&format!(
                    "! {} {} {}:{}: {} → {}\n",
                    f.rule,
                    f.class_name,
                    f.file,
                    f.line.map(|l| l.to_string()).unwrap_or_else(|| "?".into()),
                    f.message,
                    f.recipe
                ));
            }
        } else {
            t.push_str("Pre-flight: no report (the build ended before it)\n");
        }
        t.push_str(&format!("Report: {}\n", self.uri));
        if t.chars().count() > max {
            let more = format!("\n… (full report: {})\n", self.uri);
            let mut cut: String = t
                .chars()
                .take(max.saturating_sub(more.chars().count()))
                .collect();
            cut.push_str(&more);
            return cut;
        }
        t
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn preflight_with(findings: usize) -> Preflight {
        Preflight {
            approach: "scratch-database".into(),
            policy: "report".into(),
            pending: vec![Pending {
                version: "20261201000000".into(),
                class_name: "AddIndexToUsersName".into(),
                file: "db/migrate/20261201000000_add_index_to_users_name.rb".into(),
                disables_ddl_transaction: false,
                sha256: Some("ab".repeat(32)),
                statements: vec![Statement {
                    sql: "CREATE INDEX \"index_users_on_name\" ON \"users\" (\"name\")".into(),
                    line: Some(3),
                    raw: false,
                }],
                scratch_ms: Some(12),
            }],
            findings: (0..findings)
                .map(|_| Finding {
                    rule: "index-not-concurrent".into(),
                    version: "20261201000000".into(),
                    class_name: "AddIndexToUsersName".into(),
                    file: "db/migrate/20261201000000_add_index_to_users_name.rb".into(),
                    line: Some(3),
                    message: "index created without `algorithm: :concurrently` on the existing table users".into(),
                    recipe: "add `disable_ddl_transaction!` and `add_index ..., algorithm: :concurrently`".into(),
                    sql: Some("CREATE INDEX ...".into()),
                })
                .collect(),
            error: None,
            scratch_error: None,
            digest: Some("d1".into()),
            gate: None,
            duration_ms: Some(900),
        }
    }

    #[test]
    fn the_shims_json_parses() {
        let json = serde_json::json!({
            "version": 1, "approach": "scratch-database", "policy": "report",
            "pending": [{"version": "1", "class": "A", "file": "db/migrate/1_a.rb",
                         "disablesDdlTransaction": true, "sha256": "x",
                         "statements": [{"sql": "SELECT 1", "line": 2, "raw": true}], "scratchMs": 3}],
            "findings": [], "error": null, "digest": "d", "gate": "pass", "durationMs": 5
        });
        let p: Preflight = serde_json::from_value(json).unwrap();
        assert!(p.pending[0].disables_ddl_transaction);
        let m: Migrate = serde_json::from_value(serde_json::json!({
            "version": 1, "lockTimeout": "5s", "statementTimeout": "30min", "lockRetries": 3,
            "migrations": [{"version": "1", "class": "A", "file": "f", "status": "failed",
                "attempts": [{"attempt": 1, "waitedMs": 5001, "table": "users", "statement": "CREATE INDEX",
                  "error": "PG::LockNotAvailable: ERROR:  canceling statement due to lock timeout",
                  "blockers": [{"pid": 7, "mode": "AccessExclusiveLock", "application": "psql"}]}],
                "durationMs": 5100, "lockWaitMs": 5001, "retries": 0}],
            "failure": {"version": "1", "class": "A", "file": "f", "statement": "CREATE INDEX",
               "errorClass": "PG::LockNotAvailable", "pgError": "ERROR: canceling statement due to lock timeout",
               "pgCode": "55P03", "lockTimeout": true, "table": "users", "attempts": 1, "message": "gave up"}
        }))
        .unwrap();
        assert_eq!(m.failure.unwrap().table.as_deref(), Some("users"));
    }

    #[test]
    fn the_card_lists_pending_findings_and_timings_within_its_bound() {
        let r = MigrationReport {
            policy: Policy::RequireApproval,
            gate: Gate::NeedsApproval,
            uri: "s3://logs/migrations/e1/report/".into(),
            preflight: Some(preflight_with(2)),
            migrate: None,
        };
        let card = r.card(4000);
        assert!(
            card.contains("1 pending, 2 finding(s), gate needs-approval"),
            "{card}"
        );
        assert!(
            card.contains("20261201000000 AddIndexToUsersName"),
            "{card}"
        );
        assert!(card.contains("index-not-concurrent AddIndexToUsersName db/migrate/20261201000000_add_index_to_users_name.rb:3"), "{card}");
        assert!(card.contains("— not run"), "{card}");
        let mut big = r.clone();
        big.preflight.as_mut().unwrap().findings = preflight_with(200).findings;
        let clipped = big.bounded().card(1500);
        assert!(clipped.chars().count() <= 1500, "{}", clipped.len());
        assert!(clipped.contains("full report: s3://logs/migrations/e1/report/"));
    }

    #[test]
    fn bounded_clips_what_the_state_carries() {
        let mut p = preflight_with(100);
        p.pending[0].statements = (0..100)
            .map(|i| Statement {
                sql: format!("UPDATE t SET x = {i} {}", "y".repeat(5000)),
                line: None,
                raw: true,
            })
            .collect();
        let r = MigrationReport {
            policy: Policy::Report,
            gate: Gate::Reported,
            uri: "s3://x".into(),
            preflight: Some(p),
            migrate: None,
        }
        .bounded();
        let v = serde_json::to_string(&r).unwrap();
        assert!(v.len() < 60_000, "{}", v.len());
        assert_eq!(r.findings().len(), MAX_FINDINGS);
    }
}
