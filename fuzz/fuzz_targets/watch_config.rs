//! The bastion watch configuration (YAML) parser.
#![no_main]
use batchless_core::bastion::WatchConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = WatchConfig::parse(text) {
            let _ = batchless_core::bastion::scan::Scanner::new(&c.patterns);
            let _ = batchless_core::bastion::phrases::Phrases::new(&c.approval);
        }
    }
});
