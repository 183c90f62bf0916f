//! Who is calling: the caller's AWS identity (STS `GetCallerIdentity`) and the person behind it
//! in the people map.

use anyhow::{Context as _, Result};
use batchless_core::platform::aws::AwsResultExt;
use batchless_core::shared::people::People;

use crate::context::Aws;

/// The caller's identity (asked once per command).
pub struct Caller {
    pub account: String,
    pub arn: String,
}

pub async fn caller(aws: &Aws) -> Result<Caller> {
    let out = aws
        .sts()
        .get_caller_identity()
        .send()
        .await
        .aws("GetCallerIdentity")
        .context("who is calling (STS GetCallerIdentity)")?;
    Ok(Caller {
        account: out.account().unwrap_or_default().to_string(),
        arn: out.arn().unwrap_or_default().to_string(),
    })
}

/// The person id behind `arn`, or the ARN itself with a warning when nobody in the people map
/// has it.
pub fn requester(people: Result<&People, String>, arn: &str) -> (String, Option<String>) {
    match people {
        Ok(p) => match p.by_principal(arn) {
            Some(person) => (person.id.clone(), None),
            None => (
                arn.to_string(),
                Some(format!(
                    "{arn} is nobody in the people map ({}); starting as the ARN itself",
                    p.environment()
                )),
            ),
        },
        Err(e) => (
            arn.to_string(),
            Some(format!("people map unavailable ({e}); starting as {arn}")),
        ),
    }
}

/// [`requester`] for the caller's ARN (the people map of the environment).
pub fn requester_for(aws: &Aws, arn: &str) -> (String, Option<String>) {
    let people = People::load(&aws.environment).map_err(|e| e.to_string());
    requester(people.as_ref().map_err(Clone::clone), arn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requesters_come_from_the_people_map() {
        let people = People::parse(batchless_core::shared::people::EMBEDDED, "staging").unwrap();
        let (id, warning) = requester(Ok(&people), "arn:aws:iam::123456789012:user/bob");
        assert_eq!((id.as_str(), warning), ("bob", None));
        let stranger = "arn:aws:iam::123456789012:user/mallory";
        let (id, warning) = requester(Ok(&people), stranger);
        assert_eq!(id, stranger);
        assert!(warning.unwrap().contains("nobody in the people map"));
        let (id, warning) = requester(Err("no file".into()), stranger);
        assert_eq!(id, stranger);
        assert!(warning.unwrap().contains("no file"));
    }
}
