//! The search's working model of the cluster: what each node has free, which moving pods the
//! search has put where, and the replacement nodes it has opened. It answers "can this node go,
//! and what would its pods need?" in time proportional to the node's pods, so every candidate
//! can be tried; the solver then verifies the chosen set as a whole ([`super::search`]).
//!
//! A moving pod goes to the live node with the least free CPU that holds its requests, whose
//! labels satisfy one of its required node terms and whose `NoSchedule`/`NoExecute` taints it
//! tolerates. Pod topology (spread, pod affinity) and host ports are left to the verifying
//! solve: the model is optimistic about them, the solver is not. Pods that fit nowhere need new
//! nodes: the solver is asked for the cheapest ones for just those pods (after a lower bound
//! from the cheapest price per CPU and per byte shows they might be cheaper than the node).
//! Those new nodes then take later candidates' pods as well, which is how N nodes become M.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};
use nodewright_api::{Operator, labels};
use nodewright_catalog::{CapacityType, Price, Resources};
use nodewright_solver::{
    Problem,
    pod::{PodFacts, Term, tolerates},
};

use super::super::candidates::{Blocker, pod_ref};

/// A node pods can be put on: one that exists, or one the model opened.
#[derive(Debug, Clone)]
struct Destination {
    labels: BTreeMap<String, String>,
    taints: Vec<Taint>,
    free: Resources,
    /// Moving pods the model put here (they move again if this node is removed).
    hosted: Vec<usize>,
    live: bool,
    /// Initialized: non-pending pods are never simulated onto a node still starting.
    usable: bool,
}

/// A pod that moves when its node goes.
#[derive(Debug, Clone)]
pub(super) struct MovingPod {
    pub(super) pod: Pod,
    requests: Resources,
    required_terms: Vec<Vec<Term>>,
    tolerations: Vec<Toleration>,
}

/// What one candidate's removal did to the model, to keep or undo.
#[derive(Debug)]
pub(super) struct Trial {
    destination: Option<usize>,
    placed: Vec<(usize, usize)>,
    hosted_before: Vec<usize>,
    opened_from: usize,
    /// Price of the nodes opened for pods that fit nowhere.
    pub(super) new_cost: Price,
    /// Whether an opened node is spot.
    pub(super) new_spot: bool,
}

/// See the module docs.
#[derive(Debug)]
pub(super) struct Model {
    destinations: Vec<Destination>,
    /// Live, usable destinations by (free CPU, index).
    by_free_cpu: BTreeSet<(i64, usize)>,
    pub(super) pods: Vec<MovingPod>,
    candidate_destination: Vec<Option<usize>>,
    /// Each candidate's moving pods, read into [`Model::pods`] when it is first tried (most
    /// candidates are never tried when a budget runs out).
    candidate_pods: Vec<Result<Vec<usize>, Vec<Arc<Pod>>>>,
    /// What each node of the problem had free before the search.
    initial_free: Vec<Resources>,
    /// The pools, instance types and DaemonSets; pods swapped in per question.
    scratch: Problem,
    /// The cheapest price (nano-$/h) per millicore and per byte over every offering.
    per_cpu: f64,
    per_byte: f64,
}

impl Model {
    /// `candidates[i]` = (the candidate's node name, its moving pods).
    pub(super) fn new<'a>(
        base: &Problem,
        candidates: impl IntoIterator<Item = (String, &'a [Arc<Pod>])>,
    ) -> Self {
        let mut destinations = Vec::with_capacity(base.existing_nodes.len());
        let mut by_name = BTreeMap::new();
        for node in &base.existing_nodes {
            let mut free = node.allocatable.clone();
            for pod in &node.pods {
                if let Some(spec) = &pod.spec {
                    free = free.minus(&nodewright_solver::pod::pod_requests(spec, &mut Vec::new()));
                }
            }
            by_name.insert(node.name.clone(), destinations.len());
            destinations.push(Destination {
                labels: node.labels.clone(),
                taints: scheduling_taints(&node.taints),
                free,
                hosted: Vec::new(),
                live: true,
                usable: node.initialized,
            });
        }
        let mut candidate_destination = Vec::new();
        let mut candidate_pods = Vec::new();
        for (name, moving) in candidates {
            candidate_destination.push(by_name.get(&name).copied());
            candidate_pods.push(Err(moving.to_vec()));
        }
        let initial_free = destinations.iter().map(|d| d.free.clone()).collect();
        let by_free_cpu = destinations
            .iter()
            .enumerate()
            .filter(|(_, d)| d.usable)
            .map(|(i, d)| (d.free.cpu_millis, i))
            .collect();
        let (per_cpu, per_byte) = cheapest_rates(base);
        Self {
            destinations,
            by_free_cpu,
            pods: Vec::new(),
            candidate_destination,
            candidate_pods,
            initial_free,
            scratch: Problem {
                nodepools: base.nodepools.clone(),
                daemonset_pods: base.daemonset_pods.clone(),
                volumes: base.volumes.clone(),
                options: base.options.clone(),
                ..Problem::default()
            },
            per_cpu,
            per_byte,
        }
    }

    /// The moving pods of candidate `index` (its own, not those the model put on it); empty
    /// for a candidate never tried.
    pub(super) fn own_pods(&self, index: usize) -> &[usize] {
        self.candidate_pods[index].as_deref().unwrap_or_default()
    }

    /// What node `index` of the problem had free before the search.
    pub(super) fn initial_free(&self, index: usize) -> &Resources {
        &self.initial_free[index]
    }

    /// Reads candidate `index`'s pods into the model, once.
    fn read_pods(&mut self, index: usize) -> Vec<usize> {
        let unread = match &mut self.candidate_pods[index] {
            Ok(read) => return read.clone(),
            Err(unread) => std::mem::take(unread),
        };
        let mut own = Vec::with_capacity(unread.len());
        for pod in unread {
            let mut pod = (*pod).clone();
            if let Some(spec) = pod.spec.as_mut() {
                spec.node_name = None;
            }
            let facts = PodFacts::from_pod(&pod);
            own.push(self.pods.len());
            self.pods.push(MovingPod {
                pod,
                requests: facts.requests,
                required_terms: facts.required_terms,
                tolerations: facts.tolerations,
            });
        }
        self.candidate_pods[index] = Ok(own.clone());
        own
    }

    /// Removes candidate `index` (priced `price`), moving its pods and those the model put on
    /// it. On `Err` the model is as before.
    pub(super) fn try_remove(&mut self, index: usize, price: Price) -> Result<Trial, Blocker> {
        let destination = self.candidate_destination[index];
        let mut moving = self.read_pods(index);
        let mut hosted_before = Vec::new();
        if let Some(d) = destination {
            self.set_live(d, false);
            hosted_before = std::mem::take(&mut self.destinations[d].hosted);
            moving.extend(&hosted_before);
        }
        moving.sort_by(|a, b| {
            let (a, b) = (&self.pods[*a].requests, &self.pods[*b].requests);
            (b.cpu_millis, b.memory_bytes).cmp(&(a.cpu_millis, a.memory_bytes))
        });
        let mut trial = Trial {
            destination,
            placed: Vec::new(),
            hosted_before,
            opened_from: self.destinations.len(),
            new_cost: Price::ZERO,
            new_spot: false,
        };
        let mut leftovers = Vec::new();
        for pod in moving {
            match self.find(pod) {
                Some(d) => {
                    self.place(d, pod);
                    trial.placed.push((d, pod));
                }
                None => leftovers.push(pod),
            }
        }
        if !leftovers.is_empty()
            && let Err(blocker) = self.open_for(&leftovers, price, &mut trial)
        {
            self.undo(trial);
            return Err(blocker);
        }
        Ok(trial)
    }

    /// Undoes a trial (the last one made).
    pub(super) fn undo(&mut self, trial: Trial) {
        for d in trial.opened_from..self.destinations.len() {
            self.by_free_cpu
                .remove(&(self.destinations[d].free.cpu_millis, d));
        }
        self.destinations.truncate(trial.opened_from);
        for (d, pod) in trial.placed.into_iter().rev() {
            let requests = self.pods[pod].requests.clone();
            self.reindex(d, |dest| {
                dest.free.add_assign(&requests);
                dest.hosted.pop();
            });
        }
        if let Some(d) = trial.destination {
            self.destinations[d].hosted = trial.hosted_before;
            self.set_live(d, true);
        }
    }

    /// New nodes for `leftovers`, if they can cost less than `limit`.
    fn open_for(&mut self, leftovers: &[usize], limit: Price, trial: &mut Trial) -> Result<(), Blocker> {
        let mut total = Resources::default();
        for pod in leftovers {
            total.add_assign(&self.pods[*pod].requests);
        }
        #[allow(clippy::cast_precision_loss)] // a bound on prices, compared with a margin
        let bound = (total.cpu_millis as f64 * self.per_cpu).max(total.memory_bytes as f64 * self.per_byte);
        #[allow(clippy::cast_precision_loss)]
        if bound >= limit.0 as f64 {
            return Err(Blocker::NotCheaper);
        }
        self.scratch.pods = leftovers.iter().map(|p| self.pods[*p].pod.clone()).collect();
        let plan = nodewright_solver::solve(&self.scratch);
        self.scratch.pods.clear();
        if !plan.unschedulable.is_empty() {
            let names: Vec<String> = plan
                .unschedulable
                .iter()
                .map(|u| pod_ref(&self.pods[leftovers[u.pod]].pod))
                .collect();
            return Err(Blocker::PodsNotReschedulable(names.join(", ")));
        }
        if plan.total_price >= limit {
            return Err(Blocker::NotCheaper);
        }
        trial.new_cost = plan.total_price;
        trial.new_spot = plan
            .new_nodes
            .iter()
            .any(|n| n.capacity_type == CapacityType::Spot);
        for node in &plan.new_nodes {
            let Some(pool) = self
                .scratch
                .nodepools
                .iter()
                .find(|p| p.nodepool.metadata.name.as_deref() == Some(node.nodepool.as_str()))
            else {
                continue;
            };
            let Some(instance_type) = pool.instance_types.iter().find(|t| t.name == node.instance_type)
            else {
                continue;
            };
            let mut node_labels = instance_type.labels.clone();
            node_labels.insert(labels::ZONE.to_owned(), node.zone.clone());
            node_labels.insert(
                labels::CAPACITY_TYPE.to_owned(),
                node.capacity_type.label().to_owned(),
            );
            node_labels.insert(labels::NODE_POOL.to_owned(), node.nodepool.clone());
            let d = self.destinations.len();
            self.destinations.push(Destination {
                labels: node_labels,
                taints: scheduling_taints(&pool.nodepool.spec.template.spec.taints),
                free: instance_type.allocatable().minus(&node.requests),
                hosted: node.pods.iter().map(|p| leftovers[*p]).collect(),
                live: true,
                usable: true,
            });
            self.by_free_cpu.insert((self.destinations[d].free.cpu_millis, d));
        }
        Ok(())
    }

    /// The live node with the least free CPU that takes `pod`.
    fn find(&self, pod: usize) -> Option<usize> {
        let pod = &self.pods[pod];
        self.by_free_cpu
            .range((pod.requests.cpu_millis, 0)..)
            .map(|(_, d)| *d)
            .find(|d| {
                let dest = &self.destinations[*d];
                pod.requests.fits_in(&dest.free)
                    && pod
                        .required_terms
                        .iter()
                        .any(|term| term.iter().all(|t| term_matches(t, &dest.labels)))
                    && dest.taints.iter().all(|t| tolerates(&pod.tolerations, t))
            })
    }

    fn place(&mut self, d: usize, pod: usize) {
        let requests = self.pods[pod].requests.clone();
        self.reindex(d, |dest| {
            dest.free = dest.free.minus(&requests);
            dest.hosted.push(pod);
        });
    }

    fn reindex(&mut self, d: usize, change: impl FnOnce(&mut Destination)) {
        let indexed = self
            .by_free_cpu
            .remove(&(self.destinations[d].free.cpu_millis, d));
        change(&mut self.destinations[d]);
        if indexed {
            self.by_free_cpu.insert((self.destinations[d].free.cpu_millis, d));
        }
    }

    fn set_live(&mut self, d: usize, live: bool) {
        let dest = &mut self.destinations[d];
        dest.live = live;
        let key = (dest.free.cpu_millis, d);
        if live && dest.usable {
            self.by_free_cpu.insert(key);
        } else {
            self.by_free_cpu.remove(&key);
        }
    }
}

/// The taints that keep pods off a node.
fn scheduling_taints(taints: &[Taint]) -> Vec<Taint> {
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .cloned()
        .collect()
}

/// Whether a node's labels satisfy one requirement of a pod's node term.
fn term_matches(term: &Term, node_labels: &BTreeMap<String, String>) -> bool {
    let value = node_labels.get(&term.key);
    let number = |v: &String| v.parse::<i64>().ok();
    let bound = term.values.first().and_then(number);
    match term.operator {
        Operator::In => value.is_some_and(|v| term.values.contains(v)),
        Operator::NotIn => value.is_none_or(|v| !term.values.contains(v)),
        Operator::Exists => value.is_some(),
        Operator::DoesNotExist => value.is_none(),
        Operator::Gt => matches!((value.and_then(number), bound), (Some(v), Some(b)) if v > b),
        Operator::Lt => matches!((value.and_then(number), bound), (Some(v), Some(b)) if v < b),
        Operator::Gte => matches!((value.and_then(number), bound), (Some(v), Some(b)) if v >= b),
        Operator::Lte => matches!((value.and_then(number), bound), (Some(v), Some(b)) if v <= b),
    }
}

/// The cheapest nano-$/h per millicore and per byte of any available offering: no set of new
/// nodes holding `c` millicores and `m` bytes costs less than `max(c × cpu, m × byte)`.
fn cheapest_rates(problem: &Problem) -> (f64, f64) {
    let mut per_cpu = f64::INFINITY;
    let mut per_byte = f64::INFINITY;
    for pool in &problem.nodepools {
        for instance_type in &pool.instance_types {
            let allocatable = instance_type.allocatable();
            let Some(price) = instance_type
                .offerings
                .iter()
                .filter(|o| o.available)
                .map(|o| o.price)
                .min()
            else {
                continue;
            };
            #[allow(clippy::cast_precision_loss)] // a bound, compared with a margin
            let price = price.0 as f64;
            if allocatable.cpu_millis > 0 {
                #[allow(clippy::cast_precision_loss)]
                let rate = price / allocatable.cpu_millis as f64;
                per_cpu = per_cpu.min(rate);
            }
            if allocatable.memory_bytes > 0 {
                #[allow(clippy::cast_precision_loss)]
                let rate = price / allocatable.memory_bytes as f64;
                per_byte = per_byte.min(rate);
            }
        }
    }
    // Without instance types no node can be opened; the solver will say so.
    let finite = |rate: f64| if rate.is_finite() { rate } else { 0.0 };
    (finite(per_cpu), finite(per_byte))
}
