//! Dangerous-command matching. Patterns are configuration (name, regex, severity); the text is
//! cleaned first — terminal noise (ANSI colour, cursor movement and line-editing sequences,
//! backspaces, carriage-return redraws), console/shell prompts and trailing comments — and all
//! patterns are matched in one pass per line with a [`RegexSet`].

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::{Regex, RegexSet};
use serde::{Deserialize, Serialize};

use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternSpec {
    pub name: String,
    pub regex: String,
    pub severity: Severity,
}

/// One cleaned command line that matched at least one pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hit {
    /// The cleaned command (not yet redacted).
    pub command: String,
    /// Names of the patterns that matched, in configuration order.
    pub patterns: Vec<String>,
    /// The highest severity among them.
    pub severity: Severity,
}

#[derive(Debug)]
pub struct Scanner {
    set: RegexSet,
    specs: Vec<PatternSpec>,
}

impl Scanner {
    pub fn new(specs: &[PatternSpec]) -> Result<Self, Error> {
        for s in specs {
            Regex::new(&s.regex).map_err(|e| Error::config(format!("pattern {}: {e}", s.name)))?;
        }
        let set = RegexSet::new(specs.iter().map(|s| &s.regex))
            .map_err(|e| Error::config(format!("patterns: {e}")))?;
        Ok(Scanner {
            set,
            specs: specs.to_vec(),
        })
    }

    pub fn specs(&self) -> &[PatternSpec] {
        &self.specs
    }

    /// Match one already-cleaned command line.
    pub fn match_command(&self, command: &str) -> Option<Hit> {
        let matched = self.set.matches(command);
        if !matched.matched_any() {
            return None;
        }
        let specs: Vec<&PatternSpec> = matched.iter().map(|i| &self.specs[i]).collect();
        Some(Hit {
            command: command.to_string(),
            patterns: specs.iter().map(|s| s.name.clone()).collect(),
            severity: specs
                .iter()
                .map(|s| s.severity)
                .max()
                .unwrap_or(Severity::Low),
        })
    }

    /// Scan a chunk of raw text (a transcript chunk or a hook command, possibly several lines):
    /// every physical line (and every carriage-return redraw of it) is cleaned and matched.
    /// The same cleaned command is reported once per chunk.
    pub fn scan(&self, raw: &str) -> Vec<Hit> {
        let mut hits: Vec<Hit> = Vec::new();
        for line in clean_lines(raw) {
            if let Some(hit) = self.match_command(&line) {
                if !hits.iter().any(|h| h.command == hit.command) {
                    hits.push(hit);
                }
            }
        }
        hits
    }
}

/// Remove escape sequences and apply backspaces; other control characters are dropped.
/// Carriage returns are kept (the caller splits on them).
pub fn strip_noise(raw: &str) -> Cow<'_, str> {
    if !raw
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.peek().copied() {
                // CSI: ESC [ params intermediates final (colour, cursor movement, erase, ...)
                Some('[') => {
                    chars.next();
                    while let Some(&n) = chars.peek() {
                        chars.next();
                        if ('\x40'..='\x7e').contains(&n) {
                            break;
                        }
                    }
                }
                // OSC / DCS / PM / APC strings: up to BEL or ST (ESC \)
                Some(']') | Some('P') | Some('^') | Some('_') => {
                    chars.next();
                    while let Some(n) = chars.next() {
                        if n == '\x07' {
                            break;
                        }
                        if n == '\x1b' && chars.peek() == Some(&'\\') {
                            chars.next();
                            break;
                        }
                    }
                }
                // Charset selection: ESC ( B etc.
                Some('(') | Some(')') | Some('*') | Some('+') => {
                    chars.next();
                    chars.next();
                }
                // Any other two-character sequence (ESC 7, ESC 8, ESC =, ESC >, ESC M, ...)
                Some(_) => {
                    chars.next();
                }
                None => {}
            },
            '\x08' | '\x7f' => {
                out.pop();
            }
            '\n' | '\t' | '\r' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn prompt_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(concat!(
            r"^\s*(?:",
            r"\[\d+\]\s*pry\([^)]*\)(?::\d+)*[>*]\s?", // [1] pry(main)>
            r"|irb\([^)]*\)(?::\d+)*[>*'\x22]\s?",     // irb(main):001:0>
            r"|[\w.-]+\([\w.-]+\)(?::\d+)*[>*]\s?",    // myapp(prod)>  app(production)*
            r"|[\w.-]+@[\w.-]+:[^\s$#]*[$#]\s?",       // root@ip-10-0-0-1:/app#
            r"|(?:bash|sh|zsh|dash|ash)-[\d.]+[$#]\s?", // bash-5.1#
            r"|/[^\s]*\s[$#]\s",                       // /app #   (busybox)
            r"|>>\s?",                                 // >>  (simple prompt)
            r"|\$\s",                                  // $
            r")"
        ))
        .expect("prompt regex")
    })
}

/// Remove leading console/shell prompts (repeatedly: a redraw can leave two).
pub fn strip_prompt(line: &str) -> &str {
    let mut rest = line;
    for _ in 0..3 {
        match prompt_re().find(rest) {
            Some(m) if m.end() > 0 => rest = &rest[m.end()..],
            _ => break,
        }
    }
    rest
}

/// Remove a trailing comment: a `#` outside quotes at the start of the line or after
/// whitespace or `;` (so `"#{x}"` interpolation and `a#b` stay).
pub fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut prev: Option<char> = None;
    for (i, c) in line.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
        } else if c == '"' || c == '\'' || c == '`' {
            quote = Some(c);
        } else if c == '#' && prev.is_none_or(|p| p.is_whitespace() || p == ';') {
            return &line[..i];
        }
        prev = Some(c);
    }
    line
}

/// Cleaned command lines of a raw chunk: noise stripped, split on newlines and
/// carriage-return redraws, prompts and comments removed, blank lines dropped.
pub fn clean_lines(raw: &str) -> Vec<String> {
    let text = strip_noise(raw);
    text.split(['\n', '\r'])
        .map(|l| strip_comment(strip_prompt(l)).trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bastion::{WatchConfig, EMBEDDED};

    fn scanner() -> Scanner {
        Scanner::new(&WatchConfig::parse(EMBEDDED).unwrap().patterns).unwrap()
    }

    fn names(s: &Scanner, line: &str) -> Vec<String> {
        s.scan(line).into_iter().flat_map(|h| h.patterns).collect()
    }

    #[test]
    fn the_defaults_catch_what_the_issue_lists() {
        let s = scanner();
        let cases = [
            ("User.where(active: false).destroy_all", "destroy_all"),
            ("Order.where(state: 'stale').delete_all", "delete_all"),
            ("Order.delete_all", "delete_all"),
            ("User.update_all(admin: true)", "update_all"),
            ("u.update_column(:admin, true)", "update_columns"),
            ("u.update_columns(admin: true)", "update_columns"),
            ("User.find(1).destroy", "destroy_or_delete"),
            ("User.find(1).delete", "destroy_or_delete"),
            (
                "ActiveRecord::Base.connection.execute(\"DELETE FROM users\")",
                "raw_sql_write",
            ),
            (
                "ActiveRecord::Base.connection.execute('drop table users')",
                "raw_sql_write",
            ),
            (
                "ApplicationRecord.connection.execute(\"TRUNCATE orders\")",
                "raw_sql_write",
            ),
            (
                "ActiveRecord::Base.connection.execute(\"ALTER TABLE users ADD x int\")",
                "raw_sql_write",
            ),
            ("rm -rf /app/tmp", "rm_rf"),
            ("rm -fr /", "rm_rf"),
            ("rm -Rf storage", "rm_rf"),
            ("rm -v -rf storage", "rm_rf"),
            ("Redis.new.flushall", "redis_flush"),
            ("redis-cli FLUSHDB", "redis_flush"),
            ("Sidekiq::Queue.new(\"default\").clear", "sidekiq_clear"),
            ("Sidekiq::RetrySet.new.clear", "sidekiq_clear"),
            ("Sidekiq::Queue.all.each(&:clear)", "sidekiq_clear"),
            ("bin/rails db:drop", "db_task"),
            ("DELETE FROM users WHERE id > 10;", "sql_statement"),
        ];
        for (line, want) in cases {
            let got = names(&s, line);
            assert!(
                got.iter().any(|n| n == want),
                "{line:?} → {got:?}, want {want}"
            );
        }
    }

    #[test]
    fn benign_commands_and_comments_are_not_flagged() {
        let s = scanner();
        for line in [
            "User.find(1)",
            "# destroy_all later",
            "User.count # then .destroy_all maybe",
            "User.where(id: 1).pluck(:email)",
            "puts \"#{user.id} destroyed?\"",
            "user.destroyed?",
            "Rails.logger.info('done')",
            "rm tmp/pids/server.pid",
            "ls -rf",
            "=> 3",
        ] {
            assert!(
                s.scan(line).is_empty(),
                "{line:?} flagged: {:?}",
                s.scan(line)
            );
        }
    }

    #[test]
    fn terminal_noise_and_prompts_are_removed() {
        let raw = "\x1b[1m\x1b[32mirb(main):001:0>\x1b[0m Us\x1b[K\rirb(main):001:0> User.dest\x08\x08\x08\x08destroy_all\x1b[0m\r\n";
        assert_eq!(
            clean_lines(raw),
            vec!["Us".to_string(), "User.destroy_all".to_string()]
        );
        let s = scanner();
        let hits = s.scan(raw);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].command, "User.destroy_all");
        assert_eq!(hits[0].severity, Severity::High);

        assert_eq!(strip_prompt("[3] pry(main)> x"), "x");
        assert_eq!(strip_prompt("myapp(prod)> x"), "x");
        assert_eq!(strip_prompt("myapp(prod)* x"), "x");
        assert_eq!(strip_prompt("root@ip-10-0-1-2:/app# rm -rf /"), "rm -rf /");
        assert_eq!(strip_prompt("bash-5.2$ ls"), "ls");
        assert_eq!(strip_prompt("/app # ls"), "ls");
        assert_eq!(
            strip_prompt("irb(main):002:1* .destroy_all"),
            ".destroy_all"
        );
        // OSC title sequences and charset switches vanish.
        assert_eq!(strip_noise("\x1b]0;root@host: /app\x07\x1b(Bls"), "ls");
    }

    #[test]
    fn severity_is_the_highest_of_the_matches() {
        let s = scanner();
        let hits = s.scan("User.find(1).destroy; Redis.current.flushall");
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].severity, Severity::Critical);
        assert_eq!(hits[0].patterns, vec!["destroy_or_delete", "redis_flush"]);
    }

    #[test]
    fn bad_patterns_are_a_config_error() {
        let e = Scanner::new(&[PatternSpec {
            name: "broken".into(),
            regex: "(".into(),
            severity: Severity::Low,
        }])
        .unwrap_err();
        assert!(e.to_string().contains("pattern broken"), "{e}");
    }
}
