//! Scanner throughput over a large synthetic ECS Exec transcript with the default patterns,
//! side by side with `grep -E -f <patterns>` on the same input, in the same run.
//!
//! `scanner-bench <watch.yaml> <workdir> [MiB]` writes `<workdir>/transcript.txt` and
//! `<workdir>/patterns.ere`, measures, and prints a Markdown table.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

/// The error type `scan.rs` expects from its crate (`crate::error::Error::config`).
mod error {
    #[derive(Debug)]
    pub struct Error(pub String);
    impl Error {
        pub fn config(msg: impl Into<String>) -> Self {
            Error(msg.into())
        }
    }
    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
}

// The production scanner, compiled from the same file as batchless-core.
#[allow(dead_code)]
#[path = "../../../crates/core/src/bastion/scan.rs"]
mod scan;

#[derive(serde::Deserialize)]
struct Config {
    patterns: Vec<scan::PatternSpec>,
}

/// Deterministic pseudo-random numbers (xorshift), so every run scans the same text.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// A planted dangerous command, unique per `n` so that every planted line is its own distinct
/// hit: the count of distinct hits must equal the count planted.
fn planted(kind: u64, n: usize) -> String {
    match kind % 8 {
        0 => format!("User.where(id: {n}).destroy_all"),
        1 => format!(
            "ActiveRecord::Base.connection.execute(\"DELETE FROM sessions WHERE id = {n}\")"
        ),
        2 => format!("Redis.current.flushall if {n}"),
        3 => format!("rm -rf /app/storage/tmp/{n}"),
        4 => format!("Sidekiq::RetrySet.new.clear; {n}"),
        5 => format!("User.send(:delete_all) if {n}"),
        6 => format!("x = %( #); Order.where(id: {n}).update_all(state: 0)"),
        _ => format!("system 'bash', '-c', 'env | wc -l #{n}'"),
    }
}

/// A transcript that is mostly ordinary console traffic, as real sessions are: mostly output
/// (query logs, inspected records, tables), commands with a coloured prompt and an occasional
/// correction, one dangerous command per ~5000 commands.
fn ordinary(bytes: usize) -> (String, Vec<String>) {
    let commands = [
        "User.find(42)",
        "Order.where(state: \"pending\").count",
        "Invoice.where(created_at: 1.day.ago..).sum(:amount)",
        "u = User.find_by(email: \"a@example.com\"); u.orders.last",
        "pp Order.last(3).map(&:attributes)",
        "Rails.cache.read(\"feature_flags\")",
        "Sidekiq::Queue.new(\"default\").size",
        "puts \"#{user.id}: #{user.email}\" # check this one",
    ];
    let output = [
        "  User Load (0.6ms)  SELECT \"users\".* FROM \"users\" WHERE \"users\".\"id\" = $1 LIMIT $2  [[\"id\", 42], [\"LIMIT\", 1]]",
        "=> #<User id: 42, email: \"[FILTERED]\", name: \"Alice Example\", created_at: \"2026-11-01 10:00:00.000000000 +0000\", updated_at: \"2026-11-28 09:12:44.000000000 +0000\">",
        "  Order Count (2.1ms)  SELECT COUNT(*) FROM \"orders\" WHERE \"orders\".\"state\" = $1  [[\"state\", \"pending\"]]",
        "=> 1289",
        " {\"id\"=>1001, \"user_id\"=>42, \"state\"=>\"shipped\", \"amount\"=>\"129.00\", \"created_at\"=>Sat, 28 Nov 2026 09:00:00 UTC +00:00},",
        "=> nil",
    ];
    let mut rng = Rng(0x2545f4914f6cdd1d);
    let mut out = String::with_capacity(bytes + 1024);
    let (mut n, mut planted_lines) = (0usize, Vec::new());
    while out.len() < bytes {
        n += 1;
        let r = rng.next();
        let cmd = if r.is_multiple_of(5000) {
            planted_lines.push(planted(r / 5000, n));
            planted(r / 5000, n)
        } else {
            rng.pick(&commands).to_string()
        };
        if r % 7 == 1 {
            // A correction: a typo erased with backspaces.
            out.push_str(&format!(
                "\x1b[32mirb(main):{n:03}:0>\x1b[0m {cmd}q\x08\r\n"
            ));
        } else {
            out.push_str(&format!("\x1b[32mirb(main):{n:03}:0>\x1b[0m {cmd}\r\n"));
        }
        for _ in 0..(2 + rng.next() % 8) {
            out.push_str(rng.pick(&output));
            out.push_str("\r\n");
        }
    }
    (out, planted_lines)
}

fn transcript(bytes: usize) -> (String, Vec<String>) {
    let benign = [
        "User.find(42)",
        "Order.where(state: \"pending\").count",
        "Rails.cache.read(\"feature_flags\")",
        "u = User.find_by(email: \"a@example.com\"); u.orders.last",
        "Invoice.where(created_at: 1.day.ago..).sum(:amount)",
        "# destroy_all later, once we know why",
        "puts \"#{user.id} destroyed? #{user.destroyed?}\"",
        "Sidekiq::Queue.new(\"default\").size",
        "ls -la /app/tmp",
        "cat log/production.log | tail -n 20",
    ];
    let output = [
        "=> 12",
        "=> #<User id: 42, email: \"[FILTERED]\", created_at: \"2026-11-01 10:00:00\">",
        "  User Load (0.6ms)  SELECT \"users\".* FROM \"users\" WHERE \"users\".\"id\" = $1 LIMIT $2  [[\"id\", 42], [\"LIMIT\", 1]]",
        "=> nil",
        "total 48",
        "drwxr-xr-x 2 app app 4096 Nov 28 13:00 cache",
    ];
    let dangerous = [
        "User.where(active: false).destroy_all",
        "ActiveRecord::Base.connection.execute(\"DELETE FROM sessions\")",
        "Redis.current.flushall",
        "rm -rf /app/storage/tmp",
        "Sidekiq::RetrySet.new.clear",
    ];
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut out = String::with_capacity(bytes + 1024);
    let mut n = 0usize;
    let mut dangerous_lines = Vec::new();
    while out.len() < bytes {
        n += 1;
        let r = rng.next();
        let planted_cmd;
        let cmd = if r.is_multiple_of(1000) {
            planted_cmd = format!("{}; {}", rng.pick(&dangerous), planted(r / 1000, n));
            dangerous_lines.push(planted_cmd.clone());
            planted_cmd.as_str()
        } else {
            rng.pick(&benign)
        };
        if cmd.starts_with("ls") || cmd.starts_with("cat") || cmd.starts_with("rm") {
            out.push_str(&format!(
                "\x1b]0;root@ip-10-0-1-23: /app\x07root@ip-10-0-1-23:/app# {cmd}\r\n"
            ));
        } else {
            // Colour, a redraw (reline), a correction with backspaces.
            out.push_str(&format!(
                "\x1b[1m\x1b[32mirb(main):{n:03}:0>\x1b[0m {}\x1b[K\rirb(main):{n:03}:0> {cmd}x\x08\r\n",
                &cmd[..cmd.len() / 2]
            ));
        }
        for _ in 0..(rng.next() % 3) {
            out.push_str(rng.pick(&output));
            out.push_str("\r\n");
        }
    }
    (out, dangerous_lines)
}

/// A Rust-regex pattern as POSIX ERE for GNU grep: `(?:` → `(`, `(?i)` → `[xX]` per letter.
fn to_ere(re: &str) -> String {
    let (ci, re) = match re.strip_prefix("(?i)") {
        Some(rest) => (true, rest),
        None => (false, re),
    };
    let re = re.replace("(?:", "(");
    if !ci {
        return re;
    }
    let mut out = String::new();
    let mut chars = re.chars();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push(c);
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            c if c.is_ascii_alphabetic() && !in_class => {
                out.push('[');
                out.push(c.to_ascii_lowercase());
                out.push(c.to_ascii_uppercase());
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out
}

fn best<F: FnMut() -> usize>(runs: usize, mut f: F) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut result = 0;
    for _ in 0..runs {
        let t = Instant::now();
        result = f();
        best = best.min(t.elapsed());
    }
    (best, result)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let config_path = args
        .get(1)
        .expect("usage: scanner-bench <watch.yaml> <workdir> [MiB]");
    let workdir = std::path::PathBuf::from(args.get(2).expect("workdir"));
    let mib: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
    let config: Config =
        serde_norway::from_str(&std::fs::read_to_string(config_path).expect("config"))
            .expect("yaml");
    let scanner = scan::Scanner::new(&config.patterns).expect("patterns compile");
    std::fs::create_dir_all(&workdir).expect("workdir");
    let ere = workdir.join("patterns.ere");
    let mut f = std::fs::File::create(&ere).expect("patterns file");
    for p in &config.patterns {
        writeln!(f, "{}", to_ere(&p.regex)).expect("write");
    }
    drop(f);
    let grep_version = Command::new("grep")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    println!(
        "{} patterns, best of 3, one core, {grep_version}",
        config.patterns.len()
    );
    let bytes = mib * 1024 * 1024;
    let mut complete = true;
    for (name, (text, planted)) in [
        ("synthetic (noise on every command line)", transcript(bytes)),
        ("mostly ordinary console traffic", ordinary(bytes)),
    ] {
        complete &= measure(&scanner, &workdir, &ere, name, &text, &planted);
    }
    if !complete {
        eprintln!("scanner-bench: the scanner missed planted dangerous commands");
        std::process::exit(1);
    }
}

fn measure(
    scanner: &scan::Scanner,
    workdir: &std::path::Path,
    ere: &std::path::Path,
    name: &str,
    text: &str,
    planted: &[String],
) -> bool {
    if let Ok(only) = std::env::var("SCANNER_BENCH_PROFILE") {
        // Only the scanner, once, on the inputs whose name starts with the value (for
        // `valgrind --tool=callgrind`; the transcript is written for grep to be profiled too).
        if name.starts_with(&only) {
            std::fs::write(workdir.join("transcript.txt"), text).expect("write transcript");
            // `SCANNER_BENCH_REPEAT=<n>` scans it n times (for `perf record`).
            let repeat = std::env::var("SCANNER_BENCH_REPEAT")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            let mut fastest = Duration::MAX;
            for _ in 1..repeat {
                let t = Instant::now();
                scanner.scan(text);
                fastest = fastest.min(t.elapsed());
            }
            if repeat > 1 {
                println!("{name}: fastest scan {:.2} ms", fastest.as_secs_f64() * 1e3);
            }
            println!("{name}: {} hits", scanner.scan(text).len());
        }
        return true;
    }
    let input = workdir.join("transcript.txt");
    std::fs::write(&input, text).expect("write transcript");
    let mb = text.len() as f64 / 1_000_000.0;
    let (ours, hits) = best(3, || scanner.scan(text).len());
    let found_hits = scanner.scan(text);
    let found = planted
        .iter()
        .filter(|p| found_hits.iter().any(|h| h.command.contains(p.as_str())))
        .count();
    let lines = scan::clean_lines(text);
    let (set_only, line_hits) = best(3, || {
        lines
            .iter()
            .filter(|l| scanner.match_command(l).is_some())
            .count()
    });
    let (grep, grep_hits) = best(3, || {
        let out = Command::new("grep")
            .env("LC_ALL", "C")
            .args(["-E", "-c", "-f"])
            .arg(ere)
            .arg(&input)
            .output()
            .expect("grep runs");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    });
    println!();
    println!(
        "input: {name}: {mb:.1} MB, {} lines, {} dangerous commands planted, {found} of them found",
        text.matches('\n').count(),
        planted.len(),
    );
    println!();
    println!("| scanner | time | throughput | matches |");
    println!("| --- | ---: | ---: | ---: |");
    let row = |name: &str, d: Duration, n: usize, what: &str| {
        println!(
            "| {name} | {:.3} s | {:.0} MB/s | {n} {what} |",
            d.as_secs_f64(),
            mb / d.as_secs_f64()
        )
    };
    row(
        "batchless `Scanner::scan` (noise + prompts + comments stripped, all patterns, deduplicated)",
        ours,
        hits,
        "distinct commands",
    );
    row(
        "`Scanner::match_command` over pre-cleaned lines (matching only)",
        set_only,
        line_hits,
        "lines",
    );
    row(
        "`grep -E -c -f patterns.ere` (LC_ALL=C, raw text)",
        grep,
        grep_hits,
        "lines",
    );
    println!(
        "\nscan / grep: {:.2}x ({:.0} vs {:.0} MB/s); planted found: {found}/{}",
        grep.as_secs_f64() / ours.as_secs_f64(),
        mb / ours.as_secs_f64(),
        mb / grep.as_secs_f64(),
        planted.len()
    );
    found == planted.len()
}
