//! The CloudTrail `ExecuteCommand` event → the bastion watch's input, and its command check.
#![no_main]
use batchless_core::bastion::login;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(Some(l)) = login::from_event(&v) {
            let _ = login::is_console_entrypoint(&l.exec.command);
            let _ = login::execution_name(&l.session_id);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = login::is_console_entrypoint(text);
    }
});
