//! The solver's working state: nodes being built ("bins"), what remains on existing nodes, and
//! the topology counts that spread and (anti-)affinity read.

use std::collections::BTreeSet;

use crate::{
    compile::{Compiled, Existing},
    fasthash::FastMap,
    intern::Sym,
    pod::HostPort,
    requirements::Requirements,
    resources::Res,
};

/// A new node under construction.
#[derive(Debug, Clone)]
pub(crate) struct Bin {
    pub pool: usize,
    pub requirements: Requirements,
    /// The pool's types `requirements` allow, cheapest first (shared between equal nodes).
    pub types: std::sync::Arc<[u32]>,
    /// The type whose allocatable caps this bin (chosen by price efficiency when it opened).
    pub target: u32,
    pub used: Res,
    pub pods: Vec<usize>,
    pub classes: Vec<usize>,
    pub host_ports: Vec<HostPort>,
    pub hostname: Sym,
    /// Pods of other classes this node was shaped for and keeps room for, per class.
    pub reservations: Vec<(usize, i64)>,
    /// The resources `reservations` hold.
    pub reserved_room: Res,
    /// `minValues` was lowered for this node (`BestEffort`).
    pub min_values_relaxed: bool,
}

impl Bin {
    pub(crate) fn reservation(&self, class: usize) -> i64 {
        self.reservations
            .iter()
            .find(|(c, _)| *c == class)
            .map_or(0, |(_, n)| *n)
    }
}

/// Where a pod went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Placement {
    Pending,
    Existing(usize),
    Bin(usize),
    Unschedulable(Vec<String>),
}

/// How a new node's shape is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shaping {
    /// By price per weighted unit of the pods it would hold (the default).
    LookAhead,
    /// The largest allowed type, narrowed to the cheapest that holds the pods at the end
    /// (Karpenter's behaviour; kept as a second opinion, the cheaper plan wins).
    Largest,
}

#[derive(Debug)]
pub(crate) struct State {
    pub shaping: Shaping,
    pub bins: Vec<Bin>,
    /// Per bin during placement: its target type's allocatable less what it holds and has
    /// promised (`used` and `reserved_room`). Kept apart from the bins, which are large: most
    /// candidate bins refuse a pod for room, and a scan of this array finds out cheaply.
    pub free: Vec<Res>,
    pub existing_remaining: Vec<Res>,
    pub existing_ports: Vec<Vec<HostPort>>,
    /// Members per (group, domain).
    pub counts: FastMap<(usize, Sym), i64>,
    /// Members per group, over all domains.
    pub totals: Vec<i64>,
    /// Per group, domains its pods may not go to (required anti-affinity of a pod already there).
    pub forbidden: Vec<BTreeSet<Sym>>,
    /// For each class, the groups its pods count in.
    pub memberships: Vec<Vec<usize>>,
    pub placements: Vec<Placement>,
    /// Remaining limit per pool and dimension.
    pub pool_remaining: Vec<Vec<Option<i64>>>,
    pub pool_nodes: Vec<Option<i64>>,
    /// Per class: the first bin worth trying (earlier bins rejected this class for good).
    pub first_bin: Vec<usize>,
    /// Per class: the first existing node worth trying, likewise.
    pub first_existing: Vec<usize>,
    /// Pods of each class not yet handled.
    pub class_left: Vec<usize>,
    /// Pods of each class promised to nodes that were shaped for them.
    pub reserved: Vec<usize>,
    /// Nodes holding reservations, per class (may list nodes whose reservation is used up).
    pub reserved_bins: Vec<Vec<usize>>,
    next_hostname: u32,
}

impl State {
    pub(crate) fn new(compiled: &Compiled, shaping: Shaping) -> Self {
        let memberships = compiled
            .classes
            .iter()
            .map(|class| {
                compiled
                    .groups
                    .iter()
                    .enumerate()
                    .filter(|(_, g)| g.counts(&class.namespace, &class.labels))
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect();
        let mut forbidden = vec![BTreeSet::new(); compiled.groups.len()];
        for (group, domain) in &compiled.existing_anti {
            forbidden[*group].insert(*domain);
        }
        let mut totals = vec![0; compiled.groups.len()];
        for ((group, _), count) in &compiled.initial_counts {
            totals[*group] += count;
        }
        Self {
            shaping,
            bins: Vec::new(),
            free: Vec::new(),
            existing_remaining: compiled.existing.iter().map(|e| e.remaining.clone()).collect(),
            existing_ports: compiled.existing.iter().map(|e| e.host_ports.clone()).collect(),
            counts: compiled.initial_counts.clone(),
            totals,
            forbidden,
            memberships,
            placements: vec![Placement::Pending; compiled.pod_count],
            pool_remaining: compiled.pools.iter().map(|p| p.remaining.clone()).collect(),
            pool_nodes: compiled.pools.iter().map(|p| p.remaining_nodes).collect(),
            first_bin: vec![0; compiled.classes.len()],
            first_existing: vec![0; compiled.classes.len()],
            class_left: compiled.classes.iter().map(|c| c.pods.len()).collect(),
            reserved: vec![0; compiled.classes.len()],
            reserved_bins: vec![Vec::new(); compiled.classes.len()],
            next_hostname: 0,
        }
    }

    /// Recomputes [`Self::free`] for bin `b` after its contents, promises or target changed.
    pub(crate) fn refresh_free(&mut self, compiled: &Compiled, b: usize) {
        let bin = &self.bins[b];
        let mut free = compiled.pools[bin.pool].types[bin.target as usize].alloc.clone();
        free.sub(&bin.used);
        free.sub(&bin.reserved_room);
        if let Some(slot) = self.free.get_mut(b) {
            *slot = free;
        } else {
            self.free.push(free);
        }
    }

    pub(crate) fn count(&self, group: usize, domain: Sym) -> i64 {
        self.counts.get(&(group, domain)).copied().unwrap_or(0)
    }

    /// A fresh placeholder hostname for a new node: a symbol above every interned string, so
    /// nodes get distinct hostname domains without touching the shared interner.
    pub(crate) fn new_hostname(&mut self) -> Sym {
        self.next_hostname += 1;
        Sym(u32::MAX / 2 + self.next_hostname)
    }

    /// The domain a node has for `key`, when decided.
    pub(crate) fn existing_domain(compiled: &Compiled, node: &Existing, key: Sym) -> Option<Sym> {
        if key == compiled.keys.hostname {
            return Some(node.hostname);
        }
        node.requirements
            .get(key)
            .and_then(crate::requirements::Requirement::single)
    }
}
