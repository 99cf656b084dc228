//! Turns a [`Problem`] into the solver's working form: interned requirements, dense resource
//! vectors, pod classes (identical pods share one), instance types with DaemonSet overhead taken
//! off their allocatable, and the topology groups pods count into.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};
use nodewright_api::{labels, quantity};
use nodewright_catalog::{Price, Resources};

use crate::{
    fasthash::FastMap,
    intern::{Interner, Sym},
    pod::{AffinityTerm, HostPort, PodFacts, Selector, Term, WhenUnsatisfiable, tolerates},
    problem::{PreferencePolicy, Problem},
    requirements::{Requirement, Requirements},
    resources::{Dimensions, Res},
};

/// Label keys the solver treats specially.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keys {
    pub zone: Sym,
    pub capacity_type: Sym,
    pub instance_type: Sym,
    pub hostname: Sym,
    pub nodepool: Sym,
}

#[derive(Debug, Clone)]
pub(crate) struct OfferingC {
    pub zone: Sym,
    pub capacity_type: Sym,
    pub price: Price,
    pub reservation: Option<(String, u32)>,
}

/// An instance type within one NodePool.
#[derive(Debug, Clone)]
pub(crate) struct TypeC {
    /// Shared, so listing a type on thousands of planned nodes costs no allocation.
    pub name: std::sync::Arc<str>,
    /// Single-valued labels, sorted by key.
    pub labels: Vec<(Sym, Sym)>,
    /// Available offerings, cheapest first.
    pub offerings: Vec<OfferingC>,
    /// Allocatable minus the DaemonSet overhead that lands on this type.
    pub alloc: Res,
    pub capacity: Res,
    pub daemon: Res,
}

impl TypeC {
    pub(crate) fn label(&self, key: Sym) -> Option<Sym> {
        self.labels
            .binary_search_by_key(&key, |(k, _)| *k)
            .ok()
            .map(|i| self.labels[i].1)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Pool {
    pub name: String,
    pub weight: i32,
    pub requirements: Requirements,
    pub taints: Vec<Taint>,
    pub types: Vec<TypeC>,
    /// Limits per dimension (`None`: unlimited), after subtracting what the pool already has.
    pub remaining: Vec<Option<i64>>,
    pub remaining_nodes: Option<i64>,
}

/// A topology spread constraint, compiled.
#[derive(Debug, Clone)]
pub(crate) struct SpreadC {
    pub group: usize,
    pub key: Sym,
    pub max_skew: i64,
    pub required: bool,
    pub min_domains: Option<i64>,
    pub honor_node_affinity: bool,
    /// `nodeTaintsPolicy: Honor`: domains only of nodes (and pools) whose taints the pod tolerates.
    pub honor_node_taints: bool,
}

/// Every pod's facts. Replicas of one workload arrive together with identical specs, labels and
/// namespace, so a pod equal to the one before it reuses that pod's facts instead of re-reading
/// requests, terms and volumes.
fn pod_facts(pods: &[Pod], volumes: &crate::volumes::VolumeIndex<'_>, parallel: bool) -> Vec<PodFacts> {
    // Reading pods is independent per pod: a large batch is read in two halves on two threads.
    if parallel && pods.len() >= PARALLEL_FACTS_FROM {
        let (first, second) = pods.split_at(pods.len() / 2);
        return std::thread::scope(|scope| {
            let later = scope.spawn(|| pod_facts_in_order(second, volumes));
            let mut facts = pod_facts_in_order(first, volumes);
            // A panic in the other half is re-raised here, as it would be without the thread.
            facts.extend(
                later
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
            facts
        });
    }
    pod_facts_in_order(pods, volumes)
}

/// From this many pods, [`pod_facts`] uses a second thread.
const PARALLEL_FACTS_FROM: usize = 512;

fn pod_facts_in_order(pods: &[Pod], volumes: &crate::volumes::VolumeIndex<'_>) -> Vec<PodFacts> {
    let mut facts: Vec<PodFacts> = Vec::with_capacity(pods.len());
    for (i, pod) in pods.iter().enumerate() {
        let same_as_previous = i > 0 && {
            let previous = &pods[i - 1];
            pod.spec == previous.spec
                && pod.metadata.labels == previous.metadata.labels
                && pod.metadata.namespace == previous.metadata.namespace
        };
        match facts.last() {
            Some(previous) if same_as_previous => {
                let mut reused = previous.clone();
                reused.name = pod.metadata.name.clone().unwrap_or_default();
                facts.push(reused);
            }
            _ => facts.push(PodFacts::from_pod_with_volumes(pod, volumes)),
        }
    }
    facts
}

/// A pod (anti-)affinity term, compiled.
#[derive(Debug, Clone)]
pub(crate) struct AffinityC {
    pub group: usize,
    pub key: Sym,
    pub anti: bool,
    pub required: bool,
    /// Preference weight (0 for required terms).
    pub weight: i32,
}

/// Pods that schedule alike; a pod class.
#[derive(Debug, Clone)]
pub(crate) struct Class {
    pub requests: Res,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// OR'ed required node terms.
    pub terms: Vec<Requirements>,
    /// Preferred node terms, heaviest first.
    pub preferred: Vec<Requirements>,
    pub tolerations: Vec<Toleration>,
    pub spread: Vec<SpreadC>,
    pub affinity: Vec<AffinityC>,
    pub host_ports: Vec<HostPort>,
    pub problems: Vec<String>,
    /// Pod indices, in input order.
    pub pods: Vec<usize>,
    /// Classes with equal node requirements and tolerations and no topology constraints share a
    /// family: they can fill the same nodes, so node shapes are chosen for the family.
    pub family: usize,
}

impl Class {
    pub(crate) fn constrained(&self) -> bool {
        !self.spread.is_empty() || !self.affinity.is_empty() || !self.host_ports.is_empty()
    }
}

/// The values a topology key can take: overall, per pool, and per existing node.
#[derive(Debug, Clone, Default)]
pub(crate) struct Domains {
    pub all: Vec<Sym>,
    pub by_pool: Vec<Vec<Sym>>,
    pub by_node: Vec<(usize, Sym)>,
}

/// A set of pods counted together for topology: a selector within namespaces, on a key.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub key: Sym,
    pub selector: Selector,
    /// `None`: all namespaces.
    pub namespaces: Option<Vec<String>>,
}

impl Group {
    pub(crate) fn counts(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|ns| ns.iter().any(|n| n == namespace))
            && self.selector.matches(labels)
    }
}

/// A node that already exists.
#[derive(Debug, Clone)]
pub(crate) struct Existing {
    pub name: String,
    pub requirements: Requirements,
    pub taints: Vec<Taint>,
    pub remaining: Res,
    pub host_ports: Vec<HostPort>,
    pub hostname: Sym,
    pub initialized: bool,
}

#[derive(Debug)]
pub(crate) struct Compiled {
    pub interner: Interner,
    pub dims: Dimensions,
    pub keys: Keys,
    well_known: Vec<Sym>,
    pub pools: Vec<Pool>,
    pub classes: Vec<Class>,
    pub groups: Vec<Group>,
    pub existing: Vec<Existing>,
    /// Members counted per (group, domain) on existing nodes.
    pub initial_counts: FastMap<(usize, Sym), i64>,
    /// Existing pods with required anti-affinity: (group, domain) their terms forbid.
    pub existing_anti: Vec<(usize, Sym)>,
    pub pod_count: usize,
    /// Every value a topology key can take, per key used by a spread or affinity term.
    pub universes: FastMap<Sym, Domains>,
    /// Classes of each family.
    pub families: Vec<Vec<usize>>,
    pub min_values_policy: crate::problem::MinValuesPolicy,
    /// Per (pool, node requirements): the pool's types those requirements allow, cheapest allowed
    /// offering first. Nodes with equal requirements share one list.
    /// Behind a mutex because the two shaping runs of a large solve share it from two threads.
    type_lists: Mutex<FastMap<TypeListKey, Arc<[u32]>>>,
}

type TypeListKey = (usize, Requirements);

impl Compiled {
    pub(crate) fn is_well_known(&self, key: Sym) -> bool {
        self.well_known.binary_search(&key).is_ok()
    }

    fn type_lists(&self) -> std::sync::MutexGuard<'_, FastMap<TypeListKey, Arc<[u32]>>> {
        // The map only caches whole entries; a panicking holder cannot leave one half-written.
        self.type_lists
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The types of `pool` that nodes with `requirements` may use, cheapest allowed offering first.
    pub(crate) fn allowed_types(&self, pool: usize, requirements: &Requirements) -> Arc<[u32]> {
        let key = (pool, requirements.clone());
        if let Some(list) = self.type_lists().get(&key) {
            return Arc::clone(list);
        }
        let p = &self.pools[pool];
        let mut priced: Vec<(Price, u32)> = (0..p.types.len())
            .filter_map(|t| {
                let ty = &p.types[t];
                if !crate::place::type_allowed(self, p, ty, requirements) {
                    return None;
                }
                let price = crate::place::allowed_offering(self, ty, requirements)?.price;
                Some((price, u32::try_from(t).ok()?))
            })
            .collect();
        priced.sort_unstable();
        let list: Arc<[u32]> = priced.into_iter().map(|(_, t)| t).collect();
        self.type_lists().insert(key, Arc::clone(&list));
        list
    }
}

/// Builds requirements from pod-style terms, normalizing label aliases.
pub(crate) fn requirements_of(terms: &[Term], interner: &mut Interner) -> Requirements {
    let mut requirements = Requirements::new();
    for term in terms {
        let key = interner.intern(labels::normalize_label_key(&term.key));
        let values: Vec<Sym> = term.values.iter().map(|v| interner.intern(v)).collect();
        let requirement = Requirement::from_operator(term.operator, &values, interner);
        requirements.add(key, requirement, interner);
    }
    requirements
}

fn resources_of(
    list: &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> Resources {
    let mut resources = Resources::default();
    for (name, value) in list {
        if let Ok(Ok(amount)) = quantity::parse_resource(name, &value.0).map(i64::try_from) {
            resources.set(name, amount);
        }
    }
    resources
}

/// Compiles a problem. Pod classes group pods whose scheduling-relevant facts are equal.
#[allow(clippy::too_many_lines)] // one pass per input kind, read top to bottom
pub(crate) fn compile(problem: &Problem) -> Compiled {
    let mut interner = Interner::new();
    let keys = Keys {
        zone: interner.intern(labels::ZONE),
        capacity_type: interner.intern(labels::CAPACITY_TYPE),
        instance_type: interner.intern(labels::INSTANCE_TYPE),
        hostname: interner.intern(labels::HOSTNAME),
        nodepool: interner.intern(labels::NODE_POOL),
    };
    let mut well_known: Vec<Sym> = labels::WELL_KNOWN_LABELS
        .iter()
        .chain(labels::AWS_WELL_KNOWN_LABELS.iter())
        .chain([labels::HOSTNAME, labels::AWS_ZONE_ID].iter())
        .map(|k| interner.intern(k))
        .collect();
    well_known.sort_unstable();

    let volume_index = crate::volumes::VolumeIndex::new(&problem.volumes);
    let facts = pod_facts(&problem.pods, &volume_index, problem.options.parallel);
    let daemon_facts: Vec<PodFacts> = problem.daemonset_pods.iter().map(PodFacts::from_pod).collect();
    let extended = facts
        .iter()
        .chain(&daemon_facts)
        .flat_map(|f| f.requests.extended.keys())
        .chain(
            problem
                .nodepools
                .iter()
                .flat_map(|p| p.instance_types.iter().flat_map(|t| t.capacity.extended.keys())),
        )
        .map(String::as_str);
    let dims = Dimensions::new(extended.collect::<Vec<_>>());

    let mut groups: Vec<Group> = Vec::new();

    // Pod classes.
    let ignore_preferences = problem.options.preference_policy == PreferencePolicy::Ignore;
    let mut classes: Vec<Class> = Vec::new();
    let mut class_index: HashMap<ClassKey<'_>, usize> = HashMap::new();
    for (index, pod) in facts.iter().enumerate() {
        let key = ClassKey(pod);
        if let Some(&c) = class_index.get(&key) {
            classes[c].pods.push(index);
            continue;
        }
        let (mut requests, unknown) = dims.dense(&pod.requests);
        let mut problems = pod.problems.clone();
        problems.extend(
            unknown
                .into_iter()
                .map(|r| format!("requests unknown resource {r}")),
        );
        let spread = pod
            .spread
            .iter()
            .filter(|s| !(ignore_preferences && s.when_unsatisfiable == WhenUnsatisfiable::ScheduleAnyway))
            .map(|s| SpreadC {
                group: group_of(
                    &mut groups,
                    &s.topology_key,
                    &s.selector,
                    Some(vec![pod.namespace.clone()]),
                    &mut interner,
                ),
                key: interner.intern(labels::normalize_label_key(&s.topology_key)),
                max_skew: s.max_skew,
                required: s.when_unsatisfiable == WhenUnsatisfiable::DoNotSchedule,
                min_domains: s.min_domains,
                honor_node_affinity: s.honor_node_affinity,
                honor_node_taints: s.honor_node_taints,
            })
            .collect();
        let affinity = pod
            .affinity
            .iter()
            .filter(|a| !(ignore_preferences && a.weight.is_some()))
            .map(|a: &AffinityTerm| {
                let namespaces = a.namespaces_for(&pod.namespace);
                AffinityC {
                    group: group_of(
                        &mut groups,
                        &a.topology_key,
                        &a.selector,
                        namespaces,
                        &mut interner,
                    ),
                    key: interner.intern(labels::normalize_label_key(&a.topology_key)),
                    anti: a.anti,
                    required: a.weight.is_none(),
                    weight: a.weight.unwrap_or(0),
                }
            })
            .collect();
        requests.0.iter_mut().for_each(|v| *v = (*v).max(0));
        let terms = pod
            .required_terms
            .iter()
            .map(|t| requirements_of(t, &mut interner))
            .collect();
        let preferred = if ignore_preferences {
            Vec::new()
        } else {
            pod.preferred_terms
                .iter()
                .map(|(_, t)| requirements_of(t, &mut interner))
                .collect()
        };
        class_index.insert(key, classes.len());
        classes.push(Class {
            requests,
            namespace: pod.namespace.clone(),
            labels: pod.labels.clone(),
            terms,
            preferred,
            tolerations: pod.tolerations.clone(),
            spread,
            affinity,
            host_ports: pod.host_ports.clone(),
            problems,
            pods: vec![index],
            family: 0,
        });
    }
    assign_families(&mut classes);

    let pools = problem
        .nodepools
        .iter()
        .map(|pool| compile_pool(pool, &daemon_facts, &dims, &keys, &mut interner, &well_known))
        .collect();

    let mut initial_counts: FastMap<(usize, Sym), i64> = FastMap::default();
    let mut existing_anti = Vec::new();
    let mut existing = Vec::new();
    for node in &problem.existing_nodes {
        let mut requirements = Requirements::new();
        for (k, v) in &node.labels {
            let key = interner.intern(labels::normalize_label_key(k));
            let value = interner.intern(v);
            requirements.add(key, Requirement::one_of(vec![value]), &interner);
        }
        let hostname = interner.intern(node.labels.get(labels::HOSTNAME).unwrap_or(&node.name));
        let (mut remaining, _) = dims.dense(&node.allocatable);
        let mut host_ports = Vec::new();
        for pod in &node.pods {
            let f = PodFacts::from_pod(pod);
            remaining.sub(&dims.dense(&f.requests).0);
            host_ports.extend(f.host_ports.iter().cloned());
            for (g, group) in groups.iter().enumerate() {
                if group.counts(&f.namespace, &f.labels)
                    && let Some(domain) = domain_of_labels(group.key, &node.labels, hostname, &interner)
                {
                    *initial_counts.entry((g, domain)).or_insert(0) += 1;
                }
            }
            // Existing pods' required anti-affinity terms forbid their domain to pods they select.
            for term in f.affinity.iter().filter(|a| a.anti && a.weight.is_none()) {
                let namespaces = term.namespaces_for(&f.namespace);
                let g = group_of(
                    &mut groups,
                    &term.topology_key,
                    &term.selector,
                    namespaces,
                    &mut interner,
                );
                let key = groups_key(&interner, &term.topology_key);
                if let Some(domain) = domain_of_labels(key, &node.labels, hostname, &interner) {
                    existing_anti.push((g, domain));
                }
            }
        }
        existing.push(Existing {
            name: node.name.clone(),
            requirements,
            taints: node.taints.clone(),
            remaining,
            host_ports,
            hostname,
            initialized: node.initialized,
        });
    }
    // Initialized nodes first, then by name (Karpenter's order), so placement is deterministic.
    existing.sort_by(|a, b| {
        b.initialized
            .cmp(&a.initialized)
            .then_with(|| a.name.cmp(&b.name))
    });

    let family_count = classes.iter().map(|c| c.family + 1).max().unwrap_or(0);
    let mut families = vec![Vec::new(); family_count];
    for (i, class) in classes.iter().enumerate() {
        families[class.family].push(i);
    }
    let mut compiled = Compiled {
        interner,
        dims,
        keys,
        well_known,
        pools,
        classes,
        groups,
        existing,
        initial_counts,
        existing_anti,
        pod_count: problem.pods.len(),
        universes: FastMap::default(),
        families,
        min_values_policy: problem.options.min_values_policy,
        type_lists: Mutex::new(FastMap::default()),
    };
    let topology_keys: Vec<Sym> = compiled
        .classes
        .iter()
        .flat_map(|c| {
            c.spread
                .iter()
                .map(|s| s.key)
                .chain(c.affinity.iter().map(|a| a.key))
        })
        .chain(compiled.groups.iter().map(|g| g.key))
        .collect();
    for key in topology_keys {
        if !compiled.universes.contains_key(&key) {
            let values = universe(&compiled, key);
            compiled.universes.insert(key, values);
        }
    }
    compiled
}

/// Every value `key` can take on a node: from the pools' instance types, offerings and labels,
/// and from existing nodes.
fn universe(compiled: &Compiled, key: Sym) -> Domains {
    let mut domains = Domains::default();
    for (p, pool) in compiled.pools.iter().enumerate() {
        let allowed = pool.requirements.get(key);
        let mut of_pool: Vec<Sym> = allowed
            .and_then(crate::requirements::Requirement::values)
            .map(<[Sym]>::to_vec)
            .unwrap_or_default();
        // Only types the pool's requirements allow create domains (Karpenter's domain groups).
        let allowed_types = compiled.allowed_types(p, &pool.requirements);
        for ty in allowed_types.iter().map(|t| &pool.types[*t as usize]) {
            if key == compiled.keys.zone {
                of_pool.extend(ty.offerings.iter().map(|o| o.zone));
            } else if key == compiled.keys.capacity_type {
                of_pool.extend(ty.offerings.iter().map(|o| o.capacity_type));
            } else if let Some(v) = ty.label(key) {
                of_pool.push(v);
            }
        }
        if let Some(allowed) = allowed {
            of_pool.retain(|v| allowed.has(*v, &compiled.interner));
        }
        of_pool.sort_unstable();
        of_pool.dedup();
        domains.all.extend_from_slice(&of_pool);
        domains.by_pool.push(of_pool);
    }
    for (n, node) in compiled.existing.iter().enumerate() {
        let domain = if key == compiled.keys.hostname {
            Some(node.hostname)
        } else {
            node.requirements
                .get(key)
                .and_then(crate::requirements::Requirement::single)
        };
        if let Some(domain) = domain {
            domains.all.push(domain);
            domains.by_node.push((n, domain));
        }
    }
    domains.all.sort_unstable();
    domains.all.dedup();
    domains
}

/// Unconstrained classes with equal node terms and tolerations form a family; every constrained
/// class is a family of its own.
fn assign_families(classes: &mut [Class]) {
    let mut representatives: Vec<usize> = Vec::new();
    let mut next = 0;
    for i in 0..classes.len() {
        let same = |a: &Class, b: &Class| {
            !a.constrained()
                && !b.constrained()
                && a.terms == b.terms
                && a.preferred == b.preferred
                && a.tolerations.len() == b.tolerations.len()
                && a.tolerations.iter().zip(&b.tolerations).all(|(x, y)| {
                    (&x.key, &x.operator, &x.value, &x.effect) == (&y.key, &y.operator, &y.value, &y.effect)
                })
        };
        if let Some(&r) = representatives.iter().find(|&&r| same(&classes[r], &classes[i])) {
            classes[i].family = classes[r].family;
        } else {
            classes[i].family = next;
            next += 1;
            representatives.push(i);
        }
    }
}

/// The topology group for (key, selector, namespaces), shared by equal ones.
fn group_of(
    groups: &mut Vec<Group>,
    key: &str,
    selector: &Selector,
    namespaces: Option<Vec<String>>,
    interner: &mut Interner,
) -> usize {
    let key = interner.intern(labels::normalize_label_key(key));
    if let Some(i) = groups
        .iter()
        .position(|g| g.key == key && g.selector == *selector && g.namespaces == namespaces)
    {
        return i;
    }
    groups.push(Group {
        key,
        selector: selector.clone(),
        namespaces,
    });
    groups.len() - 1
}

fn groups_key(interner: &Interner, key: &str) -> Sym {
    interner
        .get(labels::normalize_label_key(key))
        .unwrap_or(Sym(u32::MAX))
}

fn domain_of_labels(
    key: Sym,
    node_labels: &BTreeMap<String, String>,
    hostname: Sym,
    interner: &Interner,
) -> Option<Sym> {
    let name = interner.resolve(key);
    if name == labels::HOSTNAME {
        return Some(hostname);
    }
    node_labels.get(name).and_then(|v| interner.get(v))
}

#[allow(clippy::too_many_arguments)]
fn compile_pool(
    pool: &crate::problem::PoolInput,
    daemons: &[PodFacts],
    dims: &Dimensions,
    keys: &Keys,
    interner: &mut Interner,
    well_known: &[Sym],
) -> Pool {
    let np = &pool.nodepool;
    let name = np.metadata.name.clone().unwrap_or_default();
    let template = &np.spec.template;
    let mut requirements = Requirements::new();
    for r in &template.spec.requirements {
        let key = interner.intern(labels::normalize_label_key(&r.key));
        let values: Vec<Sym> = r.values.iter().map(|v| interner.intern(v)).collect();
        let mut requirement = Requirement::from_operator(r.operator, &values, interner);
        requirement.min_values = r.min_values.and_then(|m| u32::try_from(m).ok());
        requirements.add(key, requirement, interner);
    }
    for (k, v) in &template.metadata.labels {
        let key = interner.intern(labels::normalize_label_key(k));
        let value = interner.intern(v);
        requirements.add(key, Requirement::one_of(vec![value]), interner);
    }
    let pool_sym = interner.intern(&name);
    requirements.add(keys.nodepool, Requirement::one_of(vec![pool_sym]), interner);

    let limits = resources_of(&np.spec.limits);
    let in_use = &pool.in_use;
    let remaining = (0..dims.len())
        .map(|d| {
            let dim = dims.name(d);
            np.spec
                .limits
                .contains_key(dim)
                .then(|| limits.get(dim).saturating_sub(in_use.get(dim)))
        })
        .collect();
    let remaining_nodes = np
        .spec
        .limits
        .contains_key("nodes")
        .then(|| limits.get("nodes").saturating_sub(in_use.get("nodes")));

    let taints = template.spec.taints.clone();
    let mut types: Vec<TypeC> = pool
        .instance_types
        .iter()
        .filter_map(|it| {
            compile_type(
                it,
                &requirements,
                &taints,
                daemons,
                dims,
                keys,
                interner,
                well_known,
            )
        })
        .collect();
    types.sort_by(|a, b| {
        a.offerings[0]
            .price
            .cmp(&b.offerings[0].price)
            .then_with(|| a.name.cmp(&b.name))
    });
    Pool {
        name,
        weight: np.spec.weight.unwrap_or(0),
        requirements,
        taints,
        types,
        remaining,
        remaining_nodes,
    }
}

/// One instance type as a pool sees it: interned labels, the offerings the pool's requirements
/// allow (cheapest first), and allocatable after the DaemonSets that would run on it. `None` when
/// the pool cannot buy it or its DaemonSets alone would not fit.
#[allow(clippy::too_many_arguments)]
fn compile_type(
    it: &nodewright_catalog::InstanceType,
    requirements: &Requirements,
    taints: &[Taint],
    daemons: &[PodFacts],
    dims: &Dimensions,
    keys: &Keys,
    interner: &mut Interner,
    well_known: &[Sym],
) -> Option<TypeC> {
    let well_known_fn = |k: Sym| well_known.binary_search(&k).is_ok();
    let mut type_labels: Vec<(Sym, Sym)> = it
        .labels
        .iter()
        .map(|(k, v)| {
            (
                interner.intern(labels::normalize_label_key(k)),
                interner.intern(v),
            )
        })
        .collect();
    type_labels.sort_unstable();
    type_labels.dedup_by_key(|(k, _)| *k);
    // Only offerings the pool's own requirements allow: prices everywhere below (shape choice,
    // lower bound) are then prices the pool can actually pay.
    let zone_allowed = requirements.get(keys.zone).cloned();
    let capacity_type_allowed = requirements.get(keys.capacity_type).cloned();
    let all_offerings: Vec<OfferingC> = it
        .offerings
        .iter()
        .filter(|o| o.available)
        .map(|o| OfferingC {
            zone: interner.intern(&o.zone),
            capacity_type: interner.intern(o.capacity_type.label()),
            price: o.price,
            reservation: o.reservation.as_ref().map(|r| (r.id.clone(), r.capacity)),
        })
        .collect();
    let mut offerings: Vec<OfferingC> = all_offerings
        .into_iter()
        .filter(|o| {
            zone_allowed.as_ref().is_none_or(|r| r.has(o.zone, interner))
                && capacity_type_allowed
                    .as_ref()
                    .is_none_or(|r| r.has(o.capacity_type, interner))
        })
        .collect();
    offerings.sort_by_key(|o| (o.price, o.zone, o.capacity_type));
    let (capacity, _) = dims.dense(&it.capacity);
    let (mut alloc, _) = dims.dense(&it.allocatable());
    // DaemonSet pods that would run on this type take their requests off its allocatable.
    let mut daemon = Res::zero(dims.len());
    let mut type_reqs = Requirements::new();
    for (k, v) in &type_labels {
        type_reqs.add(*k, Requirement::one_of(vec![*v]), interner);
    }
    for d in daemons {
        let tolerated = taints
            .iter()
            .all(|t| t.effect == "PreferNoSchedule" || tolerates(&d.tolerations, t));
        let compatible = d.required_terms.iter().any(|term| {
            let reqs = requirements_of(term, interner);
            requirements.compatible(&reqs, &well_known_fn, interner).is_ok()
                && type_reqs.intersects(&reqs, interner).is_ok()
        });
        if tolerated && compatible {
            daemon.add(&dims.dense(&d.requests).0);
        }
    }
    alloc.sub(&daemon);
    if offerings.is_empty() || alloc.0.iter().any(|v| *v < 0) {
        return None;
    }
    Some(TypeC {
        name: it.name.as_str().into(),
        labels: type_labels,
        offerings,
        alloc,
        capacity,
        daemon,
    })
}

/// The facts that decide how a pod schedules: everything but its name. Pods with equal keys
/// form one class. Borrows the facts, so building the key copies nothing.
#[derive(Debug)]
struct ClassKey<'a>(&'a PodFacts);

impl PartialEq for ClassKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.0, other.0);
        a.requests == b.requests
            && a.namespace == b.namespace
            && a.labels == b.labels
            && a.required_terms == b.required_terms
            && a.preferred_terms == b.preferred_terms
            && a.tolerations == b.tolerations
            && a.spread == b.spread
            && a.affinity == b.affinity
            && a.host_ports == b.host_ports
            && a.problems == b.problems
    }
}

impl Eq for ClassKey<'_> {}

impl std::hash::Hash for ClassKey<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Tolerations (no Hash in k8s-openapi) only refine equality; the rest spreads the keys.
        let p = self.0;
        p.requests.hash(state);
        p.namespace.hash(state);
        p.labels.hash(state);
        p.required_terms.hash(state);
        p.spread.hash(state);
        p.affinity.hash(state);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code fails loudly by design

    use serde_json::json;

    use super::*;

    fn pod(name: &str, app: &str, cpu: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": name, "namespace": "shop", "labels": { "app": app } },
            "spec": { "containers": [{ "name": "c", "resources": { "requests": { "cpu": cpu } } }] }
        }))
        .unwrap()
    }

    #[test]
    fn reused_facts_equal_facts_read_pod_by_pod() {
        let pods = [
            pod("web-0", "web", "500m"),
            pod("web-1", "web", "500m"),
            pod("api-0", "api", "500m"), // same spec, other labels
            pod("api-1", "api", "1"),    // same labels, other spec
            pod("api-2", "api", "1"),
        ];
        let volumes = crate::volumes::Volumes::default();
        let index = crate::volumes::VolumeIndex::new(&volumes);
        let reused = pod_facts(&pods, &index, false);
        let one_by_one: Vec<PodFacts> = pods
            .iter()
            .map(|p| PodFacts::from_pod_with_volumes(p, &index))
            .collect();
        assert_eq!(reused, one_by_one);
        assert_eq!(reused[1].name, "web-1");
        assert_eq!(reused[3].requests.cpu_millis, 1000);
    }
}
