//! Whether a DaemonSet's pod belongs on a node, as the DaemonSet controller decides it (its
//! `NodeShouldRunDaemonPod`): the node's labels must satisfy the pod's `nodeSelector` and
//! required node affinity, and the pod must tolerate the node's `NoSchedule` and `NoExecute`
//! taints, counting the tolerations the controller adds to every daemon pod. Resources are not
//! checked: the real controller leaves that to the scheduler and kubelet too.

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Toleration};

/// Where a daemon pod stands with a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Fit {
    /// A pod should be created there.
    pub(super) should_run: bool,
    /// A pod already there may stay (only a `NoExecute` taint or a selector mismatch evicts).
    pub(super) should_continue: bool,
}

/// The tolerations the DaemonSet controller adds to its pods, so that daemons keep running
/// through node conditions that repel ordinary pods. `network-unavailable` is added only to
/// host-network pods, as the real controller does (others need the network they would lack).
pub(super) fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        let toleration = Toleration {
            key: Some(key.to_owned()),
            operator: Some("Exists".to_owned()),
            effect: Some(effect.to_owned()),
            ..Toleration::default()
        };
        if !tolerations.contains(&toleration) {
            tolerations.push(toleration);
        }
    }
}

/// How a pod with `spec` (its daemon tolerations already added) fits `node`. A node being
/// deleted takes no new daemon pod, but keeps the ones it has until it goes, as in a cluster.
pub(super) fn fit(spec: &PodSpec, node: &Node) -> Fit {
    if !selects(spec, node) {
        return Fit {
            should_run: false,
            should_continue: false,
        };
    }
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let untolerated = |effect: &str| {
        taints
            .iter()
            .any(|t| t.effect == effect && !nodewright_solver::pod::tolerates(tolerations, t))
    };
    let evicted = untolerated("NoExecute");
    Fit {
        should_run: !evicted && !untolerated("NoSchedule") && node.metadata.deletion_timestamp.is_none(),
        should_continue: !evicted,
    }
}

/// The node's labels satisfy the pod's `nodeSelector` and required node affinity.
fn selects(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.metadata.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| label(k) == Some(v.as_str()));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref());
    let name = node.metadata.name.as_deref().unwrap_or_default();
    selector_ok
        && required.is_none_or(|r| {
            r.node_selector_terms
                .iter()
                .any(|term| term_matches(term, &label, name))
        })
}

/// A node selector term: every expression on labels and every field requirement holds. A term
/// with neither matches nothing, as in Kubernetes; terms are ORed by the caller.
fn term_matches<'a>(
    term: &NodeSelectorTerm,
    label: &dyn Fn(&str) -> Option<&'a str>,
    node_name: &str,
) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions.iter().all(|r| requirement_matches(r, label(&r.key)))
        && fields.iter().all(|r| {
            // `metadata.name` is the only field node selectors support.
            r.key == "metadata.name"
                && matches!(r.operator.as_str(), "In" | "NotIn")
                && requirement_matches(r, Some(node_name))
        })
}

/// One requirement against the value of its key (`None` when the node lacks the label).
fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |v: &str| v.parse::<i64>().ok();
    let bound = || match values {
        [one] => number(one),
        _ => None,
    };
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| values.iter().all(|x| x != v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => matches!((value.and_then(number), bound()), (Some(v), Some(b)) if v > b),
        "Lt" => matches!((value.and_then(number), bound()), (Some(v), Some(b)) if v < b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::core::v1::{Affinity, NodeAffinity, NodeSelector, NodeSpec},
        apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    };

    use k8s_openapi::api::core::v1::Taint;

    use super::*;

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, v, e)| Taint {
                            key: (*k).into(),
                            value: Some((*v).into()),
                            effect: (*e).into(),
                            ..Taint::default()
                        })
                        .collect(),
                ),
                ..NodeSpec::default()
            }),
            status: None,
        }
    }

    fn daemon_spec() -> PodSpec {
        let mut spec = PodSpec::default();
        add_daemon_tolerations(&mut spec);
        spec
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    fn with_terms(terms: Vec<NodeSelectorTerm>) -> PodSpec {
        let mut spec = daemon_spec();
        spec.affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: terms,
                }),
                ..NodeAffinity::default()
            }),
            ..Affinity::default()
        });
        spec
    }

    fn expressions(reqs: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: Some(reqs),
            match_fields: None,
        }
    }

    const BOTH: Fit = Fit {
        should_run: true,
        should_continue: true,
    };
    const NEITHER: Fit = Fit {
        should_run: false,
        should_continue: false,
    };

    #[test]
    fn untolerated_no_schedule_blocks_new_pods_but_keeps_old_ones() {
        let spec = daemon_spec();
        assert_eq!(fit(&spec, &node("a", &[], &[])), BOTH);
        let tainted = node("b", &[], &[("dedicated", "gpu", "NoSchedule")]);
        assert_eq!(
            fit(&spec, &tainted),
            Fit {
                should_run: false,
                should_continue: true
            }
        );
        assert_eq!(
            fit(&spec, &node("c", &[], &[("dedicated", "gpu", "NoExecute")])),
            NEITHER
        );
        // PreferNoSchedule never keeps a daemon away.
        assert_eq!(
            fit(&spec, &node("d", &[], &[("x", "", "PreferNoSchedule")])),
            BOTH
        );
        let mut tolerant = daemon_spec();
        tolerant.tolerations.as_mut().unwrap().push(Toleration {
            key: Some("dedicated".into()),
            value: Some("gpu".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        });
        assert_eq!(fit(&tolerant, &tainted), BOTH);
        let wrong_value = node("e", &[], &[("dedicated", "cpu", "NoSchedule")]);
        assert!(!fit(&tolerant, &wrong_value).should_run);
    }

    #[test]
    fn daemon_tolerations_cover_node_conditions() {
        let spec = daemon_spec();
        for (key, effect) in [
            ("node.kubernetes.io/not-ready", "NoExecute"),
            ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/not-ready", "NoSchedule"),
            ("node.kubernetes.io/unschedulable", "NoSchedule"),
            ("node.kubernetes.io/memory-pressure", "NoSchedule"),
            ("node.kubernetes.io/disk-pressure", "NoSchedule"),
            ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ] {
            let n = node("n", &[], &[(key, "", effect)]);
            let expect_run = !(key == "node.kubernetes.io/not-ready" && effect == "NoSchedule");
            assert_eq!(fit(&spec, &n).should_run, expect_run, "{key}:{effect}");
        }
        let network = node(
            "n",
            &[],
            &[("node.kubernetes.io/network-unavailable", "", "NoSchedule")],
        );
        assert!(!fit(&spec, &network).should_run);
        let mut host = PodSpec {
            host_network: Some(true),
            ..PodSpec::default()
        };
        add_daemon_tolerations(&mut host);
        add_daemon_tolerations(&mut host);
        assert!(fit(&host, &network).should_run);
        assert_eq!(host.tolerations.as_ref().unwrap().len(), 7, "added once");
    }

    #[test]
    fn an_operator_exists_toleration_without_key_tolerates_everything() {
        let spec = PodSpec {
            tolerations: Some(vec![Toleration {
                operator: Some("Exists".into()),
                ..Toleration::default()
            }]),
            ..PodSpec::default()
        };
        assert_eq!(fit(&spec, &node("n", &[], &[("a", "b", "NoExecute")])), BOTH);
    }

    #[test]
    fn node_selector_and_affinity_operators() {
        let n = node("n1", &[("zone", "a"), ("cpus", "8")], &[]);
        let mut selected = daemon_spec();
        selected.node_selector = Some([("zone".to_owned(), "a".to_owned())].into());
        assert_eq!(fit(&selected, &n), BOTH);
        selected.node_selector = Some([("zone".to_owned(), "b".to_owned())].into());
        assert_eq!(fit(&selected, &n), NEITHER);

        let cases = [
            (req("zone", "In", &["a", "b"]), true),
            (req("zone", "In", &["b"]), false),
            (req("zone", "NotIn", &["b"]), true),
            (req("missing", "NotIn", &["b"]), true),
            (req("zone", "NotIn", &["a"]), false),
            (req("zone", "Exists", &[]), true),
            (req("missing", "Exists", &[]), false),
            (req("missing", "DoesNotExist", &[]), true),
            (req("zone", "DoesNotExist", &[]), false),
            (req("cpus", "Gt", &["4"]), true),
            (req("cpus", "Gt", &["8"]), false),
            (req("cpus", "Lt", &["16"]), true),
            (req("cpus", "Lt", &["8"]), false),
            (req("zone", "Gt", &["1"]), false),
            (req("cpus", "Gt", &["1", "2"]), false),
            (req("zone", "Bogus", &["a"]), false),
        ];
        for (r, expected) in cases {
            let spec = with_terms(vec![expressions(vec![r.clone()])]);
            assert_eq!(fit(&spec, &n).should_run, expected, "{r:?}");
        }
    }

    #[test]
    fn affinity_terms_are_ored_and_fields_match_the_node_name() {
        let n = node("n1", &[("zone", "a")], &[]);
        let miss = expressions(vec![req("zone", "In", &["b"])]);
        let hit = expressions(vec![req("zone", "In", &["a"])]);
        assert!(fit(&with_terms(vec![miss.clone(), hit]), &n).should_run);
        assert!(!fit(&with_terms(vec![miss]), &n).should_run);
        assert!(
            !fit(&with_terms(vec![]), &n).should_run,
            "no term matches nothing"
        );
        assert!(
            !fit(&with_terms(vec![NodeSelectorTerm::default()]), &n).should_run,
            "an empty term matches nothing"
        );
        let by_name = |op: &str, name: &str| {
            with_terms(vec![NodeSelectorTerm {
                match_expressions: None,
                match_fields: Some(vec![req("metadata.name", op, &[name])]),
            }])
        };
        assert!(fit(&by_name("In", "n1"), &n).should_run);
        assert!(!fit(&by_name("In", "n2"), &n).should_run);
        assert!(fit(&by_name("NotIn", "n2"), &n).should_run);
        let other_field = with_terms(vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req("metadata.uid", "In", &["n1"])]),
        }]);
        assert!(!fit(&other_field, &n).should_run);
    }

    #[test]
    fn a_node_being_deleted_takes_no_new_daemon_pod() {
        let mut n = node("n", &[], &[]);
        n.metadata.deletion_timestamp = Some(Time("2024-01-01T00:00:00Z".parse().unwrap()));
        assert_eq!(
            fit(&daemon_spec(), &n),
            Fit {
                should_run: false,
                should_continue: true
            }
        );
    }
}
