//! Decision seals (issue 15): a decision (an approval of a data patch or a migration, or an
//! executive's approval evidence of a bastion session) counts only if the endpoint that
//! recorded it signed
//! it with the decision signing key (`DECISION_SIGNING_KEY`, an asymmetric KMS key whose
//! policy gives `kms:Sign` to the decision endpoints' roles alone and `kms:Verify` to the
//! account). A decision written into a table by anyone else, an administrator included, has
//! no seal that verifies: [`super::tally`] ignores it and the step that found it audits a
//! `DECISION_FORGED`. IAM on the tables is the first wall; the seal is what holds when IAM is
//! too broad.
//!
//! What is signed: `batchless-decision/1:` and the SHA-256 of a canonical JSON array of the
//! subject (environment and id) and every field of the decision but the seal, so a seal
//! cannot be moved to another subject or person or kept under an edited field.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use super::DecisionRecord;
use crate::error::Error;

/// What is signed for `d` on the subject `id` of `environment`.
pub fn message(environment: &str, id: &str, d: &DecisionRecord) -> Vec<u8> {
    let canonical = serde_json::json!([
        "batchless-decision/1",
        environment,
        id,
        d.by,
        d.by_name,
        d.decision.as_str(),
        d.via,
        d.at,
        d.identity,
        d.request_hash,
        d.comment,
    ]);
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    format!("batchless-decision/1:{}", hex::encode(digest)).into_bytes()
}

/// The decision signing key and the client that signs and verifies with it.
pub use crate::platform::signing::Signer as Sealer;

impl Sealer {
    /// The decision signing key, `DECISION_SIGNING_KEY`.
    pub fn from_env(sdk: &aws_types::SdkConfig) -> Result<Self, Error> {
        Ok(Sealer {
            kms: crate::platform::aws::kms(sdk),
            key: crate::platform::config::required("DECISION_SIGNING_KEY")?,
        })
    }

    /// The seal of decision `d` on subject `id` of `environment`.
    pub async fn seal(
        &self,
        environment: &str,
        id: &str,
        d: &DecisionRecord,
    ) -> Result<String, Error> {
        self.sign(message(environment, id, d)).await
    }

    /// Whether decision `d` carries a seal over exactly what it says.
    pub async fn verifies(
        &self,
        environment: &str,
        id: &str,
        d: &DecisionRecord,
    ) -> Result<bool, Error> {
        self.valid(message(environment, id, d), d.seal.as_deref())
            .await
    }

    /// Check every decision of a subject ([`Seals`]).
    pub async fn check(
        &self,
        environment: &str,
        id: &str,
        decisions: &BTreeMap<String, DecisionRecord>,
    ) -> Result<Seals, Error> {
        let mut sealed = BTreeSet::new();
        for (key, d) in decisions {
            if self.verifies(environment, id, d).await? {
                sealed.insert(key.clone());
            }
        }
        Ok(Seals(sealed))
    }
}

/// The decisions (by their key on the record) whose seal verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seals(BTreeSet<String>);

impl Seals {
    pub fn holds(&self, key: &str) -> bool {
        self.0.contains(key)
    }

    /// Every decision taken as sealed: only for tests of the rules that come after the seal.
    #[cfg(test)]
    pub fn all(decisions: &BTreeMap<String, DecisionRecord>) -> Self {
        Seals(decisions.keys().cloned().collect())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::shared::approval::tests::decision;
    use crate::shared::approval::Decision;
    use aws_sdk_kms::operation::sign::SignOutput;
    use aws_sdk_kms::operation::verify::{VerifyError, VerifyOutput};
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    /// A sealer whose KMS signs anything `sealed-by-test` and says every signature is `valid`.
    pub(crate) fn sealer(valid: bool) -> Sealer {
        let sign = mock!(aws_sdk_kms::Client::sign).then_output(|| {
            SignOutput::builder()
                .signature(aws_smithy_types::Blob::new(b"sealed-by-test".to_vec()))
                .build()
        });
        let verify = mock!(aws_sdk_kms::Client::verify)
            .then_output(move || VerifyOutput::builder().signature_valid(valid).build());
        // Created long before any test's time (an occurrence due earlier was claimed unsealed).
        let describe = mock!(aws_sdk_kms::Client::describe_key).then_output(|| {
            aws_sdk_kms::operation::describe_key::DescribeKeyOutput::builder()
                .key_metadata(
                    aws_sdk_kms::types::KeyMetadata::builder()
                        .key_id("test")
                        .creation_date(aws_smithy_types::DateTime::from_secs(1_735_689_600))
                        .build()
                        .expect("key id is set"),
                )
                .build()
        });
        Sealer {
            kms: mock_client!(aws_sdk_kms, RuleMode::MatchAny, [&sign, &verify, &describe]),
            key: "alias/batchless-test-decision-signing".into(),
        }
    }

    #[test]
    fn the_message_binds_the_subject_and_every_field() {
        let d = decision("bob", Decision::Approve, "h1");
        let base = message("staging", "p1", &d);
        assert!(base.starts_with(b"batchless-decision/1:"));
        assert_eq!(base.len(), "batchless-decision/1:".len() + 64);
        let mut edits: Vec<DecisionRecord> = Vec::new();
        for f in 0..7 {
            let mut e = d.clone();
            match f {
                0 => e.by = "alice".into(),
                1 => e.decision = Decision::Reject,
                2 => e.at = "2026-11-28T13:00:09Z".into(),
                3 => e.identity = "slack:U0ALICE01".into(),
                4 => e.request_hash = "h2".into(),
                5 => e.comment = Some("fine".into()),
                _ => e.via = super::super::Via::Cli,
            }
            edits.push(e);
        }
        for e in &edits {
            assert_ne!(message("staging", "p1", e), base, "{e:?}");
        }
        assert_ne!(message("production", "p1", &d), base);
        assert_ne!(message("staging", "p2", &d), base);
        // The seal itself is not signed (it is what is added).
        let sealed = DecisionRecord {
            seal: Some("x".into()),
            ..d.clone()
        };
        assert_eq!(message("staging", "p1", &sealed), base);
    }

    #[tokio::test]
    async fn a_decision_without_a_seal_or_with_one_kms_rejects_is_not_sealed() {
        let verify_ok = mock!(aws_sdk_kms::Client::verify)
            .match_requests(|r| r.signature().map(|s| s.as_ref()) == Some(b"good".as_slice()))
            .then_output(|| VerifyOutput::builder().signature_valid(true).build());
        let verify_bad = mock!(aws_sdk_kms::Client::verify).then_error(|| {
            VerifyError::KmsInvalidSignatureException(
                aws_sdk_kms::types::error::KmsInvalidSignatureException::builder()
                    .meta(
                        aws_sdk_kms::error::ErrorMetadata::builder()
                            .code("KMSInvalidSignatureException")
                            .build(),
                    )
                    .build(),
            )
        });
        let sign = mock!(aws_sdk_kms::Client::sign).then_output(|| {
            SignOutput::builder()
                .signature(aws_smithy_types::Blob::new(b"good".to_vec()))
                .build()
        });
        let kms = mock_client!(
            aws_sdk_kms,
            RuleMode::MatchAny,
            [&verify_ok, &verify_bad, &sign]
        );
        let sealer = Sealer {
            kms,
            key: "alias/k".into(),
        };
        let mut good = decision("bob", Decision::Approve, "h1");
        good.seal = Some(sealer.seal("staging", "p1", &good).await.unwrap());
        let mut forged = decision("carol", Decision::Approve, "h1");
        forged.seal = Some(base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            b"forged",
        ));
        let unsealed = decision("erin", Decision::Approve, "h1");
        let mut garbage = decision("frank", Decision::Approve, "h1");
        garbage.seal = Some("%%% not base64".into());
        let decisions = BTreeMap::from([
            ("bob".to_string(), good),
            ("carol".to_string(), forged),
            ("erin".to_string(), unsealed),
            ("frank".to_string(), garbage),
        ]);
        let seals = sealer.check("staging", "p1", &decisions).await.unwrap();
        assert!(seals.holds("bob"));
        for other in ["carol", "erin", "frank"] {
            assert!(!seals.holds(other), "{other}");
        }
    }
}
