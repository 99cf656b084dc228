//! Launching: which offerings to ask for ([`selection`]), the launch templates they use
//! ([`template`], [`userdata`]), and the CreateFleet call and its answer ([`fleet`]), merged with
//! identical concurrent calls ([`batcher`]).

pub mod batcher;
pub mod fleet;
pub mod selection;
pub mod template;
pub mod userdata;
