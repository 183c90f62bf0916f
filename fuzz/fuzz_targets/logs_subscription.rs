//! CloudWatch Logs subscription payloads (base64 + gzip JSON) and the hook's lines in them.
#![no_main]
use batchless_core::bastion::subscription;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(logs) = subscription::decode(text) {
        for e in &logs.log_events {
            let _ = subscription::classify(&e.message, true);
        }
    }
    let _ = subscription::classify(text, true);
    let _ = subscription::classify(text, false);
    let _ = subscription::session_id_from_stream(text);
});
