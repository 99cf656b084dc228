//! Karpenter v1-compatible API types for Nodewright: NodePool and NodeClaim (`karpenter.sh/v1`),
//! EC2NodeClass (`karpenter.k8s.aws/v1`), NodeOverlay (`karpenter.sh/v1alpha1`) and CapacityBuffer
//! (`autoscaling.x-k8s.io/v1beta1`), with their defaults, CRD schemas (including Karpenter's CEL
//! rules), a `validate()` per kind that reports every problem with its field path, strict manifest
//! decoding, and the well-known labels, annotations, taints and finalizers.

pub mod capacitybuffer;
pub mod clock;
pub mod conditions;
pub mod crds;
pub mod decode;
pub mod duration;
pub mod ec2nodeclass;
pub mod hash;
pub mod kubelet;
pub mod labels;
pub mod nodeclaim;
pub mod nodeoverlay;
pub mod nodepool;
pub mod quantity;
pub mod requirements;
mod schema;
pub mod structural;
pub mod validation;

pub use capacitybuffer::{BufferSchedule, CapacityBuffer, CapacityBufferSpec, CapacityBufferStatus};
pub use decode::{DecodeError, Object, parse_objects};
pub use ec2nodeclass::{EC2NodeClass, EC2NodeClassSpec, EC2NodeClassStatus};
pub use nodeclaim::{NodeClaim, NodeClaimSpec, NodeClaimStatus};
pub use nodeoverlay::{NodeOverlay, NodeOverlaySpec, NodeOverlayStatus};
pub use nodepool::{NodePool, NodePoolSpec, NodePoolStatus};
pub use requirements::{NodeSelectorRequirementWithMinValues, Operator};
pub use validation::{FieldError, Invalid};
