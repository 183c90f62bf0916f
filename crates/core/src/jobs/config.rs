//! The jobs file (`infra/jobs.yaml`): every scheduled job as configuration. Validated strictly;
//! every error names the job and the field. Embedded into the functions and the CLI at build
//! time, so the schedules in the template, the workflow and `batchless jobs claim` read the same
//! reviewed file.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Duration;
use serde::{Deserialize, Serialize};

use super::schedule::Schedule;

/// The jobs file shipped with the functions and the CLI.
pub const EMBEDDED: &str = include_str!("../../../../infra/jobs.yaml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Concurrency {
    /// Skip (and record) an occurrence while a previous run of the job is live (the default).
    #[default]
    Forbid,
    /// Run regardless.
    Allow,
    /// Stop the live run's task, then run.
    Replace,
}

impl Concurrency {
    pub fn as_str(self) -> &'static str {
        match self {
            Concurrency::Forbid => "forbid",
            Concurrency::Allow => "allow",
            Concurrency::Replace => "replace",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskSize {
    Small,
    Medium,
    Large,
}

impl TaskSize {
    /// Fargate (cpu units, memory MiB).
    pub fn cpu_memory(self) -> (u32, u32) {
        match self {
            TaskSize::Small => (256, 512),
            TaskSize::Medium => (1024, 2048),
            TaskSize::Large => (2048, 4096),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawNotify {
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    mention: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawParameter {
    name: String,
    pattern: String,
}

/// What a manual run may change (`manual:` in the jobs file); nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawManual {
    #[serde(default)]
    parameters: Vec<RawParameter>,
    #[serde(default)]
    environment: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawJob {
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    schedule: Option<String>,
    timezone: Option<String>,
    command: Option<String>,
    #[serde(default)]
    task_size: Option<TaskSize>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    concurrency: Option<Concurrency>,
    #[serde(default)]
    catch_up_window: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    notify: Option<RawNotify>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    manual: Option<RawManual>,
    #[serde(default)]
    paused: Option<super::pause::Pause>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    jobs: Vec<serde_norway::Value>,
}

/// A validated job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub name: String,
    pub description: String,
    pub schedule: String,
    pub timezone: String,
    pub command: String,
    pub task_size: TaskSize,
    pub timeout_seconds: u64,
    pub concurrency: Concurrency,
    pub catch_up_seconds: u64,
    pub enabled: bool,
    pub notify_channel: Option<String>,
    pub mention: Vec<String>,
    pub environment: BTreeMap<String, String>,
    /// The named parameters a manual run may give, in the order they are passed.
    pub parameters: Vec<Parameter>,
    /// The variables a manual run may set (each also passes the overrides denylist).
    pub manual_environment: Vec<String>,
    /// Paused by `batchless jobs pause` (who, when, why): the schedule is generated `DISABLED`,
    /// so the next deploy keeps the pause (issue 20).
    pub paused: Option<super::pause::Pause>,
}

/// A named parameter of a manual run: its value must match `pattern` entirely.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Parameter {
    pub name: String,
    pub pattern: String,
}

/// How long a parameter's value may be.
pub const PARAMETER_MAX_CHARS: usize = 256;

impl Parameter {
    fn regex(pattern: &str) -> Result<regex_lite::Regex, String> {
        regex_lite::Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| format!("pattern {pattern:?} does not compile: {e}"))
    }

    /// Whether `value` is acceptable: the whole value matches the pattern, it is one line of at
    /// most [`PARAMETER_MAX_CHARS`] printable characters, and it cannot be read as an option
    /// (a leading `-`) or, for a rake job, as another task or argument (`,` `[` `]`, spaces,
    /// `=`, quotes) — whatever the pattern says.
    pub fn check(&self, value: &str, rake: bool) -> Result<(), String> {
        if value.is_empty() || value.chars().count() > PARAMETER_MAX_CHARS {
            return Err(format!("must be 1-{PARAMETER_MAX_CHARS} characters"));
        }
        if value.chars().any(|c| c.is_control()) {
            return Err("contains control characters".into());
        }
        if value.starts_with('-') {
            return Err(format!(
                "{:?} starts with `-` (it would be read as an option)",
                crate::platform::input::truncate(value, 60)
            ));
        }
        if rake
            && value
                .chars()
                .any(|c| c.is_whitespace() || ",[]='\"".contains(c))
        {
            return Err(format!(
                "{:?} contains a space, `,`, `[`, `]`, `=` or a quote (rake would read another task or argument)",
                crate::platform::input::truncate(value, 60)
            ));
        }
        let re = Parameter::regex(&self.pattern)?;
        if !re.is_match(value) {
            return Err(format!(
                "{:?} does not match the pattern {:?} declared in the jobs file",
                crate::platform::input::truncate(value, 60),
                self.pattern
            ));
        }
        Ok(())
    }
}

impl Job {
    /// A rake job (its parameters become the task's arguments, `task[a,b]`).
    pub fn is_rake(&self) -> bool {
        self.command.starts_with("bin/rake ")
    }

    /// The command of a manual run: the job's command with the declared parameters given, in
    /// declaration order — `--<name> '<value>'` for a runner script, `task[v1,v2]` for rake
    /// (positions before the last given one are left empty). Every value is checked first
    /// ([`Parameter::check`]); an undeclared name is an error naming it.
    pub fn command_with(
        &self,
        params: &BTreeMap<String, String>,
    ) -> Result<String, (String, String)> {
        for (k, v) in params {
            match self.parameters.iter().find(|p| &p.name == k) {
                None => {
                    let declared: Vec<&str> =
                        self.parameters.iter().map(|p| p.name.as_str()).collect();
                    return Err((
                        k.clone(),
                        format!(
                            "{:?} is not a parameter of job {:?} (declared: {})",
                            crate::platform::input::truncate(k, 60),
                            self.name,
                            if declared.is_empty() {
                                "none".to_string()
                            } else {
                                declared.join(", ")
                            }
                        ),
                    ));
                }
                Some(p) => p.check(v, self.is_rake()).map_err(|e| (k.clone(), e))?,
            }
        }
        let quote = |a: &str| format!("'{}'", a.replace('\'', r"'\''"));
        let mut command = self.command.clone();
        if params.is_empty() {
            return Ok(command);
        }
        if self.is_rake() {
            let last = self
                .parameters
                .iter()
                .rposition(|p| params.contains_key(&p.name))
                .unwrap_or(0);
            let values: Vec<&str> = self.parameters[..=last]
                .iter()
                .map(|p| params.get(&p.name).map(String::as_str).unwrap_or(""))
                .collect();
            // `bin/rake <task>`: the one task takes the arguments, all quoted as one word.
            let task = command.split_off("bin/rake ".len());
            command.push_str(&quote(&format!("{task}[{}]", values.join(","))));
        } else {
            for p in &self.parameters {
                if let Some(v) = params.get(&p.name) {
                    command.push_str(&format!(" --{} {}", p.name, quote(v)));
                }
            }
        }
        Ok(command)
    }

    pub fn parsed_schedule(&self) -> Schedule {
        Schedule::parse(&self.schedule, &self.timezone).expect("validated at load")
    }

    pub fn catch_up(&self) -> Duration {
        Duration::seconds(self.catch_up_seconds as i64)
    }
}

#[derive(Debug, Clone)]
pub struct JobsFile {
    pub jobs: Vec<Job>,
}

/// `90s`, `15m`, `2h`, `1d`.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 15m, 2h or 1d"))?;
    let per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{s:?} is not a duration like 90s, 15m, 2h or 1d")),
    };
    Ok(n * per)
}

/// An [`InputError`](crate::platform::input::InputError)'s message without its own
/// "field `x`: " (the jobs file's errors name the job and the field themselves).
fn unprefixed(message: &str) -> String {
    match message.strip_prefix("field `") {
        Some(rest) => rest
            .split_once("`: ")
            .map_or(message, |(_, m)| m)
            .to_string(),
        None => message.to_string(),
    }
}

const MAX_TIMEOUT: u64 = 24 * 3600;
/// `batchless-production-job-<name>` stays within Scheduler's 64 characters.
pub const NAME_MAX: usize = 38;

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The command must be a Rails runner script or a rake task, one line, no shell operators.
fn valid_command(cmd: &str) -> Result<(), String> {
    if !(cmd.starts_with("bin/rails runner ") || cmd.starts_with("bin/rake ")) {
        return Err(format!(
            "{cmd:?} must start with `bin/rails runner ` or `bin/rake `"
        ));
    }
    if let Some(task) = cmd.strip_prefix("bin/rake ") {
        if task.is_empty() || task.starts_with('-') || task.contains(char::is_whitespace) {
            return Err(format!(
                "{cmd:?} must name exactly one rake task and no options (`bin/rake <task>`; \
                 a manual run's values come from declared `manual.parameters`)"
            ));
        }
    }
    if cmd
        .chars()
        .any(|c| c.is_control() || ";&|`$<>\\".contains(c))
    {
        return Err(format!(
            "{cmd:?} contains a control character or a shell operator (; & | ` $ < > \\)"
        ));
    }
    Ok(())
}

impl JobsFile {
    /// Parse and validate: unknown keys, bad schedules, bad durations and duplicate names are
    /// errors naming the job and the field. All problems are reported at once.
    pub fn parse(yaml: &str) -> Result<JobsFile, Vec<String>> {
        let raw: RawFile =
            serde_norway::from_str(yaml).map_err(|e| vec![format!("jobs file: {e}")])?;
        let mut errors = Vec::new();
        let mut jobs = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, value) in raw.jobs.into_iter().enumerate() {
            let label_from = |v: &serde_norway::Value| {
                v.get("name")
                    .and_then(|n| n.as_str())
                    .map(|n| format!("job {n:?}"))
                    .unwrap_or_else(|| format!("job #{}", i + 1))
            };
            let label = label_from(&value);
            let raw: RawJob = match serde_norway::from_value(value) {
                Ok(r) => r,
                Err(e) => {
                    errors.push(format!("{label}: {e}"));
                    continue;
                }
            };
            let mut err =
                |field: &str, msg: String| errors.push(format!("{label}: field `{field}`: {msg}"));
            let name = raw.name.clone().unwrap_or_default();
            if raw.name.is_none() {
                err("name", "missing".into());
            } else if !valid_name(&name) {
                err(
                    "name",
                    format!("{name:?} must be 1-{NAME_MAX} characters of [a-z0-9-], starting with a letter"),
                );
            } else if !seen.insert(name.clone()) {
                err("name", format!("duplicate job name {name:?}"));
            }
            let timezone = match &raw.timezone {
                None => {
                    err(
                        "timezone",
                        "missing (schedules need an explicit time zone)".into(),
                    );
                    String::new()
                }
                Some(tz) => {
                    if let Err(e) = super::schedule::parse_timezone(tz) {
                        err("timezone", e);
                    }
                    tz.clone()
                }
            };
            let schedule = raw.schedule.clone().unwrap_or_default();
            if raw.schedule.is_none() {
                err("schedule", "missing".into());
            } else if !timezone.is_empty() && super::schedule::parse_timezone(&timezone).is_ok() {
                if let Err(e) = Schedule::parse(&schedule, &timezone) {
                    err("schedule", e);
                }
            }
            let command = raw.command.clone().unwrap_or_default();
            match &raw.command {
                None => err("command", "missing".into()),
                Some(c) => {
                    if let Err(e) = valid_command(c) {
                        err("command", e);
                    }
                }
            }
            let timeout_seconds = match raw
                .timeout
                .as_deref()
                .map(parse_duration)
                .unwrap_or(Ok(3600))
            {
                Ok(s) if (60..=MAX_TIMEOUT).contains(&s) => s,
                Ok(s) => {
                    err("timeout", format!("{s}s is outside 1m-24h"));
                    0
                }
                Err(e) => {
                    err("timeout", e);
                    0
                }
            };
            let catch_up_seconds = match raw
                .catch_up_window
                .as_deref()
                .map(parse_duration)
                .unwrap_or(Ok(900))
            {
                Ok(s) if (60..=86400).contains(&s) => s,
                Ok(s) => {
                    err("catchUpWindow", format!("{s}s is outside 1m-24h"));
                    0
                }
                Err(e) => {
                    err("catchUpWindow", e);
                    0
                }
            };
            let notify = raw.notify.clone().unwrap_or(RawNotify {
                channel: None,
                mention: vec![],
            });
            if let Some(c) = &notify.channel {
                if !(c.starts_with('C') || c.starts_with('G'))
                    || !c.bytes().all(|b| b.is_ascii_alphanumeric())
                {
                    err(
                        "notify.channel",
                        format!("{c:?} is not a Slack channel id (C…)"),
                    );
                }
            }
            for k in raw.environment.keys() {
                if let Err(e) = crate::platform::input::env_override_name("environment", k) {
                    err("environment", unprefixed(&e.message));
                }
            }
            let manual = raw.manual.clone().unwrap_or_default();
            let mut names = BTreeSet::new();
            for p in &manual.parameters {
                let ok = !p.name.is_empty()
                    && p.name.len() <= 32
                    && p.name.starts_with(|c: char| c.is_ascii_lowercase())
                    && p.name.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                    });
                if !ok {
                    err(
                        "manual.parameters.name",
                        format!(
                            "{:?} must be 1-32 characters of [a-z0-9_-], starting with a letter",
                            p.name
                        ),
                    );
                } else if !names.insert(p.name.clone()) {
                    err(
                        "manual.parameters.name",
                        format!("duplicate parameter {:?}", p.name),
                    );
                }
                if let Err(e) = Parameter::regex(&p.pattern) {
                    err(&format!("manual.parameters.{}.pattern", p.name), e);
                }
            }
            for k in &manual.environment {
                if let Err(e) = crate::platform::input::env_override_name("manual.environment", k) {
                    err("manual.environment", unprefixed(&e.message));
                }
            }
            if let Some(d) = &raw.description {
                if d.chars().count() > 200 {
                    err("description", "longer than 200 characters".into());
                }
            }
            if let Some(p) = &raw.paused {
                if let Err(e) = p.check() {
                    err("paused", e);
                }
                if raw.enabled == Some(false) {
                    err(
                        "paused",
                        "a disabled job cannot be paused (its schedule is DISABLED already)".into(),
                    );
                }
            }
            jobs.push(Job {
                name,
                description: raw.description.unwrap_or_default(),
                schedule,
                timezone,
                command,
                task_size: raw.task_size.unwrap_or(TaskSize::Small),
                timeout_seconds,
                concurrency: raw.concurrency.unwrap_or_default(),
                catch_up_seconds,
                enabled: raw.enabled.unwrap_or(true),
                notify_channel: notify.channel,
                mention: notify.mention,
                environment: raw.environment,
                parameters: manual
                    .parameters
                    .into_iter()
                    .map(|p| Parameter {
                        name: p.name,
                        pattern: p.pattern,
                    })
                    .collect(),
                manual_environment: manual.environment,
                paused: raw.paused,
            });
        }
        if errors.is_empty() {
            Ok(JobsFile { jobs })
        } else {
            Err(errors)
        }
    }

    /// The embedded jobs file (validated by a unit test, so this cannot fail in a build).
    pub fn embedded() -> JobsFile {
        JobsFile::parse(EMBEDDED).expect("infra/jobs.yaml is validated by the unit tests")
    }

    /// Check the people mentioned exist in the people map of `environment`.
    pub fn check_people(&self, people: &crate::shared::people::People) -> Vec<String> {
        let mut errors = Vec::new();
        for j in &self.jobs {
            for p in &j.mention {
                if people.by_id(p).is_none() {
                    errors.push(format!(
                        "job {:?}: field `notify.mention`: {p:?} is nobody in the people map ({})",
                        j.name,
                        people.environment()
                    ));
                }
            }
        }
        errors
    }

    pub fn get(&self, name: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_file_is_valid_and_its_people_exist() {
        let f = JobsFile::parse(EMBEDDED).unwrap_or_else(|e| panic!("{}", e.join("\n")));
        assert!(!f.jobs.is_empty());
        for env in ["staging", "production"] {
            let people =
                crate::shared::people::People::parse(crate::shared::people::EMBEDDED, env).unwrap();
            assert_eq!(f.check_people(&people), Vec::<String>::new());
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert!(parse_duration("2 hours").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn errors_name_the_job_and_the_field() {
        let yaml = r#"
jobs:
  - name: report
    schedule: cron(0 3 * * ? *)
    timezone: Asia/Tokyo
    command: bin/rails runner script/report.rb
    concurency: forbid
  - name: sync
    schedule: cron(0 25 * * ? *)
    timezone: UTC
    command: bin/rake sync
  - name: sync
    schedule: rate(5 minutes)
    timezone: UTC
    command: rm -rf /
    timeout: 3 hours
  - name: tz
    schedule: cron(0 3 * * ? *)
    command: bin/rake x
    concurrency: sometimes
"#;
        let errors = JobsFile::parse(yaml).unwrap_err();
        let all = errors.join("\n");
        for want in [
            "job \"report\": unknown field `concurency`",
            "job \"sync\": field `schedule`: hours: 25 is outside 0-23",
            "job \"sync\": field `name`: duplicate job name \"sync\"",
            "job \"sync\": field `command`: \"rm -rf /\" must start with",
            "job \"sync\": field `timeout`",
            "job \"tz\": unknown variant `sometimes`",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
        let errors = JobsFile::parse(
            "jobs:\n  - name: x\n    schedule: cron(0 3 * * ? *)\n    command: bin/rake x\n",
        )
        .unwrap_err();
        assert!(
            errors[0].contains("job \"x\": field `timezone`: missing"),
            "{errors:?}"
        );
        assert!(JobsFile::parse("job: []").unwrap_err()[0].contains("unknown field `job`"));
    }

    #[test]
    fn manual_declarations_are_validated() {
        let yaml = r#"
jobs:
  - name: a
    schedule: cron(0 3 * * ? *)
    timezone: UTC
    command: bin/rake a:b -E x
  - name: b
    schedule: cron(0 3 * * ? *)
    timezone: UTC
    command: bin/rails runner x.rb
    manual:
      parameters:
        - name: Month
          pattern: x
        - name: day
          pattern: '('
        - name: day
          pattern: x
      environment: [RUBYOPT, OK_VAR]
      arguments: [db:drop]
"#;
        let all = JobsFile::parse(yaml).unwrap_err().join("\n");
        for want in [
            "job \"a\": field `command`: \"bin/rake a:b -E x\" must name exactly one rake task",
            "job \"b\": unknown field `arguments`",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
        let yaml = yaml.replace("      arguments: [db:drop]\n", "");
        let all = JobsFile::parse(&yaml).unwrap_err().join("\n");
        for want in [
            "field `manual.parameters.name`: \"Month\" must be",
            "field `manual.parameters.day.pattern`: pattern \"(\" does not compile",
            "field `manual.parameters.name`: duplicate parameter \"day\"",
            "job \"b\": field `manual.environment`: RUBYOPT is reserved",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
    }

    #[test]
    fn shell_operators_are_rejected() {
        assert!(valid_command("bin/rake a:b[1]").is_ok());
        assert!(valid_command("bin/rails runner x.rb; rm -rf /").is_err());
        assert!(valid_command("bin/rake $(whoami)").is_err());
    }
}
