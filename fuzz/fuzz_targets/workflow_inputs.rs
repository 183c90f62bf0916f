//! Each workflow's strict input (the first byte picks which), parsed as the Lambda runtime
//! does (`platform::input::parse_strict`), then validated where the step validates.
#![no_main]
use batchless_core::platform::input::parse_strict;
use batchless_core::{bastion, jobs, migration, patch};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&which, json)) = data.split_first() else {
        return;
    };
    let Ok(v) = serde_json::from_slice::<Value>(json) else {
        return;
    };
    match which % 6 {
        0 => drop(parse_strict::<migration::steps::validate_input::Input>(v)),
        1 => drop(parse_strict::<patch::steps::validate_patch_request::Input>(
            v,
        )),
        2 => drop(parse_strict::<jobs::steps::claim_occurrence::Input>(v)),
        3 => drop(parse_strict::<jobs::steps::acquire_job_lease::Input>(v)),
        4 => drop(parse_strict::<bastion::steps::open_session::Input>(v)),
        _ => {
            if let Ok(w) = parse_strict::<bastion::login::WatchInput>(v) {
                let _ = w.validate();
            }
        }
    }
});
