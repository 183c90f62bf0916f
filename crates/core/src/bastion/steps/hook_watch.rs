//! `hook-watch` (issue 16, a schedule every 5 minutes): "console hook not reporting". For each
//! ECS Exec session of the environment that logged in within the look-back (the sessions
//! table's `byEnvironment` index), the console hook must have been heard from: a session with
//! no hook line `grace` after its login, or whose heartbeats stopped for longer than `gap`
//! without the hook saying the console ended (`console-end`), is alerted in its login thread.
//!
//! - Once per silence: the alert is claimed on the session (`hookAlertFor` = the last heartbeat
//!   it is about, or `never`) before it is posted, so overlapping runs post it once; heartbeats
//!   that resume and stop again are a new silence and a new alert. A post that fails gives the
//!   claim back, and the next run posts it.
//! - A `console-end` the session's heartbeats outlive does not count (a forged end line
//!   followed by the hook's own heartbeats is a gap like any other once they stop).
//! - The input may shorten the configured grace and gap (tests do), never lengthen them.

use aws_types::SdkConfig;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::bastion::session::{SessionRecord, Store};
use crate::error::Error;
use crate::platform::slack::{escape, Message, SlackClient};
use crate::platform::{aws, config, time};

/// What the schedule passes: nothing; a test may shorten the waits.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Input {
    #[serde(default)]
    pub grace_seconds: Option<u64>,
    #[serde(default)]
    pub gap_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    pub checked: usize,
    /// Sessions alerted now.
    pub alerted: Vec<String>,
    /// Sessions whose alert could not be posted (claimed back: the next run posts it).
    pub failed: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long after the login the first hook line may take.
    pub grace: Duration,
    /// How long the heartbeats may pause.
    pub gap: Duration,
    /// How far back logins are looked at.
    pub lookback: Duration,
}

impl Limits {
    /// `HOOK_GRACE_SECONDS` (default 300), `HOOK_GAP_SECONDS` (default 300: five heartbeats
    /// of the hook's default 60 s), `HOOK_LOOKBACK_HOURS` (default 12).
    pub fn from_env() -> Result<Self, Error> {
        let n = |name: &str, default: i64| -> Result<i64, Error> {
            match config::optional(name) {
                None => Ok(default),
                Some(v) => v
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| Error::config(format!("{name} must be a positive number"))),
            }
        };
        Ok(Limits {
            grace: Duration::seconds(n("HOOK_GRACE_SECONDS", 300)?),
            gap: Duration::seconds(n("HOOK_GAP_SECONDS", 300)?),
            lookback: Duration::hours(n("HOOK_LOOKBACK_HOURS", 12)?),
        })
    }

    /// The input's shorter waits, if it asks for them.
    fn shortened(self, input: &Input) -> Limits {
        let shorter = |d: Duration, s: Option<u64>| match s {
            Some(s) => d.min(Duration::seconds(s.min(i64::MAX as u64) as i64)),
            None => d,
        };
        Limits {
            grace: shorter(self.grace, input.grace_seconds),
            gap: shorter(self.gap, input.gap_seconds),
            ..self
        }
    }
}

pub struct Deps {
    pub store: Store,
    pub slack: SlackClient,
    pub environment: String,
    pub alert_channel: String,
    pub limits: Limits,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps {
            store: Store::new(aws::dynamodb(sdk), &config::required("BASTION_TABLE")?),
            slack: config::slack_client(sdk).await?,
            environment: config::environment()?,
            alert_channel: config::required("SLACK_ALERTS_CHANNEL")?,
            limits: Limits::from_env()?,
        })
    }
}

/// A session the hook is silent on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silence {
    /// The last heartbeat it follows, or `never`.
    pub after: String,
    pub text: String,
}

fn minutes(d: Duration) -> i64 {
    d.num_minutes().max(1)
}

/// Pure: is the hook silent on this session at `now`?
pub fn silence(s: &SessionRecord, now: DateTime<Utc>, limits: Limits) -> Option<Silence> {
    let login = time::parse("loginAt", &s.exec.login_at).ok()?;
    if now - login < limits.grace {
        return None;
    }
    let last = s
        .hook_last_seen_at
        .as_deref()
        .and_then(|t| time::parse("hookLastSeenAt", t).ok().map(|at| (t, at)));
    let ended = s
        .hook_ended_at
        .as_deref()
        .and_then(|t| time::parse("hookEndedAt", t).ok());
    match (last, ended) {
        // Ended, and nothing heard after the end: the console is gone, not silenced.
        (Some((_, at)), Some(end)) if at <= end => None,
        (None, Some(_)) => None,
        (None, None) => Some(Silence {
            after: "never".into(),
            text: format!(
                "no console hook line since the login at {} ({} min): the hook is not loaded, was silenced before its first heartbeat, or this is not a console",
                s.exec.login_at,
                minutes(now - login)
            ),
        }),
        (Some((t, at)), _) if now - at > limits.gap => Some(Silence {
            after: t.to_string(),
            text: format!(
                "no heartbeat since {t} ({} min) and no end of the console: the hook was stopped (its heartbeat thread killed, its output redirected) or the session was cut off",
                minutes(now - at)
            ),
        }),
        _ => None,
    }
}

fn alert_message(deps: &Deps, s: &SessionRecord, why: &Silence) -> Message {
    let who = s
        .person_name
        .clone()
        .unwrap_or_else(|| s.exec.principal_arn.clone());
    let text = format!(
        ":rotating_light: *Console hook not reporting* on session `{}` ({}, task `{}`): {}",
        escape(&s.session_id),
        escape(&who),
        escape(&s.exec.task_id),
        escape(&why.text)
    );
    match (&s.channel, &s.thread_ts) {
        (Some(channel), Some(ts)) => Message {
            channel: channel.clone(),
            text,
            blocks: None,
            thread_ts: Some(ts.clone()),
        },
        // No login thread (its post failed): the alerts channel, so it is never silent.
        _ => Message {
            channel: deps.alert_channel.clone(),
            text,
            blocks: None,
            thread_ts: None,
        },
    }
}

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    let limits = deps.limits.shortened(&input);
    let now = time::now();
    let sessions = deps
        .store
        .logged_in_between(
            &deps.environment,
            &time::rfc3339(now - limits.lookback),
            &time::rfc3339(now),
        )
        .await?;
    let mut out = Output {
        checked: sessions.len(),
        alerted: Vec::new(),
        failed: Vec::new(),
    };
    let mut first_error = None;
    for s in &sessions {
        let Some(why) = silence(s, now, limits) else {
            continue;
        };
        if s.hook_alert_for.as_deref() == Some(why.after.as_str()) {
            continue;
        }
        if !deps
            .store
            .claim_hook_alert(&s.session_id, &why.after, &time::rfc3339(now))
            .await?
        {
            continue;
        }
        match deps.slack.post_message(&alert_message(deps, s, &why)).await {
            Ok(_) => {
                tracing::warn!(session = %s.session_id, after = %why.after, "console hook not reporting: alerted");
                out.alerted.push(s.session_id.clone());
            }
            Err(e) => {
                tracing::error!(session = %s.session_id, error = %e, "could not post the not-reporting alert; released for the next run");
                deps.store
                    .release_hook_alert(&s.session_id, &why.after)
                    .await?;
                out.failed.push(s.session_id.clone());
                first_error.get_or_insert(Error::from(e));
            }
        }
    }
    // Retried by the next run (the claims were given back); the error makes the run visible.
    match first_error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(login: &str, last: Option<&str>, ended: Option<&str>) -> SessionRecord {
        let mut s: SessionRecord = crate::bastion::fixtures::posted("s1", true);
        s.exec.login_at = login.into();
        s.hook_last_seen_at = last.map(String::from);
        s.hook_ended_at = ended.map(String::from);
        s
    }

    fn limits() -> Limits {
        Limits {
            grace: Duration::seconds(300),
            gap: Duration::seconds(300),
            lookback: Duration::hours(12),
        }
    }

    fn at(t: &str) -> DateTime<Utc> {
        time::parse("t", t).unwrap()
    }

    #[test]
    fn a_session_never_heard_from_is_silent_after_the_grace() {
        let s = session("2026-12-02T10:00:00Z", None, None);
        assert_eq!(silence(&s, at("2026-12-02T10:04:00Z"), limits()), None);
        let why = silence(&s, at("2026-12-02T10:06:00Z"), limits()).unwrap();
        assert_eq!(why.after, "never");
        assert!(
            why.text.contains("no console hook line since the login"),
            "{}",
            why.text
        );
    }

    #[test]
    fn a_gap_in_the_heartbeats_is_silent_and_an_end_is_not() {
        let s = session("2026-12-02T10:00:00Z", Some("2026-12-02T10:10:00Z"), None);
        assert_eq!(silence(&s, at("2026-12-02T10:14:00Z"), limits()), None);
        let why = silence(&s, at("2026-12-02T10:16:00Z"), limits()).unwrap();
        assert_eq!(why.after, "2026-12-02T10:10:00Z");
        let ended = session(
            "2026-12-02T10:00:00Z",
            Some("2026-12-02T10:10:00Z"),
            Some("2026-12-02T10:10:00Z"),
        );
        assert_eq!(silence(&ended, at("2026-12-02T12:00:00Z"), limits()), None);
        // An end line the hook's heartbeats outlived: a gap once they stop.
        let forged_end = session(
            "2026-12-02T10:00:00Z",
            Some("2026-12-02T10:30:00Z"),
            Some("2026-12-02T10:05:00Z"),
        );
        assert!(silence(&forged_end, at("2026-12-02T10:40:00Z"), limits()).is_some());
    }

    #[test]
    fn the_input_only_shortens_the_waits() {
        let l = limits().shortened(&Input {
            grace_seconds: Some(10),
            gap_seconds: Some(100_000),
        });
        assert_eq!(l.grace, Duration::seconds(10));
        assert_eq!(l.gap, Duration::seconds(300));
    }
}
