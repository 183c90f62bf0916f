//! The jobs file (`infra/jobs.yaml`) parser and validator.
#![no_main]
use batchless_core::jobs::config::JobsFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = JobsFile::parse(text);
    }
});
