//! Choosing a new node's shape. Karpenter keeps filling a NodeClaim until its largest allowed type
//! is full; Nodewright instead picks, when a node opens, the instance type that packs the pods
//! still waiting at the lowest price per unit of useful resource. "Useful" is weighed by shadow
//! prices from the LP relaxation of the remaining demand, so a type is judged by the resources
//! that actually bind (CPU for CPU-heavy pods, memory for memory-heavy ones).

use std::collections::HashMap;

use crate::{compile::Compiled, lower_bound::shadow_prices, resources::Res, state::State};

/// Shadow prices per (family, pool), computed once per solve.
#[derive(Debug, Default)]
pub(crate) struct ShapeWeights {
    cache: HashMap<(usize, usize), Weighed>,
    /// Shapes chosen for classes that are a family of their own: the target, the waiting count
    /// above which the choice cannot change (no simulated node ran out of the class's pods), and
    /// the waiting count it was computed for (the same count gives the same choice; for a class
    /// capped per node, such as hostname anti-affinity, the count stays at the cap).
    pub(crate) fixed_shapes: HashMap<(usize, crate::requirements::Requirements, usize), FixedShape>,
}

/// One (family, pool)'s resource weights, and every type of the pool valued by them once, so a
/// new node's shortlist is a lookup per candidate rather than a dot product.
#[derive(Debug)]
struct Weighed {
    weights: Vec<f64>,
    /// Per type of the pool: the weighted value of its allocatable.
    type_value: Vec<f64>,
    /// Per type of the pool: price per unit of weighted value (infinite when worth nothing).
    type_efficiency: Vec<f64>,
}

impl Weighed {
    fn new(weights: Vec<f64>, types: &[crate::compile::TypeC]) -> Self {
        let type_value: Vec<f64> = types.iter().map(|ty| weighed(&weights, &ty.alloc)).collect();
        let type_efficiency = types
            .iter()
            .zip(&type_value)
            .map(|(ty, v)| {
                if *v > 0.0 {
                    ty.offerings[0].price.as_usd() / v
                } else {
                    f64::INFINITY
                }
            })
            .collect();
        Self {
            weights,
            type_value,
            type_efficiency,
        }
    }
}

/// The value of `amounts` under `weights`.
fn weighed(weights: &[f64], amounts: &Res) -> f64 {
    #[allow(clippy::cast_precision_loss)] // scores only rank candidates
    amounts
        .0
        .iter()
        .zip(weights)
        .map(|(amount, weight)| *amount as f64 * weight)
        .sum()
}

/// A cached node shape; see [`ShapeWeights::fixed_shapes`].
#[derive(Debug, Clone)]
pub(crate) struct FixedShape {
    pub target: u32,
    /// The pods of the class the node is shaped to hold besides the one opening it.
    pub pattern: Vec<(usize, i64)>,
    pub stable_above: i64,
    pub computed_for: i64,
}

impl FixedShape {
    pub(crate) fn holds_for(&self, waiting: i64) -> bool {
        waiting > self.stable_above || waiting == self.computed_for
    }
}

/// Drops types another type dominates (at least as much of every resource for no more money):
/// they never appear in an optimal LP basis, and the LP gets much smaller.
fn pareto<'a>(types: &[(&'a Res, f64)]) -> Vec<(&'a Res, f64)> {
    let mut sorted: Vec<(&Res, f64)> = types.to_vec();
    sorted.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut kept: Vec<(&Res, f64)> = Vec::new();
    for (alloc, price) in sorted {
        if !kept.iter().any(|(k, _)| alloc.fits_in(k)) {
            kept.push((alloc, price));
        }
    }
    kept
}

/// How many pods of a class one node may hold because of its own constraints (hostname spread,
/// hostname anti-affinity, host ports).
pub(crate) fn per_node_cap(compiled: &Compiled, state: &State, class: usize) -> i64 {
    let c = &compiled.classes[class];
    let mut cap = i64::MAX;
    for spread in c
        .spread
        .iter()
        .filter(|s| s.required && s.key == compiled.keys.hostname)
    {
        if state.memberships[class].contains(&spread.group) {
            cap = cap.min(spread.max_skew);
        }
    }
    for term in c
        .affinity
        .iter()
        .filter(|a| a.anti && a.required && a.key == compiled.keys.hostname)
    {
        if state.memberships[class].contains(&term.group) {
            cap = cap.min(1);
        }
    }
    if !c.host_ports.is_empty() {
        cap = cap.min(1);
    }
    cap
}

/// How many of the most efficient types (when full) the look-ahead tries per new node.
const MOST_EFFICIENT: usize = 12;

/// Shadow prices for weighing resources: from the waiting demand of the family (or of every class,
/// for constrained classes) over the candidate types of the pool.
fn family_weights(
    compiled: &Compiled,
    state: &State,
    all_classes: bool,
    members: &[usize],
    pool: usize,
    candidates: &[u32],
) -> Vec<f64> {
    let types = &compiled.pools[pool].types;
    let mut demand = Res::zero(compiled.dims.len());
    let counted: Box<dyn Iterator<Item = usize>> = if all_classes {
        Box::new(0..compiled.classes.len())
    } else {
        Box::new(members.iter().copied())
    };
    for m in counted {
        demand.add(
            &compiled.classes[m]
                .requests
                .scaled(i64::try_from(state.class_left[m]).unwrap_or(i64::MAX)),
        );
    }
    let allocs: Vec<(&Res, f64)> = candidates
        .iter()
        .map(|t| {
            let ty = &types[*t as usize];
            (&ty.alloc, ty.offerings[0].price.as_usd())
        })
        .collect();
    shadow_prices(&demand, &pareto(&allocs))
}

/// The type a new node for `class` in `pool` is shaped as: the best price per weighted unit of the
/// pods it would hold if filled from the waiting pods of the class's family.
pub(crate) fn choose_target(
    compiled: &Compiled,
    state: &State,
    weights: &mut ShapeWeights,
    pool: usize,
    candidates: &[u32],
    class: usize,
) -> Shape {
    let family = compiled.classes[class].family;
    let members: Vec<usize> = compiled.families[family]
        .iter()
        .copied()
        .filter(|m| state.class_left[*m] > 0)
        .collect();
    let types = &compiled.pools[pool].types;
    // Constrained classes are families of one; they share the pool's weights, computed from all
    // waiting pods, so the LP runs once per pool and per unconstrained family rather than per class.
    let key = if compiled.classes[class].constrained() {
        (usize::MAX, pool)
    } else {
        (family, pool)
    };
    let weighed_types = weights.cache.entry(key).or_insert_with(|| {
        let y = family_weights(compiled, state, key.0 == usize::MAX, &members, pool, candidates);
        Weighed::new(y, types)
    });
    let y = &weighed_types.weights;
    let value = |packed: &Res| weighed(y, packed);
    if state.shaping == crate::state::Shaping::Largest {
        let type_value = &weighed_types.type_value;
        let target = candidates
            .iter()
            .copied()
            .max_by(|a, b| {
                type_value[*a as usize]
                    .total_cmp(&type_value[*b as usize])
                    .then(b.cmp(a))
            })
            .unwrap_or(candidates[0]);
        return Shape {
            target,
            pattern: Vec::new(),
            stable_above: None,
        };
    }
    let shortlist = shortlist(candidates, &weighed_types.type_efficiency);
    let cap = per_node_cap(compiled, state, class);
    let opening = &compiled.classes[class].requests;
    // Pods of each member class not yet promised to another node.
    let waiting: Vec<(usize, i64)> = members
        .iter()
        .map(|&m| (m, waiting_of(state, m, m == class, cap)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let alone = members.len() == 1 && members[0] == class;
    let (mut shape, most_taken) = simulate(
        compiled,
        types,
        &shortlist,
        opening,
        &waiting,
        &value,
        class,
        candidates[0],
    );
    if alone {
        shape.stable_above = Some(most_taken);
    }
    if compiled.classes[class].constrained() {
        // Topology decides where a constrained class's pods go; only the type is chosen here.
        shape.pattern.clear();
    }
    shape
}

/// Simulates filling each shortlisted type from the waiting pods and returns the best shape (price
/// per packed value) and the most pods of `class` any simulated node took.
#[allow(clippy::too_many_arguments)]
fn simulate(
    compiled: &Compiled,
    types: &[crate::compile::TypeC],
    shortlist: &[u32],
    opening: &Res,
    waiting: &[(usize, i64)],
    value: &dyn Fn(&Res) -> f64,
    class: usize,
    fallback: u32,
) -> (Shape, i64) {
    let mut best = (
        f64::INFINITY,
        Shape {
            target: fallback,
            pattern: Vec::new(),
            stable_above: None,
        },
    );
    let mut most_taken = 0;
    for &t in shortlist {
        let ty = &types[t as usize];
        let mut start = ty.alloc.clone();
        start.sub(opening);
        // Two greedy fills, keep the one that packs more value: by value per unit of the scarcest
        // room, and by how well a pod's shape matches the room that is left.
        let (v, pattern) = [Greedy::Density, Greedy::Alignment]
            .into_iter()
            .map(|greedy| {
                let mut room = start.clone();
                let pattern = fill(compiled, waiting, &mut room, value, &ty.alloc, greedy);
                most_taken = pattern
                    .iter()
                    .filter(|(c, _)| *c == class)
                    .map(|(_, n)| *n)
                    .fold(most_taken, i64::max);
                let mut packed = ty.alloc.clone();
                packed.sub(&room);
                (value(&packed), pattern)
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .unwrap_or((0.0, Vec::new()));
        let price = ty.offerings[0].price.as_usd();
        let score = if v > 0.0 { price / v } else { price * 1e12 };
        if score < best.0 {
            best = (
                score,
                Shape {
                    target: t,
                    pattern,
                    stable_above: None,
                },
            );
        }
    }
    (best.1, most_taken)
}

/// Pods of class `m` a new node may still be filled with: not yet handled, not promised to another
/// node, not the one opening the node, and within the class's per-node cap.
pub(crate) fn waiting_of(state: &State, m: usize, opening: bool, cap: i64) -> i64 {
    let free = state.class_left[m]
        .saturating_sub(state.reserved[m])
        .saturating_sub(usize::from(opening));
    let limit = if opening { cap.saturating_sub(1) } else { i64::MAX };
    i64::try_from(free).unwrap_or(i64::MAX).min(limit)
}

/// The types worth simulating for a new node: the most efficient when full, plus the cheapest
/// ones (for the tail of a batch, where a small node beats a half-empty big one).
fn shortlist(candidates: &[u32], efficiency: &[f64]) -> Vec<u32> {
    let mut ranked: Vec<(f64, u32)> = candidates.iter().map(|t| (efficiency[*t as usize], *t)).collect();
    let by_efficiency = |a: &(f64, u32), b: &(f64, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    if ranked.len() > MOST_EFFICIENT {
        // Only the best few are needed: a partial selection, not a full sort, per new node.
        ranked.select_nth_unstable_by(MOST_EFFICIENT - 1, by_efficiency);
        ranked.truncate(MOST_EFFICIENT);
    }
    let mut shortlist: Vec<u32> = ranked.iter().map(|(_, t)| *t).collect();
    shortlist.extend(candidates.iter().take(6).copied());
    shortlist.sort_unstable();
    shortlist.dedup();
    shortlist
}

/// A node shape: the type, and how many pods of each class it is meant to hold besides the one
/// that opened it (promised to those classes when the node opens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shape {
    pub target: u32,
    pub pattern: Vec<(usize, i64)>,
    /// For a class that is its own family: the same shape is chosen whenever more of its pods
    /// wait than this (every simulated node filled up before the pods ran out).
    pub stable_above: Option<i64>,
}

/// How [`fill`] picks the next pod.
#[derive(Debug, Clone, Copy)]
enum Greedy {
    /// Most value per unit of the scarcest remaining resource.
    Density,
    /// The pod whose shape best matches the room left (uses what is plentiful), so complementary
    /// pods (CPU-heavy with memory-heavy) share a node.
    Alignment,
}

/// Fills `room` from the waiting pods greedily. Returns the counts per class and leaves what is
/// unused in `room`.
fn fill(
    compiled: &Compiled,
    waiting: &[(usize, i64)],
    room: &mut Res,
    value: &dyn Fn(&Res) -> f64,
    alloc: &Res,
    greedy: Greedy,
) -> Vec<(usize, i64)> {
    // Per waiting class: its requests, its value (fixed for the whole fill) and how many are left.
    let mut left: Vec<(&Res, f64, usize, i64)> = waiting
        .iter()
        .map(|(class, count)| {
            let request = &compiled.classes[*class].requests;
            (request, value(request), *class, *count)
        })
        .collect();
    let mut taken: Vec<(usize, i64)> = Vec::new();
    loop {
        // The room only shrinks, so a class that is used up or no longer fits is done for this
        // fill (order is kept: ties go to the earlier class).
        left.retain(|(request, _, _, count)| *count > 0 && request.fits_in(room));
        let mut best: Option<(f64, usize)> = None;
        for (i, (request, request_value, _, _)) in left.iter().enumerate() {
            #[allow(clippy::cast_precision_loss)]
            let density = match greedy {
                Greedy::Density => {
                    // The share of the tightest remaining resource one pod uses.
                    let tightest = request
                        .0
                        .iter()
                        .zip(&room.0)
                        .filter(|(need, _)| **need > 0)
                        .map(|(need, have)| *need as f64 / (*have).max(1) as f64)
                        .fold(0.0_f64, f64::max);
                    if tightest > 0.0 {
                        request_value / tightest
                    } else {
                        f64::INFINITY
                    }
                }
                Greedy::Alignment => request
                    .0
                    .iter()
                    .zip(&room.0)
                    .zip(&alloc.0)
                    .filter(|((need, _), size)| **need > 0 && **size > 0)
                    .map(|((need, have), size)| (*need as f64 / *size as f64) * (*have as f64 / *size as f64))
                    .sum(),
            };
            if best.is_none_or(|(d, _)| density > d) {
                best = Some((density, i));
            }
        }
        let Some((_, i)) = best else { break };
        let (request, _, class, count) = left[i];
        // Take a quarter of what still fits at once: fewer rounds, while the room's shape is
        // still followed as it shrinks.
        let k = count.min((request.copies_in(room) / 4).max(1));
        room.sub_scaled(request, k);
        left[i].3 -= k;
        match taken.iter_mut().find(|(c, _)| *c == class) {
            Some(entry) => entry.1 += k,
            None => taken.push((class, k)),
        }
    }
    taken
}
