//! Chaos runs of Causeway: real `causeway controller` and `causeway
//! gateway` processes on loopback, two or three trust domains peered with
//! each other, steady load between every pair, and one fault injected per
//! scenario (a controller crashing at each step of a root rotation, a peer
//! down, a peer gateway frozen with an old bundle, the issuer gone). Each
//! scenario checks the outcome Causeway promises and reports the requests
//! sent, failed, and the longest gap between two good answers.
//!
//! - [`process`]: the binary's commands and processes, killed by pid when
//!   dropped;
//! - [`mesh`]: a federation of trust domains built the way an operator
//!   would (tokens, bundle exports, Peering and Service files);
//! - [`load`]: the load generators; [`upstream`]: the services they reach;
//! - [`scenarios`]: the scenarios and their reports.

pub mod load;
pub mod mesh;
pub mod process;
pub mod scenarios;
pub mod upstream;

pub use process::Causeway;
pub use scenarios::{Options, Report, SCENARIOS, Scenario, find};
