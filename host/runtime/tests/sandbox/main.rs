//! The sandbox tests: RELIABILITY.md T01–T14 against the hostile fixture, the runtime's side of
//! T15–T18 (forbidden requests come back to the guest as `denied`), plugin loading refusals, the
//! red-team suite for sealed secrets (T37 under contract 0.2.0), and the well-behaved fixture end
//! to end.
//!
//! Fixtures come from `plugins/target/wasm32-wasip2/release/`; build them first with
//! `cd plugins && cargo build --release --target wasm32-wasip2`.

mod harness;
mod hostile;
mod loading;
mod red_team;
mod well_behaved;
