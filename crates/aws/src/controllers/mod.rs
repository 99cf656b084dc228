//! The AWS provider's own loops, which the `nodewright controller` binary spawns next to the core
//! controllers: a watched cache of EC2NodeClasses ([`watched`]), their status ([`node_class_status`]),
//! their finalizer and instance-profile collection ([`node_class_termination`]), the interruption
//! queue ([`interruption_queue`]) and launch-template collection ([`launch_templates`]).
//!
//! They are here rather than in the core controllers because they read AWS directly; each keeps
//! the read → decide (pure) → write shape of a reconciler.

pub mod interruption_queue;
pub mod launch_templates;
pub mod node_class_status;
pub mod node_class_termination;
pub mod watched;
