//! The people map (`infra/people.yaml`) parser.
#![no_main]
use batchless_core::shared::people::People;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = People::parse(text, "staging");
    }
});
