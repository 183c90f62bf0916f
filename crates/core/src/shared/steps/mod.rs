//! Steps several workflows share, one module per Lambda (`functions/shared/<step>`): each has
//! `Deps` (built once, `Deps::from_env`), a strict `Input`, an `Output` and `handle`.

pub mod cleanup;
pub mod collect_logs;
pub mod complete_wait;
pub mod poll_build;
pub mod register_wait;
