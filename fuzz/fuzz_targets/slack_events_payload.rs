//! A Slack Events API request: signature check, body, replay key and workspace/app check.
#![no_main]
use batchless_core::platform::slack;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let secret = "0123456789abcdef0123456789abcdef";
    let (head, body) = data.split_at(data.len().min(12));
    let ts = String::from_utf8_lossy(head);
    let _ = slack::verify_signature(secret, Some(&ts), Some("v0=00"), body, 1_800_000_000);
    let sig = slack::sign(secret, &ts, body);
    if ts.trim() == ts
        && ts
            .parse::<i64>()
            .is_ok_and(|t| t.abs_diff(1_800_000_000) <= 300)
    {
        assert!(
            slack::verify_signature(secret, Some(&ts), Some(&sig), body, 1_800_000_000).is_ok()
        );
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(key) = slack::replay_key(&v) {
            assert!(!key.is_empty() && key.len() <= 200);
        }
        let _ = slack::check_app(&v, "T0REPLICA", "A0BATCHLESS");
    }
});
