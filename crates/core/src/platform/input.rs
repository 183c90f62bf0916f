//! Strict input parsing: unknown fields are rejected and every error names the field.

use serde::de::DeserializeOwned;
use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid input: {message}")]
pub struct InputError {
    pub message: String,
}

impl InputError {
    pub fn new(message: impl Into<String>) -> Self {
        InputError {
            message: message.into(),
        }
    }
    pub fn field(field: &str, problem: impl std::fmt::Display) -> Self {
        InputError::new(format!("field `{field}`: {problem}"))
    }
}

/// Deserialize `value` into `T` (whose serde attributes should include
/// `deny_unknown_fields`), turning serde's message into an [`InputError`] that names the
/// offending field and its path.
pub fn parse_strict<T: DeserializeOwned>(value: Value) -> Result<T, InputError> {
    // serde_json says "unknown field `x`, expected one of ..." / "missing field `y`".
    serde_json::from_value(value).map_err(|e| InputError::new(e.to_string()))
}

/// A full 40-character lowercase hex commit SHA.
pub fn commit_sha(field: &str, s: &str) -> Result<String, InputError> {
    if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(InputError::field(
            field,
            format!(
                "must be a full 40-character hex commit SHA, got {:?}",
                truncate(s, 60)
            ),
        ))
    }
}

/// Variable-name prefixes no caller may set: AWS and the runners' own; interpreters and loaders
/// (Ruby, gems, the dynamic linker, Node, Python, Perl, Java); Bundler; git (its
/// `GIT_SSH_COMMAND`/`GIT_CONFIG_*` run code).
pub const RESERVED_PREFIXES: [&str; 15] = [
    "AWS_",
    "CODEBUILD_",
    "ECS_",
    "RUBY",
    "GEM_",
    "LD_",
    "DYLD_",
    "NODE_",
    "PYTHON",
    "PERL",
    "BUNDLE_",
    "BUNDLER_",
    "GIT_",
    "BASH_",
    "JAVA_",
];

/// Variable names no caller may set: the app's secrets and environment (the Rails env, its master
/// key, the production-database safety check), rake's and the shell's code hooks, the search
/// path, proxies and TLS roots (which redirect or intercept traffic), OpenSSL's config (loads
/// engines).
pub const RESERVED_NAMES: [&str; 30] = [
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY_BASE",
    "RAILS_ENV",
    "RACK_ENV",
    "RAILS_MASTER_KEY",
    "RAILS_GROUPS",
    "DISABLE_DATABASE_ENVIRONMENT_CHECK",
    "RAKEOPT",
    "RAKELIB",
    "RUBYOPT",
    "RUBYLIB",
    "BASH_ENV",
    "ENV",
    "SHELL",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "IFS",
    "CDPATH",
    "PATH",
    "HOME",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "OPENSSL_CONF",
];

/// An environment variable name a caller may override (migration `environmentOverrides`, a
/// manual job run's or the jobs file's `environment`): `[A-Z_][A-Z0-9_]*`, at most 128 chars,
/// and not on the one denylist ([`RESERVED_PREFIXES`], [`RESERVED_NAMES`]).
pub fn env_override_name(field: &str, name: &str) -> Result<(), InputError> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_uppercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        return Err(InputError::field(
            field,
            format!("{name:?} is not a valid variable name ([A-Z_][A-Z0-9_]*)"),
        ));
    }
    // `_JAVA_OPTIONS`, `JDK_JAVA_OPTIONS`: the JVM reads any `*JAVA_OPTIONS`.
    if RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
        || RESERVED_NAMES.contains(&name)
        || name.ends_with("JAVA_OPTIONS")
    {
        return Err(InputError::field(
            field,
            format!("{name} is reserved and cannot be overridden (see README, \"Overrides\")"),
        ));
    }
    Ok(())
}

/// Text bounded in length and free of control characters.
pub fn bounded_text(field: &str, s: &str, max: usize) -> Result<(), InputError> {
    if s.chars().count() > max {
        return Err(InputError::field(
            field,
            format!("longer than {max} characters"),
        ));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(InputError::field(field, "contains control characters"));
    }
    Ok(())
}

/// Characters that change how text reads without being seen (Trojan Source, CVE-2021-42574):
/// bidi embeddings, overrides, isolates and marks; zero-width spaces and joiners; the word
/// joiner and invisible operators; the soft hyphen, the BOM, Hangul fillers, Mongolian
/// variation selectors, interlinear annotation marks, musical formatting and tag characters.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{034f}'
            | '\u{061c}'
            | '\u{115f}'
            | '\u{1160}'
            | '\u{17b4}'
            | '\u{17b5}'
            | '\u{180b}'..='\u{180f}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{3164}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0000}'..='\u{e0fff}'
    )
}

/// [`bounded_text`] that a person typed and another will read or run (a patch's arguments and
/// reason, overrides): also free of invisible and bidi-control characters ([`is_invisible`]),
/// so what the approver reads is what runs.
pub fn visible_text(field: &str, s: &str, max: usize) -> Result<(), InputError> {
    bounded_text(field, s, max)?;
    match s.char_indices().find(|(_, c)| is_invisible(*c)) {
        None => Ok(()),
        Some((i, c)) => Err(InputError::field(
            field,
            format!(
                "contains the invisible or bidi-control character U+{:04X} at byte {i}",
                c as u32
            ),
        )),
    }
}

/// An identifier: 1..=max chars of `[A-Za-z0-9._:/@+-]`.
pub fn identifier(field: &str, s: &str, max: usize) -> Result<(), InputError> {
    accept(
        made_of(s, max, b"._:/@+-"),
        field,
        s,
        &format!("must be 1-{max} characters of [A-Za-z0-9._:/@+-]"),
    )
}

/// Whether `s` is 1..=`max` bytes, each an ASCII letter or digit or one of `extra`.
pub fn made_of(s: &str, max: usize, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

/// `Ok` when `ok`; else `field`'s error: the value (cut to 60 characters), then `what` it
/// should have been.
pub fn accept(ok: bool, field: &str, s: &str, what: &str) -> Result<(), InputError> {
    if ok {
        Ok(())
    } else {
        Err(InputError::field(
            field,
            format!("{:?} {what}", truncate(s, 60)),
        ))
    }
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Sample {
        commit: String,
        #[serde(default)]
        started_by: Option<String>,
    }

    #[test]
    fn unknown_field_is_named() {
        let err = parse_strict::<Sample>(json!({"commit": "a", "comit": "b"})).unwrap_err();
        assert!(err.message.contains("unknown field `comit`"), "{err}");
    }

    #[test]
    fn missing_field_is_named() {
        let err = parse_strict::<Sample>(json!({"startedBy": "x"})).unwrap_err();
        assert!(err.message.contains("missing field `commit`"), "{err}");
    }

    #[test]
    fn wrong_type_is_reported() {
        let err = parse_strict::<Sample>(json!({"commit": 5})).unwrap_err();
        assert!(err.message.contains("invalid type"), "{err}");
    }

    #[test]
    fn commit_sha_rules() {
        let sha = "0123456789abcdef0123456789ABCDEF01234567";
        assert_eq!(commit_sha("commit", sha).unwrap(), sha.to_ascii_lowercase());
        assert!(commit_sha("commit", "0123456").is_err());
        assert!(commit_sha("commit", &"g".repeat(40)).is_err());
        assert!(commit_sha("commit", "main")
            .unwrap_err()
            .message
            .contains("`commit`"));
    }

    #[test]
    fn env_override_rules() {
        assert!(env_override_name("env", "RAILS_LOG_LEVEL").is_ok());
        assert!(env_override_name("env", "rails").is_err());
        assert!(env_override_name("env", "1ABC").is_err());
        assert!(env_override_name("env", "A B").is_err());
        assert!(env_override_name("env", "AWS_SECRET_ACCESS_KEY").is_err());
        assert!(env_override_name("env", "DATABASE_URL").is_err());
    }

    #[test]
    fn identifiers_and_text() {
        assert!(identifier("x", "app-deploy/1", 64).is_ok());
        assert!(identifier("x", "rm -rf", 64).is_err());
        assert!(identifier("x", "", 64).is_err());
        assert!(bounded_text("x", "hello\nworld", 20).is_ok());
        assert!(bounded_text("x", "\u{1b}[31m", 20).is_err());
        assert!(bounded_text("x", &"a".repeat(21), 20).is_err());
        // What the approver reads is what runs: no bidi overrides, no zero-width characters.
        assert!(visible_text("x", "注文の合計を再計算 (OPS-42) ❤", 60).is_ok());
        for hidden in [
            "rm\u{202e}fr- ",
            "a\u{2066}b\u{2069}",
            "user\u{200b}@example.com",
            "\u{feff}x",
            "x\u{e0041}",
            "a\u{00ad}b",
        ] {
            let err = visible_text("reason", hidden, 60).unwrap_err();
            assert!(
                err.to_string()
                    .contains("invisible or bidi-control character U+"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_denylist_refuses_interpreter_loader_bundler_shell_and_rails_variables() {
        for name in [
            "RUBYOPT",
            "RUBYLIB",
            "RUBY_GC_HEAP_INIT_SLOTS",
            "RAKEOPT",
            "BUNDLE_GEMFILE",
            "BUNDLER_VERSION",
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "DYLD_INSERT_LIBRARIES",
            "RAILS_ENV",
            "RACK_ENV",
            "DISABLE_DATABASE_ENVIRONMENT_CHECK",
            "RAILS_MASTER_KEY",
            "NODE_OPTIONS",
            "PYTHONSTARTUP",
            "PERL5OPT",
            "BASH_ENV",
            "ENV",
            "PS4",
            "SHELLOPTS",
            "GIT_SSH_COMMAND",
            "GEM_HOME",
            "JAVA_TOOL_OPTIONS",
            "_JAVA_OPTIONS",
            "HTTPS_PROXY",
            "SSL_CERT_FILE",
            "OPENSSL_CONF",
            "PATH",
            "AWS_REGION",
            "CODEBUILD_SRC_DIR",
            "ECS_CONTAINER_METADATA_URI",
            "DATABASE_URL",
            "REDIS_URL",
            "SECRET_KEY_BASE",
        ] {
            let err = env_override_name("environment", name).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn ordinary_variables_pass_the_denylist() {
        for name in [
            "RAILS_LOG_LEVEL",
            "PURGE_BATCH_SIZE",
            "FEATURE_X",
            "_PRIVATE",
            "TZ",
        ] {
            env_override_name("environment", name).unwrap();
        }
    }
}
