//! The DaemonSet controller: one pod on every node the pod fits (see `nodefit`), none on the
//! others, replaced node by node when the template changes, and the status `kubectl get ds`
//! shows.
//!
//! Pods are created already bound (`spec.nodeName`). The real controller instead pins each pod
//! to its node with a required node affinity on `metadata.name` and lets kube-scheduler bind it;
//! in the simulation the outcome is the same pod on the same node, without a scheduling round.
//! Other simplifications: the template hash label (`controller-revision-hash`) is computed
//! directly, without ControllerRevision objects; rolling updates honour `maxUnavailable` but not
//! `maxSurge`; finished pods (Failed, or Succeeded, which a daemon should never be) are deleted
//! and replaced at once, without the real controller's back-off; orphans are not adopted.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::{
    api::{
        apps::v1::{DaemonSet, DaemonSetStatus},
        core::v1::{Node, Pod, PodSpec},
    },
    apimachinery::pkg::util::intstr::IntOrString,
};

use super::{
    CONTROLLER_REVISION_HASH_LABEL,
    hash::template_hash,
    nodefit::{self, Fit},
    nonzero,
    pods::{self, PodIndex},
    wrote,
};
use crate::{
    dataplane::{Ctx, DataPlaneError},
    store::Subresource,
};

/// The label naming the DaemonSet generation a pod was made from.
const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

pub(super) fn reconcile(ctx: &Ctx<'_>, pods: &PodIndex) -> Result<usize, DataPlaneError> {
    let sets: Vec<DaemonSet> = ctx.list("apps", "daemonsets")?;
    if sets.is_empty() {
        return Ok(0);
    }
    let nodes: Vec<Node> = ctx.list("", "nodes")?;
    let mut writes = 0;
    for ds in &sets {
        writes += sync(ctx, ds, &nodes, pods)?;
    }
    Ok(writes)
}

/// What one pass decided for one DaemonSet.
#[derive(Debug, Default)]
struct Plan<'a> {
    /// Nodes that get a pod.
    create: Vec<&'a str>,
    /// Pods to delete, with the grace period (0 for pods whose node is gone).
    delete: BTreeMap<&'a str, Option<i64>>,
    status: DaemonSetStatus,
}

fn sync(ctx: &Ctx<'_>, ds: &DaemonSet, nodes: &[Node], pods: &PodIndex) -> Result<usize, DataPlaneError> {
    let (Some(uid), Some(name), Some(spec)) = (&ds.metadata.uid, &ds.metadata.name, &ds.spec) else {
        return Ok(0);
    };
    let ns = ds.metadata.namespace.as_deref().unwrap_or_default();
    let hash = template_hash(&spec.template, None);
    let mut pod_spec = spec.template.spec.clone().unwrap_or_default();
    nodefit::add_daemon_tolerations(&mut pod_spec);
    let owned = pods.owned_by(uid);
    let plan = plan(ds, &pod_spec, &hash, nodes, &owned, ctx.now());
    let mut writes = 0;
    if ds.metadata.deletion_timestamp.is_none() {
        let Some(reference) = pods::controller_ref("apps/v1", "DaemonSet", &ds.metadata) else {
            return Ok(0);
        };
        let mut template = spec.template.clone();
        let labels = template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default);
        labels.insert(CONTROLLER_REVISION_HASH_LABEL.to_owned(), hash.clone());
        if let Some(generation) = ds.metadata.generation {
            labels.insert(TEMPLATE_GENERATION_LABEL.to_owned(), generation.to_string());
        }
        for node in &plan.create {
            let mut pod = pods::from_template(&template, ns, name, reference.clone());
            pod.spec = Some(PodSpec {
                node_name: Some((*node).to_owned()),
                ..pod_spec.clone()
            });
            writes += wrote(ctx.create("", "pods", ns, &pod)?);
        }
        for (pod_name, grace) in &plan.delete {
            writes += wrote(ctx.delete("", "pods", ns, pod_name, *grace)?);
        }
    }
    if ds.status.as_ref() != Some(&plan.status) {
        writes += wrote(ctx.update::<DaemonSet>(
            "apps",
            "daemonsets",
            ns,
            name,
            Subresource::Status,
            &mut |ds| {
                ds.status = Some(plan.status.clone());
            },
        )?);
    }
    Ok(writes)
}

/// The pods to create and delete and the status, from the nodes and the DaemonSet's pods.
fn plan<'a>(
    ds: &DaemonSet,
    pod_spec: &PodSpec,
    hash: &str,
    nodes: &'a [Node],
    owned: &[&'a Pod],
    now: Timestamp,
) -> Plan<'a> {
    let min_ready = ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let available = |p: &Pod| pods::is_available(p, min_ready, now);
    let mut plan = Plan::default();
    let on_node = by_node(owned, nodes, &mut plan.delete);
    let mut rollout = Rollout::default();
    let status = &mut plan.status;
    for node in nodes {
        let Some(node_name) = node.metadata.name.as_deref() else {
            continue;
        };
        let Fit {
            should_run,
            should_continue,
        } = nodefit::fit(pod_spec, node);
        let here = on_node.get(node_name).map(Vec::as_slice).unwrap_or_default();
        let running: Vec<&Pod> = here
            .iter()
            .copied()
            .filter(|p| !pods::is_terminating(p))
            .collect();
        if should_run {
            status.desired_number_scheduled += 1;
            if let Some(oldest) = here.first() {
                status.current_number_scheduled += 1;
                status.number_ready += i32::from(pods::is_ready(oldest));
                *status.number_available.get_or_insert(0) += i32::from(available(oldest));
                *status.updated_number_scheduled.get_or_insert(0) += i32::from(is_current(oldest, hash));
            } else {
                plan.create.push(node_name);
            }
        } else if !here.is_empty() {
            status.number_misscheduled += 1;
        }
        if should_continue {
            // More than one daemon on a node: the oldest stays.
            for pod in running.iter().skip(1) {
                plan.delete.insert(name(pod), None);
            }
            let first = running.first().copied();
            rollout.note(
                first,
                should_run,
                first.is_some_and(|p| is_current(p, hash)),
                first.is_some_and(available),
            );
        } else {
            for pod in &running {
                plan.delete.insert(name(pod), None);
            }
        }
    }
    if rolling(ds) {
        rollout.replace(
            max_unavailable(ds, status.desired_number_scheduled),
            &mut plan.delete,
        );
    }
    let available_count = status.number_available.unwrap_or(0);
    status.number_available = nonzero(available_count);
    status.updated_number_scheduled = status.updated_number_scheduled.and_then(nonzero);
    status.number_unavailable = nonzero(status.desired_number_scheduled.saturating_sub(available_count));
    status.observed_generation = ds.metadata.generation;
    status.collision_count = ds.status.as_ref().and_then(|s| s.collision_count);
    status.conditions = ds.status.as_ref().and_then(|s| s.conditions.clone());
    plan
}

/// The DaemonSet's pods on each existing node, oldest first. Pods whose node is gone are
/// deleted at once (the pod garbage collector's job, done here too so the daemon goes with its
/// node) and finished ones deleted to be replaced; a terminating pod still holds its node until
/// it is gone, so a node never runs two daemons at once.
fn by_node<'a>(
    owned: &[&'a Pod],
    nodes: &[Node],
    delete: &mut BTreeMap<&'a str, Option<i64>>,
) -> BTreeMap<&'a str, Vec<&'a Pod>> {
    let existing: BTreeSet<&str> = nodes.iter().filter_map(|n| n.metadata.name.as_deref()).collect();
    let mut on_node: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    for &pod in owned {
        let (Some(node), Some(pod_name)) = (pods::node_name(pod), pod.metadata.name.as_deref()) else {
            continue;
        };
        if !existing.contains(node) {
            delete.insert(pod_name, Some(0));
        } else if !pods::is_finished(pod) {
            on_node.entry(node).or_default().push(pod);
        } else if !pods::is_terminating(pod) {
            delete.insert(pod_name, None);
        }
    }
    for list in on_node.values_mut() {
        list.sort_by_key(|p| {
            (
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                p.metadata.name.clone(),
            )
        });
    }
    on_node
}

/// A rolling update's view of the nodes that keep their daemon (kube's `rollingUpdate` without
/// surge).
#[derive(Debug, Default)]
struct Rollout<'a> {
    /// Nodes whose current daemon is missing or not available.
    unavailable: usize,
    outdated_available: Vec<&'a str>,
    outdated_unavailable: Vec<&'a str>,
}

impl<'a> Rollout<'a> {
    /// One node's running daemon (if any).
    fn note(&mut self, pod: Option<&'a Pod>, should_run: bool, current: bool, available: bool) {
        match pod {
            None => self.unavailable += usize::from(should_run),
            Some(pod) if !current && available => self.outdated_available.push(name(pod)),
            Some(pod) if !current => self.outdated_unavailable.push(name(pod)),
            Some(_) => self.unavailable += usize::from(!available),
        }
    }

    /// Outdated pods that are unavailable anyway go at once; available ones only while the
    /// number of unavailable daemons stays within `max_unavailable`.
    fn replace(self, max_unavailable: usize, delete: &mut BTreeMap<&'a str, Option<i64>>) {
        let budget = max_unavailable.saturating_sub(self.unavailable);
        for pod in self
            .outdated_unavailable
            .into_iter()
            .chain(self.outdated_available.into_iter().take(budget))
        {
            delete.entry(pod).or_insert(None);
        }
    }
}

fn is_current(pod: &Pod, hash: &str) -> bool {
    label(pod, CONTROLLER_REVISION_HASH_LABEL) == Some(hash)
}

fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// `updateStrategy` is RollingUpdate (the default) rather than OnDelete.
fn rolling(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

/// `rollingUpdate.maxUnavailable` of the desired pods (default 1; a percentage rounds up, as
/// kube rounds it; at least 1, since this controller does not surge).
fn max_unavailable(ds: &DaemonSet, desired: i32) -> usize {
    let value = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.max_unavailable.clone())
        .unwrap_or(IntOrString::Int(1));
    let n = match value {
        IntOrString::Int(n) => i64::from(n),
        IntOrString::String(s) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .map_or(1, |p| (p.saturating_mul(i64::from(desired)) + 99).div_euclid(100)),
    };
    usize::try_from(n.max(1)).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::{
            apps::v1::{DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet},
            core::v1::{NodeSpec, PodCondition, PodStatus, PodTemplateSpec, Taint},
        },
        apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    };

    use super::*;

    fn node(name: &str, taint: Option<&str>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                taints: taint.map(|key| {
                    vec![Taint {
                        key: key.into(),
                        effect: "NoSchedule".into(),
                        ..Taint::default()
                    }]
                }),
                ..NodeSpec::default()
            }),
            status: None,
        }
    }

    fn pod(name: &str, node: &str, hash: &str, ready: bool, created: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([(CONTROLLER_REVISION_HASH_LABEL.to_owned(), hash.to_owned())].into()),
                creation_timestamp: Some(Time(created.parse().unwrap())),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }

    fn ds(max_unavailable: Option<IntOrString>) -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta {
                generation: Some(3),
                ..ObjectMeta::default()
            },
            spec: Some(DaemonSetSpec {
                template: PodTemplateSpec::default(),
                update_strategy: Some(DaemonSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDaemonSet {
                        max_unavailable,
                        ..RollingUpdateDaemonSet::default()
                    }),
                }),
                ..DaemonSetSpec::default()
            }),
            status: None,
        }
    }

    fn now() -> Timestamp {
        "2024-01-01T01:00:00Z".parse().unwrap()
    }

    fn spec() -> PodSpec {
        let mut spec = PodSpec::default();
        nodefit::add_daemon_tolerations(&mut spec);
        spec
    }

    #[test]
    fn creates_on_fitting_nodes_and_removes_strays() {
        let nodes = [node("a", None), node("b", None), node("tainted", Some("gpu"))];
        let pods = [
            pod("on-a", "a", "h", true, "2024-01-01T00:00:00Z"),
            pod("on-a-dup", "a", "h", true, "2024-01-01T00:05:00Z"),
            pod("on-gone", "gone", "h", true, "2024-01-01T00:00:00Z"),
            pod("on-tainted", "tainted", "h", true, "2024-01-01T00:00:00Z"),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let plan = plan(&ds(None), &spec(), "h", &nodes, &refs, now());
        assert_eq!(plan.create, ["b"]);
        let deletes: Vec<(&str, Option<i64>)> = plan.delete.iter().map(|(k, v)| (*k, *v)).collect();
        // The pod on the tainted node stays: NoSchedule only keeps new pods away.
        assert_eq!(deletes, [("on-a-dup", None), ("on-gone", Some(0))]);
        let s = &plan.status;
        assert_eq!((s.desired_number_scheduled, s.current_number_scheduled), (2, 1));
        assert_eq!(
            (s.number_ready, s.number_available, s.number_misscheduled),
            (1, Some(1), 1)
        );
        assert_eq!(
            (s.updated_number_scheduled, s.number_unavailable),
            (Some(1), Some(1))
        );
        assert_eq!(s.observed_generation, Some(3));
    }

    #[test]
    fn a_rolling_update_replaces_within_max_unavailable() {
        let nodes = [node("a", None), node("b", None), node("c", None), node("d", None)];
        let pods = [
            pod("a-old", "a", "old", true, "2024-01-01T00:00:00Z"),
            pod("b-old", "b", "old", true, "2024-01-01T00:00:00Z"),
            pod("c-old-unready", "c", "old", false, "2024-01-01T00:00:00Z"),
            pod("d-new", "d", "new", true, "2024-01-01T00:00:00Z"),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let plan = plan(&ds(None), &spec(), "new", &nodes, &refs, now());
        let deletes: Vec<&str> = plan.delete.keys().copied().collect();
        assert_eq!(
            deletes,
            ["a-old", "c-old-unready"],
            "the unready one plus one within the budget of 1"
        );
        assert_eq!(plan.status.updated_number_scheduled, Some(1));

        let half = plan_for(&ds(Some(IntOrString::String("50%".into()))), &nodes, &refs);
        assert_eq!(half, ["a-old", "b-old", "c-old-unready"]);
        let mut on_delete = ds(None);
        on_delete.spec.as_mut().unwrap().update_strategy = Some(DaemonSetUpdateStrategy {
            type_: Some("OnDelete".into()),
            rolling_update: None,
        });
        assert!(plan_for(&on_delete, &nodes, &refs).is_empty());
    }

    fn plan_for(ds: &DaemonSet, nodes: &[Node], pods: &[&Pod]) -> Vec<String> {
        plan(ds, &spec(), "new", nodes, pods, now())
            .delete
            .keys()
            .map(|k| (*k).to_owned())
            .collect()
    }

    #[test]
    fn finished_pods_are_replaced_and_terminating_ones_hold_their_node() {
        let nodes = [node("a", None), node("b", None)];
        let mut failed = pod("failed", "a", "h", false, "2024-01-01T00:00:00Z");
        failed.status.as_mut().unwrap().phase = Some("Failed".into());
        let mut terminating = pod("terminating", "b", "h", true, "2024-01-01T00:00:00Z");
        terminating.metadata.deletion_timestamp = Some(Time(now()));
        let pods = [failed, terminating];
        let refs: Vec<&Pod> = pods.iter().collect();
        let plan = plan(&ds(None), &spec(), "h", &nodes, &refs, now());
        assert_eq!(plan.create, ["a"]);
        assert_eq!(plan.delete.keys().copied().collect::<Vec<_>>(), ["failed"]);
    }

    #[test]
    fn max_unavailable_percentages_round_up() {
        assert_eq!(max_unavailable(&ds(None), 10), 1);
        assert_eq!(
            max_unavailable(&ds(Some(IntOrString::String("25%".into()))), 10),
            3
        );
        assert_eq!(max_unavailable(&ds(Some(IntOrString::Int(0))), 10), 1);
    }
}
