//! The bastion scanner on arbitrary transcript text: noise stripping, prompts, Ruby-literal
//! comment stripping and matching never panic, and a hit is always a line of the cleaned text.
#![no_main]
use batchless_core::bastion::{scan, WatchConfig, EMBEDDED};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn scanner() -> &'static scan::Scanner {
    static S: OnceLock<scan::Scanner> = OnceLock::new();
    S.get_or_init(|| scan::Scanner::new(&WatchConfig::parse(EMBEDDED).unwrap().patterns).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = scan::clean_lines(text);
    for hit in scanner().scan(text) {
        assert!(lines.contains(&hit.command), "{hit:?} not among {lines:?}");
    }
    for line in text.lines() {
        let kept = scan::strip_comment(line);
        assert!(line.starts_with(kept));
    }
});
