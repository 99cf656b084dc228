//! Workload controllers: being written (this commit only wires the data plane's other parts).
use super::{Ctx, DataPlaneConfig, DataPlaneError};
pub const MANAGER: &str = "kube-controller-manager";
pub const RUN_SECONDS_ANNOTATION: &str = "sim.nodewright.dev/run-seconds";
#[allow(clippy::unnecessary_wraps)]
pub(crate) fn reconcile(_ctx: &Ctx<'_>, _config: &DataPlaneConfig) -> Result<usize, DataPlaneError> {
    Ok(0)
}
