//! The template's Scheduler schedules, generated from the jobs file. `batchless jobs generate`
//! rewrites the block between the markers in `infra/template.yaml`; a unit test (and
//! `batchless jobs generate --check`) fails while the two disagree.

use batchless_core::jobs::{pause, Job, JobsFile};

pub const BEGIN: &str =
    "  # ---- generated from infra/jobs.yaml by `batchless jobs generate`: do not edit ----";
pub const END: &str = "  # ---- end of generated schedules ----";

pub fn logical_id(job: &str) -> String {
    let mut id = String::from("JobSchedule");
    for part in job.split('-') {
        let mut c = part.chars();
        if let Some(f) = c.next() {
            id.extend(f.to_uppercase());
            id.push_str(c.as_str());
        }
    }
    id
}

pub use batchless_core::jobs::pause::schedule_name;

/// The target input, with Scheduler's context attributes: the scheduled time (the occurrence
/// key) and the execution id (recorded for tracing only).
pub fn target_input(job: &str) -> String {
    format!(
        r#"{{"job": "{job}", "scheduledTime": "<aws.scheduler.scheduled-time>", "deliveryId": "<aws.scheduler.execution-id>"}}"#
    )
}

fn yaml_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn schedule(job: &Job) -> String {
    // A paused job (`paused:` in the jobs file, written by `batchless jobs pause`) is
    // generated DISABLED with the pause in its description: what `jobs pause` set on AWS, so
    // the next deploy keeps it.
    let desc = pause::description(&pause::base_description(job), job.paused.as_ref());
    format!(
        "  {id}:
    Type: AWS::Scheduler::Schedule
    Properties:
      Name: !Sub batchless-${{EnvironmentName}}-job-{name}
      Description: {desc}
      ScheduleExpression: {expr}
      ScheduleExpressionTimezone: {tz}
      State: {state}
      FlexibleTimeWindow:
        Mode: \"OFF\"
      Target:
        Arn: !Ref ScheduledJobStateMachine
        RoleArn: !GetAtt JobSchedulerRole.Arn
        Input: {input}
        RetryPolicy:
          MaximumEventAgeInSeconds: {age}
          MaximumRetryAttempts: 185
        DeadLetterConfig:
          Arn: !GetAtt EventsDeadLetterQueue.Arn
",
        id = logical_id(&job.name),
        name = job.name,
        desc = yaml_quote(&desc),
        expr = yaml_quote(&job.schedule),
        tz = job.timezone,
        state = if job.enabled && job.paused.is_none() {
            "ENABLED"
        } else {
            "DISABLED"
        },
        input = yaml_quote(&target_input(&job.name)),
        // A delivery later than the catch-up window would be skipped anyway.
        age = job.catch_up_seconds.max(60),
    )
}

/// The generated block, markers included.
pub fn generate(jobs: &JobsFile) -> String {
    let mut out = format!("{BEGIN}\n");
    for j in &jobs.jobs {
        out.push_str(&schedule(j));
        out.push('\n');
    }
    out.push_str(END);
    out
}

fn span(template: &str) -> Result<(usize, usize), String> {
    let start = template
        .find(BEGIN)
        .ok_or_else(|| format!("the template has no line {BEGIN:?}"))?;
    let end = template[start..]
        .find(END)
        .map(|i| start + i + END.len())
        .ok_or_else(|| format!("the template has no line {END:?} after the generated block"))?;
    Ok((start, end))
}

/// The template with its generated block rewritten from `jobs`.
pub fn rewrite(template: &str, jobs: &JobsFile) -> Result<String, String> {
    let (start, end) = span(template)?;
    Ok(format!(
        "{}{}{}",
        &template[..start],
        generate(jobs),
        &template[end..]
    ))
}

/// Ok when the template's generated block is what `jobs` generates.
pub fn check(template: &str, jobs: &JobsFile) -> Result<(), String> {
    let (start, end) = span(template)?;
    if template[start..end] == generate(jobs) {
        Ok(())
    } else {
        Err("infra/template.yaml's schedules disagree with infra/jobs.yaml: run `batchless jobs generate`".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_agrees_with_the_jobs_file() {
        let template = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../infra/template.yaml"
        ));
        if let Err(e) = check(template, &JobsFile::embedded()) {
            panic!("{e}");
        }
    }

    #[test]
    fn ids_names_and_inputs() {
        assert_eq!(
            logical_id("nightly-billing-report"),
            "JobScheduleNightlyBillingReport"
        );
        assert!(
            schedule_name(
                "production",
                &"x".repeat(batchless_core::jobs::config::NAME_MAX)
            )
            .len()
                <= 64
        );
        let v: serde_json::Value = serde_json::from_str(&target_input("a")).unwrap();
        assert_eq!(v["scheduledTime"], "<aws.scheduler.scheduled-time>");
    }

    #[test]
    fn rewrite_replaces_only_the_block() {
        let t = format!("head\n{BEGIN}\nold\n{END}\ntail\n");
        let out = rewrite(&t, &JobsFile::embedded()).unwrap();
        assert!(out.starts_with("head\n") && out.ends_with("\ntail\n"));
        assert!(!out.contains("old"));
        check(&out, &JobsFile::embedded()).unwrap();
        assert!(check(&t, &JobsFile::embedded()).is_err());
    }
}
