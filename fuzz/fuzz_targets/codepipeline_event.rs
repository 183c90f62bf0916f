//! CodePipeline job events (the pipeline bridge's input).
#![no_main]
use batchless_core::migration::pipeline::JobEvent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = serde_json::from_slice::<JobEvent>(data) {
        let _ = ev.continuation_token();
        let _ = ev.user_parameters();
    }
});
