//! Signatures with an asymmetric KMS key (`ECC_NIST_P256`, `ECDSA_SHA_256`, raw messages):
//! the one way batchless makes evidence its own writers alone can produce — the audit chain's
//! checkpoints and the sweep's watermark (the audit signing key), approval decisions and
//! bastion approval evidence (the decision signing key). Whoever may `kms:Sign` with the key
//! (its key policy says who) can sign; anyone may verify.

use base64::Engine as _;

use crate::error::Error;
use crate::platform::aws::AwsResultExt;

/// The KMS algorithm of every signature.
const ALGORITHM: aws_sdk_kms::types::SigningAlgorithmSpec =
    aws_sdk_kms::types::SigningAlgorithmSpec::EcdsaSha256;

/// A KMS signing key and the client that signs and verifies with it.
#[derive(Debug, Clone)]
pub struct Signer {
    pub kms: aws_sdk_kms::Client,
    /// The key's alias or ARN.
    pub key: String,
}

impl Signer {
    /// The signature of `message` (base64): only a role the key policy lets sign gets one.
    pub async fn sign(&self, message: Vec<u8>) -> Result<String, Error> {
        let out = self
            .kms
            .sign()
            .key_id(&self.key)
            .message(aws_smithy_types::Blob::new(message))
            .message_type(aws_sdk_kms::types::MessageType::Raw)
            .signing_algorithm(ALGORITHM)
            .send()
            .await
            .aws("Sign")?;
        out.signature()
            .map(|b| base64::engine::general_purpose::STANDARD.encode(b.as_ref()))
            .ok_or_else(|| Error::Corrupt("KMS Sign returned no signature".into()))
    }

    /// Whether `seal` is this key's signature of exactly `message`. No seal, or one
    /// KMS rejects, is `false`; KMS being unavailable is an error (retried, never "forged").
    pub async fn valid(&self, message: Vec<u8>, seal: Option<&str>) -> Result<bool, Error> {
        let Some(sig) = seal
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .filter(|s| !s.is_empty())
        else {
            return Ok(false);
        };
        let res = self
            .kms
            .verify()
            .key_id(&self.key)
            .message(aws_smithy_types::Blob::new(message))
            .message_type(aws_sdk_kms::types::MessageType::Raw)
            .signing_algorithm(ALGORITHM)
            .signature(aws_smithy_types::Blob::new(sig))
            .send()
            .await
            .aws("Verify");
        match res {
            Ok(out) => Ok(out.signature_valid()),
            Err(e) if e.is_code("KMSInvalidSignatureException") => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
