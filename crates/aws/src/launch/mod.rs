//! Launching: which offerings to ask for ([`selection`]), the launch templates they use
//! ([`template`], [`userdata`] with [`bottlerocket`], [`windows`] and [`kubelet`]), and the CreateFleet call and its answer ([`fleet`]), merged with
//! identical concurrent calls ([`batcher`]).

pub mod batcher;
pub mod bottlerocket;
pub mod fleet;
pub mod kubelet;
pub mod selection;
pub mod template;
pub mod userdata;
pub mod windows;
