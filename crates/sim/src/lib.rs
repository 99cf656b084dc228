//! An in-memory Kubernetes API server that the real clients — kube-rs and kubectl — talk to
//! unchanged, for Nodewright's controller tests and the `nodewright sim` demo.

pub mod admission;
pub mod apply;
pub mod crd;
pub mod defaults;
pub mod discovery;
pub mod error;
pub mod eviction;
pub mod faults;
pub mod gc;
pub mod http;
pub mod listtype;
pub mod managed;
pub mod meta;
pub mod patch;
pub mod resources;
pub mod selector;
pub mod store;
pub mod table;
pub mod testing;
pub mod validation;

pub use http::{AppState, Server, ServerConfig, serve};
