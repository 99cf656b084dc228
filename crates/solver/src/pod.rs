//! What the scheduler needs from a pod, read from the Kubernetes object: its effective requests
//! (as kube-scheduler computes them), node requirements, tolerations, topology spread, pod
//! (anti-)affinity and host ports.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{Container, Pod, PodSpec, Toleration},
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::LabelSelector},
};
use nodewright_api::{Operator, quantity};
use nodewright_catalog::Resources;

/// A node requirement as written in a pod (`key operator values`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Term {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

/// What a topology spread constraint does when it cannot be met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WhenUnsatisfiable {
    DoNotSchedule,
    ScheduleAnyway,
}

/// A pod topology spread constraint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Spread {
    pub topology_key: String,
    pub max_skew: i64,
    pub when_unsatisfiable: WhenUnsatisfiable,
    pub selector: Selector,
    pub min_domains: Option<i64>,
    /// `nodeAffinityPolicy: Honor` (default): only domains the pod's node requirements allow count.
    pub honor_node_affinity: bool,
    /// `nodeTaintsPolicy: Honor`: only nodes whose taints the pod tolerates count (default Ignore).
    pub honor_node_taints: bool,
}

/// A pod affinity or anti-affinity term.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AffinityTerm {
    pub anti: bool,
    /// `None` for required terms, else the preference weight.
    pub weight: Option<i32>,
    pub topology_key: String,
    pub selector: Selector,
    /// Namespaces the selector applies in; empty means the pod's own namespace.
    pub namespaces: Vec<String>,
    /// A namespace selector selecting all namespaces (`namespaceSelector: {}`).
    pub all_namespaces: bool,
}

impl AffinityTerm {
    /// The namespaces whose pods the term selects, for a pod in `own`: `None` means every
    /// namespace (`namespaceSelector: {}`); no list and no selector mean the pod's own.
    pub fn namespaces_for(&self, own: &str) -> Option<Vec<String>> {
        if self.all_namespaces {
            None
        } else if self.namespaces.is_empty() {
            Some(vec![own.to_owned()])
        } else {
            Some(self.namespaces.clone())
        }
    }
}

/// A host port a pod binds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    pub ip: String,
    pub port: i32,
    pub protocol: String,
}

impl HostPort {
    /// Two bindings conflict on the same port and protocol when either binds all addresses.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// A label selector over pod labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    pub match_labels: BTreeMap<String, String>,
    pub expressions: Vec<Term>,
    /// A `nil` selector matches nothing; an empty one matches everything.
    pub matches_nothing: bool,
}

impl Selector {
    pub fn from_k8s(selector: Option<&LabelSelector>) -> Self {
        let Some(selector) = selector else {
            return Self {
                matches_nothing: true,
                ..Self::default()
            };
        };
        let expressions = selector
            .match_expressions
            .iter()
            .flatten()
            .map(|e| Term {
                key: e.key.clone(),
                operator: e.operator.parse().unwrap_or(Operator::In),
                values: e.values.clone().unwrap_or_default(),
            })
            .collect();
        Self {
            match_labels: selector.match_labels.clone().unwrap_or_default(),
            expressions,
            matches_nothing: false,
        }
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        if self.matches_nothing {
            return false;
        }
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.expressions.iter().all(|e| {
                let value = labels.get(&e.key);
                match e.operator {
                    Operator::In => value.is_some_and(|v| e.values.contains(v)),
                    Operator::NotIn => value.is_none_or(|v| !e.values.contains(v)),
                    Operator::Exists => value.is_some(),
                    Operator::DoesNotExist => value.is_none(),
                    _ => false,
                }
            })
    }
}

/// Everything the scheduler reads from one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodFacts {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub requests: Resources,
    /// OR'ed required node-selector terms, each already including `nodeSelector`; one empty term
    /// when the pod has no node requirements.
    pub required_terms: Vec<Vec<Term>>,
    /// Preferred node-affinity terms, heaviest first.
    pub preferred_terms: Vec<(i32, Vec<Term>)>,
    pub tolerations: Vec<Toleration>,
    pub spread: Vec<Spread>,
    pub affinity: Vec<AffinityTerm>,
    pub host_ports: Vec<HostPort>,
    /// Problems that make the pod unschedulable by construction (e.g. `matchFields`).
    pub problems: Vec<String>,
}

impl PodFacts {
    /// The pod's facts with its persistent volumes' topology folded into its node terms.
    pub(crate) fn from_pod_with_volumes(pod: &Pod, volumes: &crate::volumes::VolumeIndex<'_>) -> Self {
        let mut facts = Self::from_pod(pod);
        let has_claims = pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .any(|v| v.persistent_volume_claim.is_some());
        if !has_claims {
            return facts;
        }
        match volumes.terms(pod) {
            Ok(alternatives) if alternatives.iter().all(Vec::is_empty) => {}
            Ok(alternatives) => {
                let own = std::mem::take(&mut facts.required_terms);
                facts.required_terms = own
                    .iter()
                    .flat_map(|term| {
                        alternatives.iter().map(move |alternative| {
                            let mut combined = term.clone();
                            combined.extend(alternative.iter().cloned());
                            combined
                        })
                    })
                    .collect();
            }
            Err(reason) => facts.problems.push(reason),
        }
        facts
    }

    pub fn from_pod(pod: &Pod) -> Self {
        let default_spec = PodSpec::default();
        let spec = pod.spec.as_ref().unwrap_or(&default_spec);
        let mut problems = Vec::new();
        let (required_terms, preferred_terms) = node_terms(spec, &mut problems);
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        Self {
            namespace: pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            name: pod.metadata.name.clone().unwrap_or_default(),
            requests: pod_requests(spec, &mut problems),
            required_terms,
            preferred_terms,
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            spread: spread_constraints(spec, &labels),
            affinity: affinity_terms(spec),
            host_ports: host_ports(spec),
            labels,
            problems,
        }
    }
}

/// The pod's effective requests as kube-scheduler computes them: the larger of the app containers
/// plus sidecars and the largest init step, plus pod overhead; pod-level resources win where set;
/// plus one `pods` slot.
pub fn pod_requests(spec: &PodSpec, problems: &mut Vec<String>) -> Resources {
    let mut apps = Resources::default();
    for container in &spec.containers {
        apps.add_assign(&container_requests(container, problems));
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for init in spec.init_containers.iter().flatten() {
        let requests = container_requests(init, problems);
        let step = if init.restart_policy.as_deref() == Some("Always") {
            sidecars.add_assign(&requests);
            sidecars.clone()
        } else {
            sidecars.plus(&requests)
        };
        init_peak = max_each(&init_peak, &step);
    }
    let mut total = max_each(&apps.plus(&sidecars), &init_peak);
    if let Some(pod_level) = spec.resources.as_ref().and_then(|r| r.requests.as_ref()) {
        for (name, value) in pod_level {
            if name == "cpu" || name == "memory" {
                total.set(name, parse_amount(name, value, problems));
            }
        }
    }
    for (name, value) in spec.overhead.iter().flatten() {
        let current = total.get(name);
        total.set(name, current.saturating_add(parse_amount(name, value, problems)));
    }
    total.pods = total.pods.saturating_add(1);
    total
}

fn container_requests(container: &Container, problems: &mut Vec<String>) -> Resources {
    let mut requests = Resources::default();
    let resources = container.resources.as_ref();
    // A limit without a request defaults the request to the limit, as the API server does.
    let limits = resources.and_then(|r| r.limits.as_ref());
    for (name, value) in limits.into_iter().flatten() {
        requests.set(name, parse_amount(name, value, problems));
    }
    for (name, value) in resources.and_then(|r| r.requests.as_ref()).into_iter().flatten() {
        requests.set(name, parse_amount(name, value, problems));
    }
    requests
}

fn parse_amount(name: &str, value: &Quantity, problems: &mut Vec<String>) -> i64 {
    match quantity::parse_resource(name, &value.0).map(i64::try_from) {
        Ok(Ok(amount)) if amount >= 0 => amount,
        _ => {
            problems.push(format!("invalid {name} quantity {:?}", value.0));
            0
        }
    }
}

fn max_each(a: &Resources, b: &Resources) -> Resources {
    let mut out = Resources {
        cpu_millis: a.cpu_millis.max(b.cpu_millis),
        memory_bytes: a.memory_bytes.max(b.memory_bytes),
        pods: a.pods.max(b.pods),
        ephemeral_storage_bytes: a.ephemeral_storage_bytes.max(b.ephemeral_storage_bytes),
        extended: a.extended.clone(),
    };
    for (name, amount) in &b.extended {
        let entry = out.extended.entry(name.clone()).or_insert(0);
        *entry = (*entry).max(*amount);
    }
    out
}

/// OR'ed required terms, and weighted preferred terms.
type NodeTerms = (Vec<Vec<Term>>, Vec<(i32, Vec<Term>)>);

fn node_terms(spec: &PodSpec, problems: &mut Vec<String>) -> NodeTerms {
    let selector: Vec<Term> = spec
        .node_selector
        .iter()
        .flatten()
        .map(|(k, v)| Term {
            key: k.clone(),
            operator: Operator::In,
            values: vec![v.clone()],
        })
        .collect();
    let node_affinity = spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref());
    let convert = |expressions: &[k8s_openapi::api::core::v1::NodeSelectorRequirement],
                   problems: &mut Vec<String>| {
        expressions
            .iter()
            .filter_map(|e| match e.operator.parse::<Operator>() {
                Ok(operator) => Some(Term {
                    key: e.key.clone(),
                    operator,
                    values: e.values.clone().unwrap_or_default(),
                }),
                Err(reason) => {
                    problems.push(format!("node affinity on {}: {reason}", e.key));
                    None
                }
            })
            .collect::<Vec<_>>()
    };
    let mut required = Vec::new();
    if let Some(terms) =
        node_affinity.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
    {
        for term in &terms.node_selector_terms {
            if term.match_fields.as_ref().is_some_and(|f| !f.is_empty()) {
                problems.push("node affinity matchFields is not supported".into());
            }
            let mut terms = selector.clone();
            terms.extend(convert(
                term.match_expressions.as_deref().unwrap_or_default(),
                problems,
            ));
            required.push(terms);
        }
    }
    if required.is_empty() {
        required.push(selector);
    }
    let mut preferred: Vec<(i32, Vec<Term>)> = node_affinity
        .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref())
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p.weight,
                convert(
                    p.preference.match_expressions.as_deref().unwrap_or_default(),
                    problems,
                ),
            )
        })
        .collect();
    preferred.sort_by_key(|(weight, _)| std::cmp::Reverse(*weight));
    (required, preferred)
}

fn spread_constraints(spec: &PodSpec, labels: &BTreeMap<String, String>) -> Vec<Spread> {
    spec.topology_spread_constraints
        .iter()
        .flatten()
        .map(|c| {
            let mut selector = Selector::from_k8s(c.label_selector.as_ref());
            // matchLabelKeys narrow the selector to pods sharing these label values.
            for key in c.match_label_keys.iter().flatten() {
                if let Some(value) = labels.get(key) {
                    selector.match_labels.insert(key.clone(), value.clone());
                }
            }
            Spread {
                topology_key: c.topology_key.clone(),
                max_skew: i64::from(c.max_skew.max(1)),
                when_unsatisfiable: if c.when_unsatisfiable == "ScheduleAnyway" {
                    WhenUnsatisfiable::ScheduleAnyway
                } else {
                    WhenUnsatisfiable::DoNotSchedule
                },
                selector,
                min_domains: c.min_domains.map(i64::from),
                honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            }
        })
        .collect()
}

fn affinity_terms(spec: &PodSpec) -> Vec<AffinityTerm> {
    let mut terms = Vec::new();
    let affinity = spec.affinity.as_ref();
    let mut push = |anti: bool, weight: Option<i32>, term: &k8s_openapi::api::core::v1::PodAffinityTerm| {
        terms.push(AffinityTerm {
            anti,
            weight,
            topology_key: term.topology_key.clone(),
            selector: Selector::from_k8s(term.label_selector.as_ref()),
            namespaces: term.namespaces.clone().unwrap_or_default(),
            all_namespaces: term.namespace_selector.as_ref().is_some_and(|s| {
                s.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
                    && s.match_expressions.as_ref().is_none_or(Vec::is_empty)
            }),
        });
    };
    if let Some(a) = affinity.and_then(|a| a.pod_affinity.as_ref()) {
        for t in a
            .required_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
        {
            push(false, None, t);
        }
        for t in a
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
        {
            push(false, Some(t.weight), &t.pod_affinity_term);
        }
    }
    if let Some(a) = affinity.and_then(|a| a.pod_anti_affinity.as_ref()) {
        for t in a
            .required_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
        {
            push(true, None, t);
        }
        for t in a
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
        {
            push(true, Some(t.weight), &t.pod_affinity_term);
        }
    }
    terms
}

fn host_ports(spec: &PodSpec) -> Vec<HostPort> {
    let mut ports: Vec<HostPort> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            p.host_port.filter(|port| *port > 0).map(|port| HostPort {
                ip: p
                    .host_ip
                    .clone()
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".into()),
                port,
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            })
        })
        .collect();
    ports.sort();
    ports.dedup();
    ports
}

/// Whether the tolerations tolerate a taint (`NoSchedule`/`NoExecute`/`PreferNoSchedule` alike).
pub fn tolerates(tolerations: &[Toleration], taint: &k8s_openapi::api::core::v1::Taint) -> bool {
    tolerations.iter().any(|t| {
        let key_matches = match t.key.as_deref() {
            None | Some("") => t.operator.as_deref() == Some("Exists"),
            Some(key) => key == taint.key,
        };
        let effect_matches = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == taint.effect);
        let value_matches = t.operator.as_deref() == Some("Exists")
            || t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("");
        key_matches && effect_matches && value_matches
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Taint;
    use serde_json::json;

    use super::*;

    #[allow(clippy::needless_pass_by_value)] // json! literals read best passed by value
    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({ "metadata": { "name": "p", "labels": { "app": "web" } }, "spec": spec }),
        )
        .unwrap()
    }

    #[test]
    fn requests_follow_kube_scheduler() {
        // Two app containers (1.5 cpu, 1Gi), a sidecar (0.5 cpu) and a heavy init container
        // (3 cpu, 256Mi) that runs after the sidecar started: peak init step = 0.5 + 3 = 3.5 cpu,
        // steady = 1.5 + 0.5 = 2 cpu; memory steady = 1Gi + 128Mi vs init 128Mi + 256Mi.
        let p = pod(json!({
            "containers": [
                { "name": "a", "resources": { "requests": { "cpu": "1", "memory": "512Mi" } } },
                { "name": "b", "resources": { "requests": { "cpu": "500m", "memory": "512Mi" } } }
            ],
            "initContainers": [
                { "name": "sidecar", "restartPolicy": "Always", "resources": { "requests": { "cpu": "500m", "memory": "128Mi" } } },
                { "name": "migrate", "resources": { "requests": { "cpu": "3", "memory": "256Mi" } } }
            ],
            "overhead": { "cpu": "100m" }
        }));
        let facts = PodFacts::from_pod(&p);
        assert_eq!(facts.requests.cpu_millis, 3600);
        assert_eq!(facts.requests.memory_bytes, (1024 + 128) << 20);
        assert_eq!(facts.requests.pods, 1);
        assert!(facts.problems.is_empty());
    }

    #[test]
    fn limits_default_requests_and_pod_level_resources_win() {
        let p = pod(json!({
            "containers": [{ "name": "a", "resources": { "limits": { "cpu": "2", "nvidia.com/gpu": "1" } } }],
            "resources": { "requests": { "memory": "3Gi" } }
        }));
        let facts = PodFacts::from_pod(&p);
        assert_eq!(facts.requests.cpu_millis, 2000);
        assert_eq!(facts.requests.get("nvidia.com/gpu"), 1);
        assert_eq!(facts.requests.memory_bytes, 3 << 30);
    }

    #[test]
    fn node_terms_merge_the_node_selector() {
        let p = pod(json!({
            "containers": [{ "name": "a" }],
            "nodeSelector": { "kubernetes.io/arch": "arm64" },
            "affinity": { "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [
                    { "matchExpressions": [{ "key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1a"] }] },
                    { "matchExpressions": [{ "key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1b"] }] }
                ] },
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    { "weight": 1, "preference": { "matchExpressions": [{ "key": "a", "operator": "Exists" }] } },
                    { "weight": 50, "preference": { "matchExpressions": [{ "key": "b", "operator": "Exists" }] } }
                ]
            } }
        }));
        let facts = PodFacts::from_pod(&p);
        assert_eq!(facts.required_terms.len(), 2);
        assert!(
            facts
                .required_terms
                .iter()
                .all(|t| t.iter().any(|r| r.key == "kubernetes.io/arch"))
        );
        assert_eq!(facts.preferred_terms[0].0, 50, "heaviest preference first");
    }

    #[test]
    fn tolerations_and_selectors() {
        let taint = Taint {
            key: "gpu".into(),
            value: Some("true".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        };
        let exists = Toleration {
            key: Some("gpu".into()),
            operator: Some("Exists".into()),
            ..Toleration::default()
        };
        let wrong_value = Toleration {
            key: Some("gpu".into()),
            value: Some("false".into()),
            ..Toleration::default()
        };
        let everything = Toleration {
            operator: Some("Exists".into()),
            ..Toleration::default()
        };
        assert!(tolerates(&[exists], &taint));
        assert!(!tolerates(&[wrong_value], &taint));
        assert!(tolerates(&[everything], &taint));
        let selector = Selector::from_k8s(Some(
            &serde_json::from_value(json!({ "matchLabels": { "app": "web" } })).unwrap(),
        ));
        assert!(selector.matches(&BTreeMap::from([("app".into(), "web".into())])));
        assert!(!Selector::from_k8s(None).matches(&BTreeMap::new()));
        let p = pod(
            json!({ "containers": [{ "name": "a", "ports": [{ "containerPort": 80, "hostPort": 8080 }] }] }),
        );
        assert_eq!(
            PodFacts::from_pod(&p).host_ports,
            [HostPort {
                ip: "0.0.0.0".into(),
                port: 8080,
                protocol: "TCP".into()
            }]
        );
    }
}
