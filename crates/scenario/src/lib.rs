//! `nodewright sim`: plays a scenario (a timed list of applies, scales and deletes; see
//! [`format`]) on the simulated cluster with Nodewright's real controllers, and reports what
//! happened: live progress, a summary table ([`report`]) and a timeline chart ([`chart`]).
//!
//! A crate of its own because it joins two others that must not depend on each other: the
//! simulation (`nodewright-sim`, which the controllers' tests use) and the controllers.

pub mod chart;
pub mod format;
pub mod play;
pub mod report;
pub mod sample;

pub use format::{Scenario, ScenarioError};
pub use play::{Outcome, PlayError, PlayOptions, Played, Progress, play, play_variants};

/// The default scenario: the hands-on lab's inflate flow.
pub const DEFAULT_SCENARIO: &str = include_str!("../../../scenarios/inflate-lab.yaml");
