//! Simulated kubelets, with the parts of the cloud controller manager and the pod garbage
//! collector that act on the same objects.
//!
//! - Registration: `boot_delay` after a fake-cloud instance starts running, a Node appears with
//!   the instance's labels, capacity, allocatable and providerID, the NodeClaim's taints and
//!   startup taints, `karpenter.sh/unregistered:NoExecute` (which Karpenter removes when it
//!   registers the node) and `node.kubernetes.io/not-ready:NoSchedule`, and `Ready=False`.
//!   An instance whose NodeClaim is being deleted does not register again, nor does one
//!   running an AMI the cloud was told is broken ([`FakeCloud::break_ami`]).
//! - Readiness: `ready_delay` after registration, `Ready` turns True and the startup taints and
//!   the not-ready taint go (what a CNI agent and the node lifecycle controller do).
//! - Machine gone: when the instance is terminated, the Node is deleted (its finalizers, such as
//!   Karpenter's, keep it until removed).
//! - Pods: pods bound to a node whose kubelet is up go Running and Ready; terminating pods there
//!   stop (the final delete); pods bound to a node that no longer exists are deleted, as the pod
//!   garbage collector does.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::{
    api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStatus, Node, NodeAddress, NodeCondition, NodeSpec,
        NodeStatus, NodeSystemInfo, Pod, PodCondition, PodIP, Taint,
    },
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
};
use kube::ResourceExt;
use nodewright_api::{NodeClaim, labels};

use super::{Ctx, DataPlaneConfig, DataPlaneError};
use crate::{
    cloud::{FakeCloud, Instance, InstanceState, tags},
    store::Subresource,
};

/// The field manager of everything the simulated node agents write.
pub const MANAGER: &str = "kubelet";
/// The taint a node carries until it is Ready.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
/// The kubelet version simulated nodes report.
pub const KUBELET_VERSION: &str = "v1.33.0-nodewright-sim";

/// Registers, readies and removes Nodes for the cloud's instances.
pub(crate) fn reconcile_nodes(
    ctx: &Ctx<'_>,
    cloud: Option<&FakeCloud>,
    config: &DataPlaneConfig,
) -> Result<usize, DataPlaneError> {
    let Some(cloud) = cloud else {
        return Ok(0);
    };
    let now = ctx.now();
    let nodes: Vec<Node> = ctx.list("", "nodes")?;
    let claims: Vec<NodeClaim> = ctx.list(labels::KARPENTER_GROUP, "nodeclaims")?;
    let claims: BTreeMap<String, NodeClaim> = claims.into_iter().map(|c| (c.name_any(), c)).collect();
    let by_provider: BTreeMap<&str, &Node> = nodes
        .iter()
        .filter_map(|n| Some((n.spec.as_ref()?.provider_id.as_deref()?, n)))
        .collect();
    let mut writes = 0;
    for instance in cloud.all_instances() {
        let claim = instance
            .tags
            .get(tags::NODE_CLAIM)
            .and_then(|name| claims.get(name))
            .unwrap_or(&instance.node_claim);
        let node = by_provider.get(instance.provider_id.as_str()).copied();
        match (instance.state(now), node) {
            (InstanceState::Terminated, Some(node)) if node.metadata.deletion_timestamp.is_none() => {
                writes += usize::from(ctx.delete("", "nodes", "", &node.name_any(), None)?);
            }
            (InstanceState::Running, None)
                if boots_by(&instance, config) <= now
                    && claim.metadata.deletion_timestamp.is_none()
                    && !runs_broken_ami(cloud, &instance) =>
            {
                let node = register(&instance, claim, cloud.catalog().region(), now);
                writes += usize::from(ctx.create("", "nodes", "", &node)?);
            }
            (InstanceState::Running, Some(node)) if should_turn_ready(node, config, now) => {
                writes += turn_ready(ctx, node, claim, now)?;
            }
            _ => {}
        }
    }
    Ok(writes)
}

fn runs_broken_ami(cloud: &FakeCloud, instance: &Instance) -> bool {
    instance
        .node_claim
        .status
        .as_ref()
        .and_then(|s| s.image_id.as_deref())
        .is_some_and(|ami| cloud.is_ami_broken(ami))
}

fn boots_by(instance: &Instance, config: &DataPlaneConfig) -> Timestamp {
    instance
        .running_at
        .checked_add(config.boot_delay)
        .unwrap_or(Timestamp::MAX)
}

/// The EC2 resource name of an instance's private address, derived from its number so runs
/// are reproducible (`i-…0001` → `ip-10-0-0-1.ec2.internal`).
pub fn node_name(instance: &Instance) -> String {
    let number = u64::from_str_radix(instance.id.trim_start_matches("i-"), 16).unwrap_or(0);
    let [.., b, c, d] = number.to_be_bytes();
    format!("ip-10-{b}-{c}-{d}.ec2.internal")
}

fn register(instance: &Instance, claim: &NodeClaim, region: &str, now: Timestamp) -> Node {
    let name = node_name(instance);
    let mut node_labels = instance.node_claim.labels().clone();
    node_labels.extend(claim.labels().iter().map(|(k, v)| (k.clone(), v.clone())));
    node_labels.insert(labels::HOSTNAME.to_owned(), name.clone());
    node_labels.insert(labels::REGION.to_owned(), region.to_owned());
    node_labels.insert(labels::ZONE.to_owned(), instance.offering.zone.clone());
    let mut taints: Vec<Taint> = claim.spec.taints.clone();
    for startup in &claim.spec.startup_taints {
        if !taints
            .iter()
            .any(|t| t.key == startup.key && t.effect == startup.effect)
        {
            taints.push(startup.clone());
        }
    }
    taints.push(labels::UNREGISTERED_TAINT.to_taint());
    taints.push(not_ready_taint());
    let status = instance.node_claim.status.clone().unwrap_or_default();
    let address = private_ip(instance);
    Node {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(node_labels),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            provider_id: Some(instance.provider_id.clone()),
            taints: Some(taints),
            ..NodeSpec::default()
        }),
        status: Some(NodeStatus {
            capacity: Some(status.capacity.clone()),
            allocatable: Some(status.allocatable.clone()),
            conditions: Some(vec![ready_condition(
                "False",
                "KubeletNotReady",
                "container runtime network not ready",
                now,
            )]),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".to_owned(),
                    address,
                },
                NodeAddress {
                    type_: "Hostname".to_owned(),
                    address: name,
                },
            ]),
            node_info: Some(NodeSystemInfo {
                architecture: instance
                    .node_claim
                    .labels()
                    .get(labels::ARCH)
                    .cloned()
                    .unwrap_or_else(|| "amd64".to_owned()),
                operating_system: "linux".to_owned(),
                kubelet_version: KUBELET_VERSION.to_owned(),
                kube_proxy_version: KUBELET_VERSION.to_owned(),
                container_runtime_version: "containerd://2.0.0".to_owned(),
                os_image: "Amazon Linux 2023".to_owned(),
                kernel_version: "6.1.0".to_owned(),
                machine_id: instance.id.clone(),
                system_uuid: instance.id.clone(),
                boot_id: instance.id.clone(),
                ..NodeSystemInfo::default()
            }),
            ..NodeStatus::default()
        }),
    }
}

fn private_ip(instance: &Instance) -> String {
    node_name(instance)
        .trim_start_matches("ip-")
        .trim_end_matches(".ec2.internal")
        .replace('-', ".")
}

fn not_ready_taint() -> Taint {
    Taint {
        key: NOT_READY_TAINT.to_owned(),
        effect: "NoSchedule".to_owned(),
        ..Taint::default()
    }
}

fn ready_condition(status: &str, reason: &str, message: &str, now: Timestamp) -> NodeCondition {
    NodeCondition {
        type_: "Ready".to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

fn ready_status(node: &Node) -> Option<&str> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

fn should_turn_ready(node: &Node, config: &DataPlaneConfig, now: Timestamp) -> bool {
    let registered = node.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    ready_status(node) != Some("True")
        && node.metadata.deletion_timestamp.is_none()
        && registered
            .checked_add(config.ready_delay)
            .is_ok_and(|at| at <= now)
}

fn turn_ready(
    ctx: &Ctx<'_>,
    node: &Node,
    claim: &NodeClaim,
    now: Timestamp,
) -> Result<usize, DataPlaneError> {
    let name = node.name_any();
    let startup: Vec<&Taint> = claim.spec.startup_taints.iter().collect();
    let untainted = ctx.update::<Node>("", "nodes", "", &name, Subresource::Main, &mut |n| {
        if let Some(taints) = n.spec.as_mut().and_then(|s| s.taints.as_mut()) {
            taints.retain(|t| {
                !(t.key == NOT_READY_TAINT || startup.iter().any(|s| s.key == t.key && s.effect == t.effect))
            });
        }
    })?;
    let readied = ctx.update::<Node>("", "nodes", "", &name, Subresource::Status, &mut |n| {
        let status = n.status.get_or_insert_with(Default::default);
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        conditions.retain(|c| c.type_ != "Ready");
        conditions.push(ready_condition(
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
            now,
        ));
    })?;
    Ok(usize::from(untainted) + usize::from(readied))
}

/// Runs, stops and collects pods.
pub(crate) fn reconcile_pods(ctx: &Ctx<'_>) -> Result<usize, DataPlaneError> {
    let pods: Vec<Pod> = ctx.list("", "pods")?;
    if pods.iter().all(|p| bound_node(p).is_none()) {
        return Ok(0);
    }
    let nodes: Vec<Node> = ctx.list("", "nodes")?;
    let existing: BTreeSet<String> = nodes.iter().map(ResourceExt::name_any).collect();
    // A kubelet that stopped reporting (Ready Unknown) does nothing.
    let up: BTreeMap<String, String> = nodes
        .iter()
        .filter(|n| ready_status(n) != Some("Unknown"))
        .map(|n| (n.name_any(), host_ip(n)))
        .collect();
    let now = ctx.now();
    let mut writes = 0;
    for pod in &pods {
        let Some(node) = bound_node(pod) else {
            continue;
        };
        let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        if !existing.contains(node) {
            writes += usize::from(ctx.delete("", "pods", &ns, &name, Some(0))?);
            continue;
        }
        let Some(host_ip) = up.get(node) else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            writes += usize::from(ctx.delete("", "pods", &ns, &name, Some(0))?);
        } else if phase(pod).is_none_or(|p| p == "Pending") {
            let pod_ip = pod_ip(pod);
            let written = ctx.update::<Pod>("", "pods", &ns, &name, Subresource::Status, &mut |p| {
                start(p, host_ip, &pod_ip, now);
            })?;
            writes += usize::from(written);
        }
    }
    Ok(writes)
}

fn bound_node(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref().filter(|n| !n.is_empty())
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

fn host_ip(node: &Node) -> String {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address.clone())
        .unwrap_or_default()
}

/// A stable address per pod: 100.64.0.0/10 (carrier-grade NAT space, so it never looks like a
/// node's), from a hash of the pod's uid.
fn pod_ip(pod: &Pod) -> String {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let hash = uid.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let [.., b, c, d] = hash.to_be_bytes();
    format!("100.{}.{c}.{d}", 64 + (b & 63))
}

fn start(pod: &mut Pod, host_ip: &str, pod_ip: &str, now: Timestamp) {
    let containers: Vec<(String, String)> = pod
        .spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let status = pod.status.get_or_insert_with(Default::default);
    status.phase = Some("Running".to_owned());
    status.host_ip = Some(host_ip.to_owned());
    status.pod_ip = Some(pod_ip.to_owned());
    status.pod_ips = Some(vec![PodIP {
        ip: pod_ip.to_owned(),
    }]);
    status.start_time = Some(Time(now));
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    for type_ in [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
    ] {
        conditions.retain(|c| c.type_ != type_);
        conditions.push(PodCondition {
            type_: type_.to_owned(),
            status: "True".to_owned(),
            last_transition_time: Some(Time(now)),
            ..PodCondition::default()
        });
    }
    status.container_statuses = Some(
        containers
            .into_iter()
            .map(|(name, image)| ContainerStatus {
                container_id: Some(format!("containerd://{name}")),
                image_id: image.clone(),
                image,
                name,
                ready: true,
                started: Some(true),
                restart_count: 0,
                state: Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(Time(now)),
                    }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            })
            .collect(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_ips_are_stable_and_in_the_pod_range() {
        let mut pod = Pod::default();
        pod.metadata.uid = Some("0b7f5c1e-1111-2222-3333-444455556666".to_owned());
        let ip = pod_ip(&pod);
        assert_eq!(ip, pod_ip(&pod));
        let octets: Vec<u8> = ip.split('.').map(|o| o.parse().unwrap()).collect();
        assert_eq!(octets.len(), 4);
        assert_eq!(octets[0], 100);
        assert!((64..128).contains(&octets[1]), "{ip}");
    }
}
