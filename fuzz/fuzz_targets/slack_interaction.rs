//! A Slack interactivity body (`payload=<url-encoded JSON>`) and its replay key.
#![no_main]
use batchless_core::platform::slack;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(payload) = batchless_core::patch::message::interaction_payload(data) {
        let _ = slack::interaction_replay_key(&payload);
        let _ = slack::check_app(&payload, "T0REPLICA", "A0BATCHLESS");
    }
});
