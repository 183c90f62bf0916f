//! Approval phrase rules on arbitrary reply text.
#![no_main]
use batchless_core::bastion::{phrases::Phrases, WatchConfig, EMBEDDED};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static P: OnceLock<Phrases> = OnceLock::new();
    let p =
        P.get_or_init(|| Phrases::new(&WatchConfig::parse(EMBEDDED).unwrap().approval).unwrap());
    if let Ok(text) = std::str::from_utf8(data) {
        // A question mark anywhere makes a reply a question: never evidence.
        if p.approves(text) {
            assert!(!text.contains('?') && !text.contains('？'), "{text:?}");
        }
    }
});
