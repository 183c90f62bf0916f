//! Pause and resume (issue 20). The authoritative state is the job's Scheduler schedule:
//! a job the jobs file enables whose schedule is `DISABLED` is **paused**. (A job with
//! `enabled: false` has a `DISABLED` schedule by design — e.g. during the cut-over, when the
//! legacy crontab runs it — and is not paused.) Who paused it, when and why travel with the
//! schedule, in its `Description` (`... [paused by <who> at <when>: <note>]`), the same text the
//! template generates from the jobs file's `paused: {by, at, note}`, so a deploy writes back
//! exactly what `batchless jobs pause` set. The change itself is CloudTrail's `UpdateSchedule`
//! event, with the caller's real identity.
//!
//! A description is only a claim: anyone allowed `scheduler:UpdateSchedule` can write
//! "[paused by alice ...]". So the missed-run check counts a pause only when [`verify`] finds it
//! borne out (by CloudTrail's `UpdateSchedule` that wrote it, called by the person it names, or by
//! the deployed jobs file) and in force before the occurrence was due; otherwise the occurrence
//! is missed and the alert says why ([`PauseCheck`] on the occurrence keeps the reading).
//!
//! `UpdateSchedule` replaces the whole schedule (fields left out become their defaults), so
//! [`set_state`] reads it with `GetSchedule` and writes every field back, changing only `State`
//! and `Description`.

use aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput;
use aws_sdk_scheduler::types::ScheduleState;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::platform::aws::AwsResultExt;
use crate::platform::time;
use crate::shared::people::People;

/// At most this many characters of note (Scheduler's `Description` holds 512 in all).
pub const NOTE_MAX_CHARS: usize = 200;
const MARK: &str = " [paused by ";
const RESUMED: &str = " [resumed by ";

/// Who paused a job, when (RFC 3339) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pause {
    pub by: String,
    pub at: String,
    pub note: String,
}

impl Pause {
    /// The note is 1-200 printable characters on one line; `by` and `at` hold no `]`.
    pub fn check(&self) -> Result<(), String> {
        let n = self.note.chars().count();
        if self.note.trim().is_empty() || n > NOTE_MAX_CHARS {
            return Err(format!("the note must be 1-{NOTE_MAX_CHARS} characters"));
        }
        if self.note.chars().any(char::is_control) {
            return Err("the note must be one line without control characters".into());
        }
        if crate::platform::time::parse("at", &self.at).is_err() {
            return Err(format!("`at` {:?} is not an RFC 3339 time", self.at));
        }
        if self.by.is_empty()
            || self.by.len() > 200
            || self.by.contains(']')
            || self.by.contains(" at ")
        {
            return Err(format!("`by` {:?} is not a person id or ARN", self.by));
        }
        Ok(())
    }
}

/// The schedule's name (what `jobs fire` and the console use).
pub fn schedule_name(environment: &str, job: &str) -> String {
    format!("batchless-{environment}-job-{job}")
}

/// The job's own description (as the template writes it).
pub fn base_description(job: &crate::jobs::Job) -> String {
    if job.description.is_empty() {
        format!("Scheduled job {}", job.name)
    } else {
        format!("{}: {}", job.name, job.description)
    }
}

/// The schedule's `Description`: the job's, plus the pause when there is one.
pub fn description(base: &str, pause: Option<&Pause>) -> String {
    match pause {
        None => base.to_string(),
        Some(p) => format!("{base}{MARK}{} at {}: {}]", p.by, p.at, p.note),
    }
}

/// The schedule's `Description` after `jobs resume`: the job's, plus who resumed it, when and
/// why (until the next deploy writes the job's own description back).
pub fn resumed_description(base: &str, resume: &Pause) -> String {
    format!(
        "{base}{RESUMED}{} at {}: {}]",
        resume.by, resume.at, resume.note
    )
}

/// Pure: the job's description and the pause recorded in a schedule's `Description`.
pub fn parse_description(text: &str) -> (String, Option<Pause>) {
    let (base, mark) = parse_marked(text);
    match mark {
        Some((true, p)) => (base, Some(p)),
        Some((false, _)) => (base, None),
        None => (base, None),
    }
}

/// Pure: the resume recorded in a schedule's `Description` (`jobs resume --note`).
pub fn parse_resumed(text: &str) -> Option<Pause> {
    match parse_marked(text).1 {
        Some((false, p)) => Some(p),
        _ => None,
    }
}

/// (base, Some((paused?, record))).
fn parse_marked(text: &str) -> (String, Option<(bool, Pause)>) {
    let (i, paused, mark) = match (text.rfind(MARK), text.rfind(RESUMED)) {
        (Some(p), Some(r)) if r > p => (r, false, RESUMED),
        (Some(p), _) => (p, true, MARK),
        (None, Some(r)) => (r, false, RESUMED),
        (None, None) => return (text.to_string(), None),
    };
    let rest = &text[i + mark.len()..];
    let Some(rest) = rest.strip_suffix(']') else {
        return (text.to_string(), None);
    };
    let parsed = rest.split_once(" at ").and_then(|(by, rest)| {
        rest.split_once(": ").map(|(at, note)| Pause {
            by: by.to_string(),
            at: at.to_string(),
            note: note.to_string(),
        })
    });
    match parsed {
        Some(p) => (text[..i].to_string(), Some((paused, p))),
        None => (text.to_string(), None),
    }
}

/// What the schedule on AWS says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Live {
    pub schedule: String,
    pub enabled: bool,
    /// The pause its description records (set by `jobs pause` or a deploy of a paused job).
    pub pause: Option<Pause>,
    /// The last `jobs resume` its description records (until the next deploy).
    pub resumed: Option<Pause>,
}

impl Live {
    /// Paused: the file enables the job and the schedule is `DISABLED`.
    pub fn is_paused(&self, job: &crate::jobs::Job) -> bool {
        job.enabled && !self.enabled
    }
}

/// `GetSchedule`: the job's schedule's state and pause.
pub async fn live(
    client: &aws_sdk_scheduler::Client,
    environment: &str,
    job: &str,
) -> Result<Live, Error> {
    Ok(read(client, schedule_name(environment, job)).await?.1)
}

/// `GetSchedule` of `name`: the schedule as read (what [`set_state`] writes back) and what it
/// says.
async fn read(
    client: &aws_sdk_scheduler::Client,
    name: String,
) -> Result<(GetScheduleOutput, Live), Error> {
    let out = client
        .get_schedule()
        .name(&name)
        .send()
        .await
        .aws("GetSchedule")?;
    let text = out.description().unwrap_or_default();
    let (_, pause) = parse_description(text);
    let live = Live {
        enabled: out.state() != Some(&ScheduleState::Disabled),
        pause,
        resumed: parse_resumed(text),
        schedule: name,
    };
    Ok((out, live))
}

/// What [`set_state`] writes: paused with its record, or resumed (with a note or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Pause(Pause),
    Resume(Option<Pause>),
}

/// `GetSchedule` then `UpdateSchedule` with every field as read, except `State` (and the
/// pause or resume in `Description`). Returns what the schedule was before.
pub async fn set_state(
    client: &aws_sdk_scheduler::Client,
    environment: &str,
    job: &str,
    change: &Change,
) -> Result<Live, Error> {
    let name = schedule_name(environment, job);
    let (s, was) = read(client, name.clone()).await?;
    let (base, _) = parse_description(s.description().unwrap_or_default());
    let (enabled, new_description) = match change {
        Change::Pause(p) => (false, description(&base, Some(p))),
        Change::Resume(None) => (true, base),
        Change::Resume(Some(r)) => (true, resumed_description(&base, r)),
    };
    client
        .update_schedule()
        .name(&name)
        .set_group_name(s.group_name().map(str::to_string))
        .set_schedule_expression(s.schedule_expression().map(str::to_string))
        .set_schedule_expression_timezone(s.schedule_expression_timezone().map(str::to_string))
        .set_start_date(s.start_date().copied())
        .set_end_date(s.end_date().copied())
        .set_flexible_time_window(s.flexible_time_window().cloned())
        .set_target(s.target().cloned())
        .set_kms_key_arn(s.kms_key_arn().map(str::to_string))
        .set_action_after_completion(s.action_after_completion().cloned())
        .description(new_description)
        .state(if enabled {
            ScheduleState::Enabled
        } else {
            ScheduleState::Disabled
        })
        .send()
        .await
        .aws("UpdateSchedule")?;
    Ok(was)
}

/// How far a pause's `at` may be from CloudTrail's time of the `UpdateSchedule` that wrote it.
pub const AT_TOLERANCE_MINUTES: i64 = 5;

/// CloudTrail's event history lags the call (about 5 minutes on average, up to 15): a pause
/// younger than this that CloudTrail does not bear out yet is decided at a later check.
pub const CLOUDTRAIL_LAG_MINUTES: i64 = 20;

/// ... but only for an occurrence younger than this (the check looks back 120 minutes by
/// default, so a later check still sees it): a pause rewritten again and again cannot keep an
/// occurrence undecided until it leaves the window.
pub const DEFER_OCCURRENCES_MINUTES: i64 = 60;

/// One CloudTrail `UpdateSchedule` record of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleUpdate {
    pub event_id: String,
    pub event_time: DateTime<Utc>,
    /// `userIdentity.arn`: who really called.
    pub caller: String,
    /// The state it set.
    pub enabled: bool,
    /// The `Description` it wrote.
    pub description: String,
}

/// Pure: a CloudTrail record as an `UpdateSchedule` of `schedule` (`None`: another call,
/// another schedule, or a record without a caller or time).
pub fn schedule_update(v: &Value, schedule: &str) -> Option<ScheduleUpdate> {
    let p = &v["requestParameters"];
    if v["eventName"] != "UpdateSchedule" || p["name"] != schedule || v["errorCode"].is_string() {
        return None;
    }
    Some(ScheduleUpdate {
        event_id: v["eventID"].as_str()?.to_string(),
        event_time: time::parse("eventTime", v["eventTime"].as_str()?).ok()?,
        caller: v["userIdentity"]["arn"].as_str()?.to_string(),
        enabled: p["state"] != "DISABLED",
        description: p["description"].as_str().unwrap_or_default().to_string(),
    })
}

/// CloudTrail's `UpdateSchedule` records of the job's schedule since `since` (at most 90 days
/// back: CloudTrail's event history), oldest first.
pub async fn updates(
    cloudtrail: &aws_sdk_cloudtrail::Client,
    environment: &str,
    job: &str,
    since: DateTime<Utc>,
) -> Result<Vec<ScheduleUpdate>, Error> {
    let since = since.max(time::now() - Duration::days(90));
    let name = schedule_name(environment, job);
    let mut out: Vec<_> =
        crate::platform::aws::cloudtrail_events(cloudtrail, "UpdateSchedule", since)
            .await?
            .iter()
            .filter_map(|v| schedule_update(v, &name))
            .collect();
    // CloudTrail lists the newest first; within one second that order is the only order.
    out.reverse();
    out.sort_by_key(|u| u.event_time);
    Ok(out)
}

/// Where to start looking for the `UpdateSchedule` behind a disabled schedule whose earliest
/// unaccounted occurrence is `earliest`: a little before the pause it claims, or a day before.
pub fn updates_since(live: &Live, earliest: DateTime<Utc>) -> DateTime<Utc> {
    let claimed = live
        .pause
        .as_ref()
        .and_then(|p| time::parse("at", &p.at).ok());
    claimed
        .unwrap_or(earliest - Duration::days(1))
        .min(earliest)
        - Duration::minutes(AT_TOLERANCE_MINUTES)
}

/// The missed-run check's reading of a disabled schedule for one occurrence, kept on the
/// occurrence: the pause claimed, what CloudTrail says, and why it does not count (if not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PauseCheck {
    /// The pause the schedule's description records (`None`: disabled with none recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed: Option<Pause>,
    /// What bears the pause out: `cloudtrail:<eventId>` or `jobs-file` (`None`: nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corroborated_by: Option<String>,
    /// Who CloudTrail says last updated the schedule (ARN), and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_at: Option<String>,
    /// Why the pause does not count for this occurrence (then it is missed and alerted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding: Option<String>,
}

impl PauseCheck {
    /// The occurrence is paused (recorded `PAUSED`, not alerted).
    pub fn counts(&self) -> bool {
        self.finding.is_none() && self.corroborated_by.is_some()
    }

    /// Not borne out *yet*: the pause it claims is younger than [`CLOUDTRAIL_LAG_MINUTES`]
    /// at `now` (CloudTrail may not list its `UpdateSchedule` yet) and the occurrence younger
    /// than [`DEFER_OCCURRENCES_MINUTES`]: leave it for a later check rather than claim it
    /// `MISSED` for good.
    pub fn awaits_cloudtrail(&self, scheduled: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        let young =
            |t: DateTime<Utc>, minutes: i64| t <= now && now - t < Duration::minutes(minutes);
        !self.counts()
            && young(scheduled, DEFER_OCCURRENCES_MINUTES)
            && self
                .claimed
                .as_ref()
                .and_then(|p| time::parse("at", &p.at).ok())
                .is_some_and(|at| young(at, CLOUDTRAIL_LAG_MINUTES))
    }

    /// One line for the alert.
    pub fn summary(&self) -> String {
        let claimed = self
            .claimed
            .as_ref()
            .map(|p| format!("paused by {} at {}: {}", p.by, p.at, p.note));
        let last = match (&self.last_update_by, &self.last_update_at) {
            (Some(by), Some(at)) => format!("UpdateSchedule by {by} at {at}"),
            _ => "no UpdateSchedule in CloudTrail".into(),
        };
        match (&self.finding, claimed) {
            (None, Some(c)) => format!(
                "{c} ({}; {last})",
                self.corroborated_by.as_deref().unwrap_or_default()
            ),
            (Some(f), Some(c)) => format!("schedule DISABLED, its description claims \"{c}\": {f}"),
            (f, None) => format!(
                "schedule DISABLED with no pause recorded ({last}){}",
                f.as_deref().map(|f| format!(": {f}")).unwrap_or_default()
            ),
        }
    }
}

/// Pure: whether the pause a disabled schedule claims holds for `job`'s occurrence at
/// `scheduled`, given CloudTrail's `UpdateSchedule` records of it (oldest first). It holds when
/// the deployed jobs file records that very pause, or when the schedule's last update wrote it
/// (`DISABLED`, that pause in its description), called by the person it names (the people map;
/// or the ARN it names), within [`AT_TOLERANCE_MINUTES`] of its `at`; and, either way, it was
/// in force before the occurrence was due (a pause cannot excuse a run missed before it).
pub fn verify(
    job: &crate::jobs::Job,
    live: &Live,
    updates: &[ScheduleUpdate],
    people: &People,
    scheduled: DateTime<Utc>,
) -> PauseCheck {
    let last = updates.last();
    let mut out = PauseCheck {
        claimed: live.pause.clone(),
        corroborated_by: None,
        last_update_by: last.map(|u| u.caller.clone()),
        last_update_at: last.map(|u| time::rfc3339(u.event_time)),
        finding: None,
    };
    let finding = match &live.pause {
        None => Some("a pause is recorded only by `batchless jobs pause` or the jobs file".into()),
        Some(p) => corroboration(job, p, last, people, scheduled).map_or_else(Some, |by| {
            out.corroborated_by = Some(by);
            None
        }),
    };
    out.finding = finding;
    out
}

/// What bears `p` out for the occurrence at `scheduled`, or why nothing does.
fn corroboration(
    job: &crate::jobs::Job,
    p: &Pause,
    last: Option<&ScheduleUpdate>,
    people: &People,
    scheduled: DateTime<Utc>,
) -> Result<String, String> {
    let at =
        time::parse("at", &p.at).map_err(|_| format!("its time {:?} is not RFC 3339", p.at))?;
    let in_force = |since: DateTime<Utc>| match since <= scheduled {
        true => Ok(()),
        false => Err(format!(
            "paused at {}, after this occurrence was due",
            time::rfc3339(since)
        )),
    };
    if job.paused.as_ref() == Some(p) {
        in_force(at)?;
        return Ok("jobs-file".into());
    }
    let Some(u) = last else {
        return Err("CloudTrail has no UpdateSchedule of the schedule that wrote it".into());
    };
    let wrote_it = !u.enabled && parse_description(&u.description).1.as_ref() == Some(p);
    if !wrote_it {
        return Err(format!(
            "the schedule's last UpdateSchedule (CloudTrail {}, {} at {}) did not write it",
            u.event_id,
            u.caller,
            time::rfc3339(u.event_time)
        ));
    }
    let person = people.by_principal(&u.caller).map(|x| x.id.as_str());
    if person != Some(p.by.as_str()) && u.caller != p.by {
        return Err(format!(
            "it names {}, but CloudTrail {} says {} ({}) wrote it",
            p.by,
            u.event_id,
            u.caller,
            person.unwrap_or("nobody in the people map")
        ));
    }
    if (u.event_time - at).num_minutes().abs() > AT_TOLERANCE_MINUTES {
        return Err(format!(
            "it says {}, but CloudTrail {} wrote it at {}",
            p.at,
            u.event_id,
            time::rfc3339(u.event_time)
        ));
    }
    in_force(u.event_time)?;
    Ok(format!("cloudtrail:{}", u.event_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput;
    use aws_sdk_scheduler::operation::update_schedule::UpdateScheduleOutput;
    use aws_sdk_scheduler::types::{
        FlexibleTimeWindow, FlexibleTimeWindowMode, RetryPolicy, Target,
    };
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn pause() -> Pause {
        Pause {
            by: "alice".into(),
            at: "2026-12-01T19:00:00Z".into(),
            note: "vendor API down: INC-42".into(),
        }
    }

    #[test]
    fn the_description_carries_the_pause_and_reads_back() {
        let d = description("report: Nightly report.", Some(&pause()));
        assert_eq!(
            d,
            "report: Nightly report. [paused by alice at 2026-12-01T19:00:00Z: vendor API down: INC-42]"
        );
        assert_eq!(
            parse_description(&d),
            ("report: Nightly report.".into(), Some(pause()))
        );
        assert_eq!(
            parse_description("report: Nightly [x]."),
            ("report: Nightly [x].".into(), None)
        );
        let r = resumed_description("report: Nightly report.", &pause());
        assert_eq!(
            parse_description(&r),
            ("report: Nightly report.".into(), None)
        );
        assert_eq!(parse_resumed(&r), Some(pause()));
        assert_eq!(parse_resumed(&d), None);
        assert!(pause().check().is_ok());
        for bad in [
            Pause {
                note: String::new(),
                ..pause()
            },
            Pause {
                note: "a\nb".into(),
                ..pause()
            },
            Pause {
                note: "x".repeat(201),
                ..pause()
            },
            Pause {
                at: "yesterday".into(),
                ..pause()
            },
            Pause {
                by: "a] [x".into(),
                ..pause()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    fn stored() -> GetScheduleOutput {
        GetScheduleOutput::builder()
            .name("batchless-staging-job-report")
            .group_name("default")
            .description("report: Nightly report.")
            .schedule_expression("cron(0 3 * * ? *)")
            .schedule_expression_timezone("Asia/Tokyo")
            .state(ScheduleState::Enabled)
            .flexible_time_window(
                FlexibleTimeWindow::builder()
                    .mode(FlexibleTimeWindowMode::Off)
                    .build()
                    .unwrap(),
            )
            .target(
                Target::builder()
                    .arn("arn:aws:states:us-east-1:123456789012:stateMachine:sj")
                    .role_arn("arn:aws:iam::123456789012:role/r")
                    .input("{\"job\": \"report\"}")
                    .retry_policy(
                        RetryPolicy::builder()
                            .maximum_event_age_in_seconds(1800)
                            .maximum_retry_attempts(185)
                            .build(),
                    )
                    .build()
                    .unwrap(),
            )
            .build()
    }

    /// UpdateSchedule replaces the whole schedule: everything GetSchedule returned is written
    /// back, only State and the pause in Description change.
    #[tokio::test]
    async fn pausing_writes_the_schedule_back_with_only_its_state_changed() {
        let get = mock!(aws_sdk_scheduler::Client::get_schedule)
            .match_requests(|r| r.name() == Some("batchless-staging-job-report"))
            .then_output(stored);
        let update = mock!(aws_sdk_scheduler::Client::update_schedule)
            .match_requests(|r| {
                let t = r.target().unwrap();
                r.name() == Some("batchless-staging-job-report")
                    && r.state() == Some(&ScheduleState::Disabled)
                    && r.schedule_expression() == Some("cron(0 3 * * ? *)")
                    && r.schedule_expression_timezone() == Some("Asia/Tokyo")
                    && r.group_name() == Some("default")
                    && r.flexible_time_window().map(|f| f.mode())
                        == Some(&FlexibleTimeWindowMode::Off)
                    && t.input() == Some("{\"job\": \"report\"}")
                    && t.retry_policy().and_then(|p| p.maximum_event_age_in_seconds()) == Some(1800)
                    && r.description()
                        == Some("report: Nightly report. [paused by alice at 2026-12-01T19:00:00Z: vendor API down: INC-42]")
            })
            .then_output(|| UpdateScheduleOutput::builder().schedule_arn("arn").build().unwrap());
        let client = mock_client!(aws_sdk_scheduler, RuleMode::MatchAny, [&get, &update]);
        let was = set_state(&client, "staging", "report", &Change::Pause(pause()))
            .await
            .unwrap();
        assert!(was.enabled && was.pause.is_none());
        assert_eq!((get.num_calls(), update.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn the_live_state_names_the_pause() {
        let get = mock!(aws_sdk_scheduler::Client::get_schedule).then_output(|| {
            GetScheduleOutput::builder()
                .state(ScheduleState::Disabled)
                .description(description("report: x", Some(&pause())))
                .build()
        });
        let client = mock_client!(aws_sdk_scheduler, [&get]);
        let l = live(&client, "staging", "report").await.unwrap();
        assert!(!l.enabled);
        assert_eq!(l.pause, Some(pause()));
        let jobs = crate::jobs::JobsFile::embedded();
        assert!(l.is_paused(jobs.get("nightly-billing-report").unwrap()));
        assert!(!l.is_paused(jobs.get("weekly-digest").unwrap()));
    }
}
