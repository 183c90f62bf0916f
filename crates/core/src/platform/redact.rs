//! The one redaction function. Everything that leaves the system (log tails to Slack or
//! CodePipeline, error messages, anything logged) passes through [`redact`].
//!
//! Defaults cover credentials in URLs, `KEY=value` pairs whose key names a secret, AWS access
//! keys, Slack tokens, bearer tokens, JWTs, private key blocks and e-mail addresses. More
//! patterns (e.g. the app's PII) come from `REDACT_PATTERNS`: a JSON array of regexes.
//!
//! The rules run on `regex-lite`, not `regex`: building the `regex` set took 4.4-7.5 ms inside
//! each function's first event (BENCHMARKS.md, start-up against the floor); regex-lite builds
//! it in well under a millisecond. Its `\b`, `\s` and `(?i)` are ASCII-only, which is all the
//! default rules name (keys, schemes, tokens); a configured pattern that needs Unicode classes
//! must spell them out.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex_lite::Regex;

pub const MASK: &str = "[REDACTED]";

pub struct Redactor {
    rules: Vec<(Regex, String)>,
}

fn default_rules() -> Vec<(&'static str, &'static str)> {
    vec![
        // -----BEGIN RSA PRIVATE KEY----- ... -----END RSA PRIVATE KEY-----
        (
            r"(?s)-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)",
            "[REDACTED PRIVATE KEY]",
        ),
        // scheme://user:password@host, scheme://:password@host (no user), a password with `/`
        // → scheme://user:[REDACTED]@host
        (
            r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@]*:)[^\s@]+@",
            "${1}[REDACTED]@",
        ),
        // SECRET_KEY_BASE=..., "password": "...", api_key: ..., DATABASE_URL=..., and Ruby's
        // inspect: {"SECRET_KEY_BASE"=>"..."}, {:password=>"x"}, password: "with spaces"
        (
            r#"(?i)\b([A-Z0-9_\-]*(?:SECRET|TOKEN|PASSWORD|PASSWD|PWD|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIALS?|DATABASE_URL|REDIS_URL|_DSN|SIGNING_KEY|SESSION_KEY)[A-Z0-9_\-]*["']?\s*(?:=>|[:=])\s*)(?:"[^"\n]*"|'[^'\n]*'|[^\s"',;}\]]+)"#,
            "${1}[REDACTED]",
        ),
        // Authorization: Basic dXNlcjpwYXNz
        (r"(?i)\b(basic\s+)[A-Za-z0-9+/]{8,}={0,2}", "${1}[REDACTED]"),
        // GitHub (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_) and Stripe-style (sk_live_, rk_test_) keys
        (
            r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})",
            "[REDACTED]",
        ),
        (
            r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}",
            "[REDACTED]",
        ),
        (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", "[REDACTED]"),
        (r"\bxox[abposr]-[A-Za-z0-9\-]+", "[REDACTED]"),
        (r"\bxapp-[A-Za-z0-9\-]+", "[REDACTED]"),
        (
            r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=\-]{8,}",
            "${1}[REDACTED]",
        ),
        (
            r"\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}",
            "[REDACTED]",
        ),
        (
            r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b",
            "[REDACTED EMAIL]",
        ),
    ]
}

impl Redactor {
    /// The default rules plus `extra` regexes (each replaced by `[REDACTED]`).
    ///
    /// The error stays `regex::Error` (a pattern regex-lite rejects is reported as
    /// `regex::Error::Syntax` with regex-lite's message), so callers are unchanged.
    pub fn new(extra: &[String]) -> Result<Self, regex::Error> {
        let compile =
            |pattern: &str| Regex::new(pattern).map_err(|e| regex::Error::Syntax(e.to_string()));
        let mut rules = Vec::new();
        for (pattern, replacement) in default_rules() {
            rules.push((compile(pattern)?, replacement.to_string()));
        }
        for pattern in extra {
            rules.push((compile(pattern)?, MASK.to_string()));
        }
        Ok(Redactor { rules })
    }

    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out: Cow<'a, str> = Cow::Borrowed(text);
        for (re, replacement) in &self.rules {
            if re.is_match(&out) {
                out = Cow::Owned(re.replace_all(&out, replacement.as_str()).into_owned());
            }
        }
        out
    }
}

fn global() -> &'static Redactor {
    static REDACTOR: OnceLock<Redactor> = OnceLock::new();
    REDACTOR.get_or_init(|| {
        let extra: Vec<String> = std::env::var("REDACT_PATTERNS")
            .ok()
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default();
        Redactor::new(&extra).unwrap_or_else(|e| {
            // A bad configured pattern must not disable redaction: fall back to the defaults.
            tracing::error!(error = %e, "REDACT_PATTERNS has an invalid regex; using defaults only");
            Redactor::new(&[]).expect("default redaction rules compile")
        })
    })
}

/// Redact `text` with the default rules and the configured ones.
pub fn redact(text: &str) -> Cow<'_, str> {
    global().redact(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        Redactor::new(&["\\bcust-[0-9]{6}\\b".to_string()])
            .unwrap()
            .redact(s)
            .into_owned()
    }

    #[test]
    fn url_credentials() {
        let out = r("Connecting to postgres://app:s3cr3t-pw@db.internal:5432/app_production");
        assert!(!out.contains("s3cr3t-pw"), "{out}");
        assert!(
            out.contains("postgres://app:[REDACTED]@db.internal"),
            "{out}"
        );
    }

    #[test]
    fn secret_assignments() {
        for line in [
            "DATABASE_URL=postgres://u:p@h/db",
            "SECRET_KEY_BASE=abcdef0123456789",
            "export API_KEY='abc123'",
            r#"{"password": "hunter22"}"#,
            "redis_url: redis://:pw@cache:6379/0",
            "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ] {
            let out = r(line);
            for secret in [
                "abcdef0123456789",
                "abc123",
                "hunter22",
                "wJalrXUtnFEMI",
                ":pw@",
                "u:p@",
            ] {
                assert!(!out.contains(secret), "{line} -> {out}");
            }
        }
    }

    #[test]
    fn tokens_and_keys() {
        let out = r(
            "key AKIAIOSFODNN7EXAMPLE token xoxb-123-456-abc Authorization: Bearer abc.def.ghi123",
        );
        assert!(!out.contains("AKIAIOSFODNN7EXAMPLE"));
        assert!(!out.contains("xoxb-123"));
        assert!(!out.contains("abc.def.ghi123"), "{out}");
        let pem = "x\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\ny";
        let out = r(pem);
        assert!(!out.contains("MIIEow"));
        assert!(out.starts_with("x\n") && out.ends_with("\ny"));
    }

    #[test]
    fn pii_and_configured_patterns() {
        let out = r("user alice@example.com updated cust-123456");
        assert!(!out.contains("alice@example.com"));
        assert!(!out.contains("cust-123456"));
    }

    #[test]
    fn harmless_text_is_untouched() {
        let text = "== 20261128 CreateWidgets: migrated (0.0123s) ==";
        assert!(matches!(r(text).as_str(), t if t == text));
        assert!(matches!(
            Redactor::new(&[]).unwrap().redact(text),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn ruby_inspect_output() {
        for (line, secret) in [
            (
                r#"{"SECRET_KEY_BASE"=>"f00dfeedbeef", "RAILS_ENV"=>"production"}"#,
                "f00dfeedbeef",
            ),
            (r#"{:password=>"x7-pass"}"#, "x7-pass"),
            (
                r#"#<User id: 1, password_digest: "$2a$12$abcdef">"#,
                "$2a$12$abcdef",
            ),
        ] {
            let out = r(line);
            assert!(!out.contains(secret), "{line} -> {out}");
        }
        assert!(r(r#"{"RAILS_ENV"=>"production"}"#).contains("production"));
    }

    #[test]
    fn url_password_without_user_or_with_a_slash() {
        for (line, secret) in [
            ("REDIS=redis://:s3cret@cache:6379/0", "s3cret"),
            ("postgres://app:pa/ss@db/app", "pa/ss"),
        ] {
            let out = r(line);
            assert!(!out.contains(secret), "{line} -> {out}");
            assert!(out.contains("[REDACTED]@"), "{out}");
        }
    }

    #[test]
    fn basic_auth_and_quoted_values_after_a_space() {
        let out = r("Authorization: Basic dXNlcjpodW50ZXIy");
        assert!(!out.contains("dXNlcjpodW50ZXIy"), "{out}");
        for (line, secret) in [
            (r#"PASSWORD = "correct horse battery""#, "horse"),
            ("api_key: 'two words'", "words"),
        ] {
            let out = r(line);
            assert!(!out.contains(secret), "{line} -> {out}");
        }
    }

    #[test]
    fn vendor_tokens() {
        for token in [
            "ghp_0123456789abcdefghijABCDEFGHIJ012345",
            "github_pat_11AAAAAAA0123456789_abcdefghij",
            "sk_live_0123456789abcdefXYZ",
            "rk_test_abcdefghij0123",
        ] {
            let out = r(&format!("token {token} used"));
            assert!(!out.contains(token), "{token} -> {out}");
        }
    }

    #[test]
    fn a_bad_configured_pattern_is_a_syntax_error() {
        let err = Redactor::new(&["(unclosed".to_string()])
            .err()
            .expect("rejected");
        assert!(matches!(err, regex::Error::Syntax(_)), "{err}");
    }

    #[test]
    fn non_ascii_text_around_secrets() {
        let out = r("café PASSWORD=hunter2 — naïve postgres://u:pw1@h/db");
        assert!(!out.contains("hunter2") && !out.contains("pw1"), "{out}");
        assert!(out.contains("café") && out.contains("naïve"), "{out}");
    }
}
