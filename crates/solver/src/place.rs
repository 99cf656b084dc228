//! Placing one pod: on an existing node, on a node being built, or on a new node of the
//! highest-weight NodePool that can take it; relaxing preferences in Karpenter's order when nothing
//! fits, and explaining per NodePool why a pod cannot be placed.

use k8s_openapi::api::core::v1::Taint;

use crate::{
    compile::{Class, Compiled, Pool, TypeC},
    intern::Sym,
    lookahead::{Candidates, ShapeWeights, choose_target},
    pod::{HostPort, tolerates},
    problem::MinValuesPolicy,
    requirements::{Requirement, Requirements},
    resources::{Res, describe_amount},
    state::{Bin, Placement, State},
};

/// Which preferences are still honoured for one placement attempt.
// One flag per relaxation step of Karpenter's fixed order; a state machine would hide the order.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, Default)]
pub(crate) struct Attempt {
    /// Index of the required node-selector term in use.
    pub term: usize,
    /// Index of the preferred node term treated as required (`None` once all are dropped).
    pub preferred: usize,
    /// How many preferred pod affinity terms are dropped, heaviest first.
    pub dropped_affinity: usize,
    /// How many preferred pod anti-affinity terms are dropped, heaviest first.
    pub dropped_anti_affinity: usize,
    pub drop_soft_spread: bool,
    pub tolerate_prefer_no_schedule: bool,
}

impl Attempt {
    /// The first attempt, with every preference honoured.
    fn is_default(&self) -> bool {
        self.term == 0
            && self.preferred == 0
            && self.dropped_affinity == 0
            && self.dropped_anti_affinity == 0
            && !self.drop_soft_spread
            && !self.tolerate_prefer_no_schedule
    }

    /// Drops one preference, in Karpenter's order; false when nothing is left to relax.
    fn relax(&mut self, class: &Class, prefer_no_schedule_exists: bool) -> bool {
        if self.term + 1 < class.terms.len() {
            self.term += 1;
        } else if self.dropped_affinity < class.affinity.iter().filter(|a| !a.anti && !a.required).count() {
            self.dropped_affinity += 1;
        } else if self.dropped_anti_affinity < class.affinity.iter().filter(|a| a.anti && !a.required).count()
        {
            self.dropped_anti_affinity += 1;
        } else if self.preferred < class.preferred.len() {
            self.preferred += 1;
        } else if !self.drop_soft_spread && class.spread.iter().any(|s| !s.required) {
            self.drop_soft_spread = true;
        } else if !self.tolerate_prefer_no_schedule && prefer_no_schedule_exists {
            self.tolerate_prefer_no_schedule = true;
        } else {
            return false;
        }
        true
    }

    /// Whether a preferred (anti-)affinity term is still honoured: the heaviest terms of each kind
    /// are dropped first, one per relaxation step (Karpenter's order).
    fn honours(&self, class: &Class, term: &crate::compile::AffinityC) -> bool {
        if term.required {
            return true;
        }
        let dropped = if term.anti {
            self.dropped_anti_affinity
        } else {
            self.dropped_affinity
        };
        let heavier = class
            .affinity
            .iter()
            .filter(|a| !a.required && a.anti == term.anti && a.weight > term.weight)
            .count();
        heavier >= dropped
    }

    /// The node requirements this attempt asks for.
    fn requirements(&self, class: &Class, compiled: &Compiled) -> Requirements {
        let mut requirements = class.terms.get(self.term).cloned().unwrap_or_default();
        if let Some(preferred) = class.preferred.get(self.preferred) {
            requirements.add_all(preferred, &compiled.interner);
        }
        requirements
    }
}

/// What a successful check decided.
struct Fit {
    /// Whether `minValues` had to be lowered (`BestEffort`).
    min_values_relaxed: bool,
    /// Pods of other classes a new node is shaped to hold (empty for existing bins).
    pattern: Vec<(usize, i64)>,
    /// `None` when the node's requirements did not change.
    requirements: Option<Requirements>,
    /// `None` when the candidate types did not change.
    types: Option<std::sync::Arc<[u32]>>,
    target: u32,
}

/// Why a node refused a pod, and whether it will refuse every later pod of the class too (nodes
/// only fill up, narrow and gain topology members, so resource, taint, port, requirement and
/// hostname-count refusals stand).
///
/// The reason is a small value rendered into words only when someone asks ([`Why::describe`]):
/// refusals happen on every node a pod is tried against, explanations rarely.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refusal {
    pub permanent: bool,
    pub why: Why,
}

/// What refused a pod.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Why {
    NoRoom,
    HostPort,
    /// Taint `taint` of existing node `node`.
    Taint {
        node: usize,
        taint: usize,
    },
    /// The labels of existing node `node` do not meet the pod's requirements.
    Requirements {
        node: usize,
    },
    SpreadExceeded {
        key: Sym,
        max_skew: i64,
    },
    SpreadUnsatisfiable {
        key: Sym,
        max_skew: i64,
    },
    Affinity {
        key: Sym,
        anti: bool,
    },
    /// A placed pod's required anti-affinity forbids this domain.
    AntiAffinityOf {
        key: Sym,
        domain: Sym,
    },
    /// Placed pods' anti-affinity forbids every domain of the key.
    AntiAffinityEverywhere {
        key: Sym,
    },
}

impl Why {
    /// The reason in words; `requirements` are the pod's (for requirement refusals).
    pub(crate) fn describe(self, compiled: &Compiled, requirements: &Requirements) -> String {
        let name = |key: Sym| compiled.interner.resolve(key);
        match self {
            Self::NoRoom => "not enough free resources".to_owned(),
            Self::HostPort => "host port conflict".to_owned(),
            Self::Taint { node, taint } => compiled.existing[node]
                .taints
                .get(taint)
                .map_or_else(|| "a taint is not tolerated".to_owned(), describe_taint),
            Self::Requirements { node } => compiled.existing[node]
                .requirements
                .compatible(requirements, &|_| false, &compiled.interner)
                .err()
                .map_or_else(
                    || "node labels do not match".to_owned(),
                    |i| i.describe(&compiled.interner),
                ),
            Self::SpreadExceeded { key, max_skew } => {
                format!(
                    "topology spread on {} (maxSkew {max_skew}) would be exceeded",
                    name(key)
                )
            }
            Self::SpreadUnsatisfiable { key, max_skew } => {
                format!(
                    "topology spread on {} (maxSkew {max_skew}) cannot be satisfied",
                    name(key)
                )
            }
            Self::Affinity { key, anti } => {
                let kind = if anti { "pod anti-affinity" } else { "pod affinity" };
                format!("{kind} on {} cannot be satisfied", name(key))
            }
            Self::AntiAffinityOf { key, domain } => {
                format!("pod anti-affinity of a pod in {} {}", name(key), name(domain))
            }
            Self::AntiAffinityEverywhere { key } => {
                format!("pod anti-affinity of pods in every {}", name(key))
            }
        }
    }
}

impl Refusal {
    fn permanent(why: Why) -> Self {
        Self { permanent: true, why }
    }

    fn passing(why: Why) -> Self {
        Self {
            permanent: false,
            why,
        }
    }
}

/// A node that can take pods, seen uniformly by the topology checks.
#[derive(Clone, Copy)]
enum Node<'a> {
    Existing(usize),
    Building {
        hostname: Sym,
        requirements: &'a Requirements,
    },
}

pub(crate) fn place_pod(
    compiled: &Compiled,
    state: &mut State,
    weights: &mut ShapeWeights,
    class: usize,
    pod: usize,
) {
    let prefer_no_schedule = compiled
        .pools
        .iter()
        .any(|p| p.taints.iter().any(|t| t.effect == "PreferNoSchedule"));
    if !compiled.classes[class].problems.is_empty() {
        state.placements[pod] = Placement::Unschedulable(compiled.classes[class].problems.clone());
        return;
    }
    let mut attempt = Attempt::default();
    loop {
        if try_place(compiled, state, weights, class, pod, &attempt) {
            release_unneeded(compiled, state, class);
            return;
        }
        if !attempt.relax(&compiled.classes[class], prefer_no_schedule) {
            let reasons = explain(compiled, state, class, &Attempt::default());
            state.placements[pod] = Placement::Unschedulable(reasons);
            release_unneeded(compiled, state, class);
            return;
        }
    }
}

/// Once a pod of `class` is handled, reservations for the class beyond the pods still to come
/// (counting this one as handled) are freed, so promised room never stays empty for pods that
/// went elsewhere.
fn release_unneeded(compiled: &Compiled, state: &mut State, class: usize) {
    let still_to_come = state.class_left[class].saturating_sub(1);
    while state.reserved[class] > still_to_come {
        let Some(&b) = state.reserved_bins[class].last() else {
            break;
        };
        let bin = &mut state.bins[b];
        match bin.reservations.iter_mut().find(|(k, n)| *k == class && *n > 0) {
            Some(entry) => {
                entry.1 -= 1;
                bin.reserved_room.sub(&compiled.classes[class].requests);
                state.free[b].add(&compiled.classes[class].requests);
                state.reserved[class] -= 1;
            }
            None => {
                state.reserved_bins[class].pop();
            }
        }
    }
}

fn try_place(
    compiled: &Compiled,
    state: &mut State,
    weights: &mut ShapeWeights,
    class: usize,
    pod: usize,
    attempt: &Attempt,
) -> bool {
    let requirements = attempt.requirements(&compiled.classes[class], compiled);
    // Nodes that refused a class for good are skipped by its later pods. Only the unrelaxed
    // attempt records this: relaxed attempts ask for different things.
    let record_refusals = attempt.is_default();
    // Existing nodes: their capacity is already paid for.
    let mut skipping = record_refusals;
    let first = if record_refusals {
        state.first_existing[class]
    } else {
        0
    };
    for node in first..compiled.existing.len() {
        match check_existing(compiled, state, class, attempt, &requirements, node) {
            Ok(()) => {
                commit_existing(compiled, state, class, pod, node);
                return true;
            }
            Err(refusal) => {
                skipping &= refusal.permanent;
                if skipping {
                    state.first_existing[class] = node + 1;
                }
            }
        }
    }
    // Nodes shaped for this class, holding a reservation for it.
    if record_refusals {
        let mut i = 0;
        while i < state.reserved_bins[class].len() {
            let b = state.reserved_bins[class][i];
            if state.bins[b].reservation(class) <= 0 {
                state.reserved_bins[class].swap_remove(i);
                continue;
            }
            if let Ok(fit) = check_bin(compiled, state, class, attempt, &requirements, b, true) {
                commit_bin(compiled, state, class, pod, b, fit, true);
                return true;
            }
            i += 1;
        }
    }
    // Nodes being built in this solve.
    let mut skipping = record_refusals;
    let first = if record_refusals {
        state.first_bin[class]
    } else {
        0
    };
    let requests = &compiled.classes[class].requests;
    for b in first..state.bins.len() {
        // Room promised to other classes is not free. Most bins refuse here, for good (a
        // bin only fills up), and this runs per pod per bin: checked before anything else.
        let checked = if requests.fits_in(&state.free[b]) {
            check_bin(compiled, state, class, attempt, &requirements, b, false)
        } else {
            Err(true)
        };
        match checked {
            Ok(fit) => {
                commit_bin(compiled, state, class, pod, b, fit, false);
                return true;
            }
            Err(permanent) => {
                skipping &= permanent;
                if skipping {
                    state.first_bin[class] = b + 1;
                }
            }
        }
    }
    // A new node, from the highest-weight NodePool that can take the pod.
    let mut order: Vec<usize> = (0..compiled.pools.len()).collect();
    order.sort_by(|a, b| {
        compiled.pools[*b]
            .weight
            .cmp(&compiled.pools[*a].weight)
            .then_with(|| compiled.pools[*b].name.cmp(&compiled.pools[*a].name))
    });
    for pool in order {
        if let Ok(fit) = check_new(compiled, state, weights, class, attempt, &requirements, pool) {
            open_bin(compiled, state, class, pod, pool, fit);
            return true;
        }
    }
    false
}

fn describe_taint(t: &Taint) -> String {
    format!(
        "taint {}{}:{} not tolerated",
        t.key,
        t.value.as_ref().map(|v| format!("={v}")).unwrap_or_default(),
        t.effect
    )
}

/// The first taint the class does not tolerate.
fn blocking_taint(taints: &[Taint], class: &Class, attempt: &Attempt) -> Option<usize> {
    taints.iter().position(|t| {
        let relaxed = t.effect == "PreferNoSchedule" && attempt.tolerate_prefer_no_schedule;
        !relaxed && !tolerates(&class.tolerations, t)
    })
}

fn taint_blocks(taints: &[Taint], class: &Class, attempt: &Attempt) -> Option<String> {
    blocking_taint(taints, class, attempt).map(|i| describe_taint(&taints[i]))
}

fn ports_conflict(used: &[HostPort], wanted: &[HostPort]) -> bool {
    wanted.iter().any(|w| used.iter().any(|u| u.conflicts(w)))
}

fn check_existing(
    compiled: &Compiled,
    state: &State,
    class: usize,
    attempt: &Attempt,
    requirements: &Requirements,
    node: usize,
) -> Result<(), Refusal> {
    let c = &compiled.classes[class];
    let e = &compiled.existing[node];
    if !c.requests.fits_in(&state.existing_remaining[node]) {
        return Err(Refusal::permanent(Why::NoRoom));
    }
    if let Some(taint) = blocking_taint(&e.taints, c, attempt) {
        return Err(Refusal::permanent(Why::Taint { node, taint }));
    }
    if ports_conflict(&state.existing_ports[node], &c.host_ports) {
        return Err(Refusal::permanent(Why::HostPort));
    }
    if e.requirements
        .compatible(requirements, &|_| false, &compiled.interner)
        .is_err()
    {
        return Err(Refusal::permanent(Why::Requirements { node }));
    }
    if !needs_topology(state, c, class) {
        return Ok(());
    }
    let mut unused = Requirements::new();
    topology(
        compiled,
        state,
        class,
        attempt,
        requirements,
        Node::Existing(node),
        &mut unused,
    )
}

fn check_bin(
    compiled: &Compiled,
    state: &State,
    class: usize,
    attempt: &Attempt,
    requirements: &Requirements,
    b: usize,
    reserved: bool,
) -> Result<Fit, bool> {
    let c = &compiled.classes[class];
    let bin = &state.bins[b];
    let pool = &compiled.pools[bin.pool];
    // Room promised to other classes is not free; a pod using its own reservation takes room
    // already counted.
    if !reserved && !c.requests.fits_in(&state.free[b]) {
        return Err(true);
    }
    if blocking_taint(&pool.taints, c, attempt).is_some() || ports_conflict(&bin.host_ports, &c.host_ports) {
        return Err(true);
    }
    let well_known = |k: Sym| compiled.is_well_known(k);
    if bin
        .requirements
        .compatible(requirements, &well_known, &compiled.interner)
        .is_err()
    {
        return Err(true);
    }
    // Copied only when something narrows the bin's requirements: most pods ask for nothing
    // the bin does not already have.
    let mut merged = std::borrow::Cow::Borrowed(&bin.requirements);
    if !requirements.is_empty() {
        merged.to_mut().add_all(requirements, &compiled.interner);
    }
    if merged.has_empty().is_some() {
        return Err(true);
    }
    if needs_topology(state, c, class) {
        let mut narrowed = merged.clone().into_owned();
        topology(
            compiled,
            state,
            class,
            attempt,
            requirements,
            Node::Building {
                hostname: bin.hostname,
                requirements: &merged,
            },
            &mut narrowed,
        )
        .map_err(|refusal| refusal.permanent)?;
        merged = std::borrow::Cow::Owned(narrowed);
    }
    if *merged == bin.requirements {
        return Ok(Fit {
            min_values_relaxed: false,
            pattern: Vec::new(),
            requirements: None,
            types: None,
            target: bin.target,
        });
    }
    let mut merged = merged.into_owned();
    let mut needed = bin.used.clone();
    needed.add(&bin.reserved_room);
    if !reserved {
        needed.add(&c.requests);
    }
    let types = compiled.allowed_types(bin.pool, &merged);
    let mut relaxed = false;
    if has_min_values(&merged) {
        let fitting: Vec<u32> = types
            .iter()
            .copied()
            .filter(|t| needed.fits_in(&pool.types[*t as usize].alloc))
            .collect();
        relaxed = enforce_min_values(compiled, pool, &fitting, &mut merged).map_err(|()| false)?;
    }
    let target = if types.contains(&bin.target) {
        bin.target
    } else {
        // The shape the bin was opened for no longer fits the requirements: take the cheapest
        // remaining type that holds what the bin will carry.
        *types
            .iter()
            .find(|t| needed.fits_in(&pool.types[**t as usize].alloc))
            .ok_or(false)?
    };
    Ok(Fit {
        min_values_relaxed: relaxed,
        pattern: Vec::new(),
        requirements: Some(merged),
        types: Some(types),
        target,
    })
}

fn has_min_values(requirements: &Requirements) -> bool {
    requirements.iter().any(|(_, r)| r.min_values.is_some())
}

fn check_new(
    compiled: &Compiled,
    state: &State,
    weights: &mut ShapeWeights,
    class: usize,
    attempt: &Attempt,
    requirements: &Requirements,
    p: usize,
) -> Result<Fit, String> {
    let c = &compiled.classes[class];
    let pool = &compiled.pools[p];
    if state.pool_nodes[p].is_some_and(|n| n <= 0) {
        return Err("limits reached (nodes)".into());
    }
    if let Some(reason) = taint_blocks(&pool.taints, c, attempt) {
        return Err(reason);
    }
    let well_known = |k: Sym| compiled.is_well_known(k);
    pool.requirements
        .compatible(requirements, &well_known, &compiled.interner)
        .map_err(|i| i.describe(&compiled.interner))?;
    let mut merged = pool.requirements.clone();
    merged.add_all(requirements, &compiled.interner);
    if let Some(key) = merged.has_empty() {
        return Err(format!(
            "requirements on {} cannot all hold",
            compiled.interner.resolve(key)
        ));
    }
    // A node not yet opened has no hostname; no pod counts against this one.
    let placeholder = Sym(u32::MAX);
    if needs_topology(state, c, class) {
        let before = merged.clone();
        topology(
            compiled,
            state,
            class,
            attempt,
            requirements,
            Node::Building {
                hostname: placeholder,
                requirements: &before,
            },
            &mut merged,
        )
        .map_err(|refusal| refusal.why.describe(compiled, requirements))?;
    }
    let remaining = &state.pool_remaining[p];
    let list = compiled.allowed_types(p, &merged);
    // A class that is its own family gets the same shape while more of its pods wait than any
    // simulated node took, or as many as when it was chosen (and limits cannot intervene).
    let cap = crate::lookahead::per_node_cap(compiled, state, class);
    let waiting = crate::lookahead::waiting_of(state, class, true, cap);
    let cacheable = state.pool_remaining[p].iter().all(Option::is_none) && !has_min_values(&merged);
    let key = cacheable.then(|| (p, merged.clone(), class));
    if let Some(key) = &key
        && let Some(fixed) = weights.fixed_shapes.get(key).filter(|f| f.holds_for(waiting))
    {
        return Ok(Fit {
            min_values_relaxed: false,
            pattern: if attempt.is_default() {
                fixed.pattern.clone()
            } else {
                Vec::new()
            },
            requirements: Some(merged),
            types: Some(list),
            target: fixed.target,
        });
    }
    let fits = |t: u32| {
        let ty = &pool.types[t as usize];
        c.requests.fits_in(&ty.alloc) && within_limits(&ty.capacity, remaining)
    };
    let Some(candidates) = Candidates::new(&list, pool.types.len(), &fits) else {
        return Err(no_type_reason(compiled, pool, c, &merged, remaining));
    };
    let relaxed = has_min_values(&merged)
        && enforce_min_values(
            compiled,
            pool,
            &candidates.iter().collect::<Vec<u32>>(),
            &mut merged,
        )
        .map_err(|()| "minValues cannot be met by the instance types that fit".to_owned())?;
    let shape = choose_target(compiled, state, weights, p, &candidates, class);
    let target = shape.target;
    if let Some(key) = key
        && let Some(stable_above) = shape.stable_above
    {
        let fixed = crate::lookahead::FixedShape {
            target,
            pattern: shape.pattern.clone(),
            stable_above,
            computed_for: waiting,
        };
        weights.fixed_shapes.insert(key, fixed);
    }
    Ok(Fit {
        min_values_relaxed: relaxed,
        pattern: if attempt.is_default() {
            shape.pattern
        } else {
            Vec::new()
        },
        requirements: Some(merged),
        types: Some(list),
        target,
    })
}

fn within_limits(capacity: &Res, remaining: &[Option<i64>]) -> bool {
    capacity
        .0
        .iter()
        .zip(remaining)
        .all(|(need, left)| left.is_none_or(|l| *need <= l))
}

/// Whether a type can serve a node with these requirements: its labels are allowed and it has an
/// offering in an allowed zone and capacity type.
pub(crate) fn type_allowed(
    compiled: &Compiled,
    _pool: &Pool,
    ty: &TypeC,
    requirements: &Requirements,
) -> bool {
    let keys = compiled.keys;
    for (key, requirement) in requirements.iter() {
        if key == keys.zone || key == keys.capacity_type {
            continue;
        }
        if let Some(value) = ty.label(key)
            && !requirement.has(value, &compiled.interner)
        {
            return false;
        }
    }
    allowed_offering(compiled, ty, requirements).is_some()
}

/// The cheapest offering of a type in an allowed zone and capacity type.
pub(crate) fn allowed_offering<'a>(
    compiled: &Compiled,
    ty: &'a TypeC,
    requirements: &Requirements,
) -> Option<&'a crate::compile::OfferingC> {
    let zone = requirements.get(compiled.keys.zone);
    let capacity_type = requirements.get(compiled.keys.capacity_type);
    ty.offerings.iter().find(|o| {
        zone.is_none_or(|r| r.has(o.zone, &compiled.interner))
            && capacity_type.is_none_or(|r| r.has(o.capacity_type, &compiled.interner))
    })
}

/// Checks `minValues`: the types left must offer that many distinct values per key. Under
/// `BestEffort` a shortfall lowers `minValues` to what the types achieve (reported as relaxed);
/// under `Strict` it fails. Returns whether anything was relaxed.
fn enforce_min_values(
    compiled: &Compiled,
    pool: &Pool,
    types: &[u32],
    requirements: &mut Requirements,
) -> Result<bool, ()> {
    let mut relaxed = false;
    let keys: Vec<(Sym, u32)> = requirements
        .iter()
        .filter_map(|(k, r)| r.min_values.map(|m| (k, m)))
        .collect();
    for (key, min) in keys {
        let mut values: Vec<Sym> = types
            .iter()
            .filter_map(|t| pool.types[*t as usize].label(key))
            .collect();
        values.sort_unstable();
        values.dedup();
        let achieved = u32::try_from(values.len()).unwrap_or(u32::MAX);
        if achieved >= min {
            continue;
        }
        if compiled.min_values_policy == MinValuesPolicy::Strict || achieved == 0 {
            return Err(());
        }
        if let Some(mut requirement) = requirements.get(key).cloned() {
            requirement.min_values = Some(achieved);
            requirements.set(key, requirement);
            relaxed = true;
        }
    }
    Ok(relaxed)
}

fn no_type_reason(
    compiled: &Compiled,
    pool: &Pool,
    class: &Class,
    merged: &Requirements,
    remaining: &[Option<i64>],
) -> String {
    let compatible: Vec<&TypeC> = pool
        .types
        .iter()
        .filter(|t| type_allowed(compiled, pool, t, merged))
        .collect();
    let needs: Vec<String> = class
        .requests
        .0
        .iter()
        .enumerate()
        .filter(|(d, v)| **v > 0 && *d != crate::resources::Dimensions::PODS)
        .map(|(d, v)| describe_amount(compiled.dims.name(d), *v))
        .collect();
    if compatible.is_empty() {
        let constrained: Vec<String> = merged
            .iter()
            .filter(|(k, _)| *k != compiled.keys.nodepool)
            .map(|(k, r)| {
                format!(
                    "{} {}",
                    compiled.interner.resolve(k),
                    r.display(&compiled.interner)
                )
            })
            .collect();
        return format!("no instance type satisfies {}", constrained.join(", "));
    }
    if compatible.iter().all(|t| !class.requests.fits_in(&t.alloc)) {
        return format!(
            "no instance type meeting the requirements has {} allocatable",
            needs.join(" and ")
        );
    }
    if compatible.iter().all(|t| !within_limits(&t.capacity, remaining)) {
        return "limits reached: no instance type that fits stays within the NodePool's limits".into();
    }
    "no instance type fits".into()
}

/// Applies spread, affinity and anti-affinity for a pod going to `node`; for a node being built,
/// narrows `requirements` to the domains allowed (collapsing a key to one domain when a constraint
/// needs a decision). Errors say which constraint failed.
/// Whether [`topology`] has anything to check for the class: its own spread or (anti-)affinity
/// terms, or required anti-affinity of placed pods against a group it belongs to. Skipping the
/// call otherwise saves copying requirements on every candidate node.
fn needs_topology(state: &State, c: &Class, class: usize) -> bool {
    !c.spread.is_empty()
        || !c.affinity.is_empty()
        || state.memberships[class]
            .iter()
            .any(|&group| !state.forbidden[group].is_empty())
}

#[allow(clippy::too_many_arguments)]
fn topology(
    compiled: &Compiled,
    state: &State,
    class: usize,
    attempt: &Attempt,
    pod_requirements: &Requirements,
    node: Node<'_>,
    requirements: &mut Requirements,
) -> Result<(), Refusal> {
    spread(
        compiled,
        state,
        class,
        attempt,
        pod_requirements,
        node,
        requirements,
    )?;
    pod_affinity(compiled, state, class, attempt, node, requirements)?;
    inverse_anti_affinity(compiled, state, class, node, requirements)
}

/// Topology spread constraints of the pod; `pod_requirements` are the node requirements
/// `attempt` asks for.
fn spread(
    compiled: &Compiled,
    state: &State,
    class: usize,
    attempt: &Attempt,
    pod_requirements: &Requirements,
    node: Node<'_>,
    requirements: &mut Requirements,
) -> Result<(), Refusal> {
    let c = &compiled.classes[class];
    let interner = &compiled.interner;
    for spread in c
        .spread
        .iter()
        .filter(|s| s.required || !attempt.drop_soft_spread)
    {
        if spread.key == compiled.keys.hostname {
            let domain = domain_of(compiled, node, spread.key).unwrap_or(Sym(u32::MAX));
            if state.count(spread.group, domain) + 1 > spread.max_skew {
                // Counts on a node only grow: this node stays closed to the class.
                return Err(Refusal::permanent(Why::SpreadExceeded {
                    key: spread.key,
                    max_skew: spread.max_skew,
                }));
            }
            continue;
        }
        // Borrowed unless taints narrow the domains: this runs per pod per candidate node.
        let domains: std::borrow::Cow<'_, [Sym]> = if spread.honor_node_taints {
            std::borrow::Cow::Owned(tolerated_domains(compiled, c, spread.key))
        } else {
            std::borrow::Cow::Borrowed(universe(compiled, spread.key))
        };
        let pod_allows = pod_requirements.get(spread.key);
        let eligible = || {
            domains
                .iter()
                .copied()
                .filter(|d| !spread.honor_node_affinity || pod_allows.is_none_or(|r| r.has(*d, interner)))
        };
        let too_few = spread
            .min_domains
            .is_some_and(|m| i64::try_from(eligible().count()).is_ok_and(|n| n < m));
        let min = if too_few {
            0
        } else {
            eligible()
                .map(|d| state.count(spread.group, d))
                .min()
                .unwrap_or(0)
        };
        let allowed = |d: Sym| state.count(spread.group, d) + 1 - min <= spread.max_skew;
        match node {
            Node::Existing(_) => {
                let domain = domain_of(compiled, node, spread.key);
                if !domain.is_some_and(|d| eligible().any(|e| e == d) && allowed(d)) {
                    return Err(Refusal::passing(Why::SpreadExceeded {
                        key: spread.key,
                        max_skew: spread.max_skew,
                    }));
                }
            }
            Node::Building { .. } => {
                let current = requirements.get(spread.key).cloned();
                let best = eligible()
                    .filter(|d| current.as_ref().is_none_or(|r| r.has(*d, interner)) && allowed(*d))
                    .min_by_key(|d| (state.count(spread.group, *d), *d))
                    .ok_or(Refusal::passing(Why::SpreadUnsatisfiable {
                        key: spread.key,
                        max_skew: spread.max_skew,
                    }))?;
                requirements.add(spread.key, Requirement::one_of(vec![best]), interner);
            }
        }
    }
    Ok(())
}

/// The pod's own affinity and anti-affinity terms.
fn pod_affinity(
    compiled: &Compiled,
    state: &State,
    class: usize,
    attempt: &Attempt,
    node: Node<'_>,
    requirements: &mut Requirements,
) -> Result<(), Refusal> {
    let c = &compiled.classes[class];
    let interner = &compiled.interner;
    for term in c.affinity.iter().filter(|a| attempt.honours(c, a)) {
        let member = state.memberships[class].contains(&term.group);
        let ok = |d: Sym| {
            let count = state.count(term.group, d);
            if term.anti {
                count == 0
            } else {
                count > 0 || (state.totals[term.group] == 0 && member)
            }
        };
        match (node, term.key == compiled.keys.hostname) {
            (Node::Existing(_), _) | (Node::Building { .. }, true) => {
                let domain = domain_of(compiled, node, term.key);
                if !domain.is_some_and(ok) {
                    // Anti-affinity counts only grow; affinity may be met later.
                    let refusal = if term.anti {
                        Refusal::permanent
                    } else {
                        Refusal::passing
                    };
                    return Err(refusal(Why::Affinity {
                        key: term.key,
                        anti: term.anti,
                    }));
                }
            }
            (Node::Building { .. }, false) => {
                let current = requirements.get(term.key).cloned();
                let best = universe(compiled, term.key)
                    .iter()
                    .copied()
                    .filter(|d| current.as_ref().is_none_or(|r| r.has(*d, interner)) && ok(*d))
                    .min_by_key(|d| (std::cmp::Reverse(state.count(term.group, *d)), *d))
                    .ok_or(Refusal::passing(Why::Affinity {
                        key: term.key,
                        anti: term.anti,
                    }))?;
                requirements.add(term.key, Requirement::one_of(vec![best]), interner);
            }
        }
    }
    Ok(())
}

/// Required anti-affinity of pods already placed keeps the pods they select out of their domains.
fn inverse_anti_affinity(
    compiled: &Compiled,
    state: &State,
    class: usize,
    node: Node<'_>,
    requirements: &mut Requirements,
) -> Result<(), Refusal> {
    let interner = &compiled.interner;
    for &group in &state.memberships[class] {
        let key = compiled.groups[group].key;
        if let (Node::Existing(_), _) | (Node::Building { .. }, true) = (node, key == compiled.keys.hostname)
        {
            if let Some(domain) = domain_of(compiled, node, key)
                && state.forbidden[group].contains(&domain)
            {
                return Err(Refusal::permanent(Why::AntiAffinityOf { key, domain }));
            }
            continue;
        }
        // Only a node still being built on a non-hostname key is left here.
        if state.forbidden[group].is_empty() {
            continue;
        }
        let forbidden: Vec<Sym> = state.forbidden[group].iter().copied().collect();
        requirements.add(
            key,
            Requirement::from_operator(nodewright_api::Operator::NotIn, &forbidden, interner),
            interner,
        );
        if requirements.get(key).is_some_and(Requirement::is_empty) {
            return Err(Refusal::permanent(Why::AntiAffinityEverywhere { key }));
        }
    }
    Ok(())
}

fn domain_of(compiled: &Compiled, node: Node<'_>, key: Sym) -> Option<Sym> {
    match node {
        Node::Existing(i) => State::existing_domain(compiled, &compiled.existing[i], key),
        Node::Building {
            hostname,
            requirements,
        } => {
            if key == compiled.keys.hostname {
                Some(hostname)
            } else {
                requirements.get(key).and_then(Requirement::single)
            }
        }
    }
}

fn universe(compiled: &Compiled, key: Sym) -> &[Sym] {
    compiled.universes.get(&key).map_or(&[], |d| d.all.as_slice())
}

/// Domains of `key` on nodes whose taints the class tolerates (`nodeTaintsPolicy: Honor`).
fn tolerated_domains(compiled: &Compiled, class: &Class, key: Sym) -> Vec<Sym> {
    let Some(domains) = compiled.universes.get(&key) else {
        return Vec::new();
    };
    let tolerated = |taints: &[Taint]| {
        taints
            .iter()
            .filter(|t| t.effect != "PreferNoSchedule")
            .all(|t| tolerates(&class.tolerations, t))
    };
    let mut values: Vec<Sym> = domains
        .by_pool
        .iter()
        .zip(&compiled.pools)
        .filter(|(_, pool)| tolerated(&pool.taints))
        .flat_map(|(values, _)| values.iter().copied())
        .chain(
            domains
                .by_node
                .iter()
                .filter(|(n, _)| tolerated(&compiled.existing[*n].taints))
                .map(|(_, d)| *d),
        )
        .collect();
    values.sort_unstable();
    values.dedup();
    values
}

fn record(compiled: &Compiled, state: &mut State, class: usize, node: Node<'_>) {
    for i in 0..state.memberships[class].len() {
        let group = state.memberships[class][i];
        if let Some(domain) = domain_of(compiled, node, compiled.groups[group].key) {
            *state.counts.entry((group, domain)).or_insert(0) += 1;
            state.totals[group] += 1;
        }
    }
    // Only required anti-affinity binds pods that come later (kube-scheduler filters on required
    // terms of placed pods; preferred ones only score).
    for term in compiled.classes[class]
        .affinity
        .iter()
        .filter(|a| a.anti && a.required)
    {
        if let Some(domain) = domain_of(compiled, node, term.key) {
            state.forbidden[term.group].insert(domain);
        }
    }
}

fn commit_existing(compiled: &Compiled, state: &mut State, class: usize, pod: usize, node: usize) {
    let c = &compiled.classes[class];
    state.existing_remaining[node].sub(&c.requests);
    state.existing_ports[node].extend(c.host_ports.iter().cloned());
    state.placements[pod] = Placement::Existing(node);
    record(compiled, state, class, Node::Existing(node));
}

#[allow(clippy::too_many_arguments)]
fn commit_bin(
    compiled: &Compiled,
    state: &mut State,
    class: usize,
    pod: usize,
    b: usize,
    fit: Fit,
    reserved: bool,
) {
    let c = &compiled.classes[class];
    let bin = &mut state.bins[b];
    bin.used.add(&c.requests);
    if reserved {
        if let Some(entry) = bin.reservations.iter_mut().find(|(k, _)| *k == class) {
            entry.1 -= 1;
        }
        bin.reserved_room.sub(&c.requests);
        state.reserved[class] = state.reserved[class].saturating_sub(1);
    }
    let bin = &mut state.bins[b];
    if let Some(requirements) = fit.requirements {
        bin.requirements = requirements;
    }
    if let Some(types) = fit.types {
        bin.types = types;
    }
    bin.target = fit.target;
    bin.min_values_relaxed |= fit.min_values_relaxed;
    bin.pods.push(pod);
    bin.classes.push(class);
    bin.host_ports.extend(c.host_ports.iter().cloned());
    state.placements[pod] = Placement::Bin(b);
    for (promised, count) in fit.pattern {
        let room = compiled.classes[promised].requests.scaled(count);
        let bin = &mut state.bins[b];
        bin.reserved_room.add(&room);
        bin.reservations.push((promised, count));
        state.reserved[promised] += usize::try_from(count).unwrap_or(0);
        state.reserved_bins[promised].push(b);
    }
    state.refresh_free(compiled, b);
    // Lent out of the bin for the call (record reads the node's domains and writes counts).
    let requirements = std::mem::take(&mut state.bins[b].requirements);
    let hostname = state.bins[b].hostname;
    record(
        compiled,
        state,
        class,
        Node::Building {
            hostname,
            requirements: &requirements,
        },
    );
    state.bins[b].requirements = requirements;
}

fn open_bin(compiled: &Compiled, state: &mut State, class: usize, pod: usize, pool: usize, mut fit: Fit) {
    let hostname = state.new_hostname();
    let target = &compiled.pools[pool].types[fit.target as usize];
    for (left, need) in state.pool_remaining[pool].iter_mut().zip(&target.capacity.0) {
        if let Some(left) = left {
            *left -= need;
        }
    }
    if let Some(nodes) = state.pool_nodes[pool].as_mut() {
        *nodes -= 1;
    }
    state.bins.push(Bin {
        pool,
        requirements: fit.requirements.take().unwrap_or_default(),
        types: fit
            .types
            .clone()
            .unwrap_or_else(|| std::sync::Arc::from(Vec::new())),
        target: fit.target,
        used: Res::zero(compiled.dims.len()),
        pods: Vec::new(),
        classes: Vec::new(),
        host_ports: Vec::new(),
        hostname,
        reservations: Vec::new(),
        reserved_room: Res::zero(compiled.dims.len()),
        min_values_relaxed: false,
    });
    let b = state.bins.len() - 1;
    state.refresh_free(compiled, b);
    commit_bin(compiled, state, class, pod, b, fit, false);
}

/// One reason per NodePool for a pod that nothing can take.
/// Why no existing node takes a pod, counted per reason as kube-scheduler words it:
/// `0/3 nodes are available: 2 not enough free resources, 1 taint a=b:NoSchedule not tolerated`.
fn existing_summary(
    compiled: &Compiled,
    state: &State,
    class: usize,
    attempt: &Attempt,
    requirements: &Requirements,
) -> String {
    let total = compiled.existing.len();
    if total == 0 {
        return "no NodePool is ready to launch nodes, and there are no nodes".to_owned();
    }
    let mut counts: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for node in 0..total {
        let reason = match check_existing(compiled, state, class, attempt, requirements, node) {
            Ok(()) => "fits, but not together with the pods placed before it".to_owned(),
            Err(refusal) => refusal.why.describe(compiled, requirements),
        };
        *counts.entry(reason).or_default() += 1;
    }
    let mut counted: Vec<(String, usize)> = counts.into_iter().collect();
    // Most common first, then by text, so the message is stable.
    counted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let parts: Vec<String> = counted
        .iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect();
    format!("0/{total} nodes are available: {}", parts.join(", "))
}

fn explain(compiled: &Compiled, state: &State, class: usize, attempt: &Attempt) -> Vec<String> {
    let c = &compiled.classes[class];
    let requirements = attempt.requirements(c, compiled);
    if compiled.pools.is_empty() {
        return vec![existing_summary(compiled, state, class, attempt, &requirements)];
    }
    let mut reasons = Vec::new();
    for (p, pool) in compiled.pools.iter().enumerate() {
        let reason = if pool.types.is_empty() {
            "no instance type is available".to_owned()
        } else {
            let mut weights = ShapeWeights::default();
            match check_new(compiled, state, &mut weights, class, attempt, &requirements, p) {
                Ok(_) => "the pod fits a new node, but its constraints failed with the pods placed before it"
                    .to_owned(),
                Err(reason) => reason,
            }
        };
        reasons.push(format!("nodepool {}: {reason}", pool.name));
    }
    reasons
}
