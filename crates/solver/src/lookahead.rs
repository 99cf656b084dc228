//! Choosing a new node's shape. Karpenter keeps filling a NodeClaim until its largest allowed type
//! is full; Nodewright instead picks, when a node opens, the instance type that packs the pods
//! still waiting at the lowest price per unit of useful resource. "Useful" is weighed by shadow
//! prices from the LP relaxation of the remaining demand, so a type is judged by the resources
//! that actually bind (CPU for CPU-heavy pods, memory for memory-heavy ones).

use crate::{compile::Compiled, fasthash::FastMap, lower_bound::shadow_prices, resources::Res, state::State};

/// Shadow prices per (family, pool), computed once per solve.
#[derive(Debug, Default)]
pub(crate) struct ShapeWeights {
    cache: FastMap<(usize, usize), Weighed>,
    /// Shapes chosen for classes that are a family of their own: the target, the waiting count
    /// above which the choice cannot change (no simulated node ran out of the class's pods), and
    /// the waiting count it was computed for (the same count gives the same choice; for a class
    /// capped per node, such as hostname anti-affinity, the count stays at the cap).
    pub(crate) fixed_shapes: FastMap<(usize, crate::requirements::Requirements, usize), FixedShape>,
}

/// One (family, pool)'s resource weights, and every type of the pool ranked by them once, so a
/// new node's shortlist is a scan of the ranking rather than a valuation of every candidate.
#[derive(Debug)]
struct Weighed {
    weights: Vec<f64>,
    /// The pool's types, most efficient first (ties: lower index first), so a new node's
    /// shortlist is the first few candidates in this order rather than a selection per node.
    by_efficiency: Vec<u32>,
    /// The pool's types, most valuable first (ties: lower index first): the first candidate in
    /// this order is the largest-type shape.
    by_value: Vec<u32>,
}

impl Weighed {
    fn new(weights: Vec<f64>, types: &[crate::compile::TypeC]) -> Self {
        // Per type: the weighted value of its allocatable, and its price per unit of that value
        // (infinite when worth nothing).
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
            .collect::<Vec<f64>>();
        let mut by_efficiency: Vec<u32> = (0..types.len()).filter_map(|t| u32::try_from(t).ok()).collect();
        let mut by_value = by_efficiency.clone();
        by_efficiency.sort_by(|a, b| {
            type_efficiency[*a as usize]
                .total_cmp(&type_efficiency[*b as usize])
                .then(a.cmp(b))
        });
        by_value.sort_by(|a, b| {
            type_value[*b as usize]
                .total_cmp(&type_value[*a as usize])
                .then(a.cmp(b))
        });
        Self {
            weights,
            by_efficiency,
            by_value,
        }
    }
}

/// The types a new node may take: those of `list` (the pool's types its requirements allow,
/// cheapest first) that hold the opening pod within the pool's limits. Tested type by type
/// rather than collected: a new node's shape needs only the few most efficient candidates, and
/// testing a few types is cheaper than filtering the whole list for every new node.
pub(crate) struct Candidates<'a> {
    list: &'a [u32],
    /// Bit `t` set when type `t` is in `list`.
    listed: smallvec::SmallVec<[u64; 8]>,
    fits: &'a dyn Fn(u32) -> bool,
    /// The cheapest candidate.
    pub first: u32,
}

impl<'a> Candidates<'a> {
    /// `None` when no type of `list` fits.
    pub(crate) fn new(list: &'a [u32], type_count: usize, fits: &'a dyn Fn(u32) -> bool) -> Option<Self> {
        let first = list.iter().copied().find(|t| fits(*t))?;
        let mut listed = smallvec::smallvec![0u64; type_count.div_ceil(64)];
        for &t in list {
            listed[t as usize / 64] |= 1 << (t % 64);
        }
        Some(Self {
            list,
            listed,
            fits,
            first,
        })
    }

    fn contains(&self, t: u32) -> bool {
        self.listed
            .get(t as usize / 64)
            .is_some_and(|word| word & (1 << (t % 64)) != 0)
            && (self.fits)(t)
    }

    /// The candidates, cheapest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.list.iter().copied().filter(|t| (self.fits)(*t))
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
    candidates: &Candidates<'_>,
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
        let listed: Vec<u32> = candidates.iter().collect();
        let y = family_weights(compiled, state, key.0 == usize::MAX, &members, pool, &listed);
        Weighed::new(y, types)
    });
    let y = &weighed_types.weights;
    let value = |packed: &Res| weighed(y, packed);
    if state.shaping == crate::state::Shaping::Largest {
        let target = weighed_types
            .by_value
            .iter()
            .copied()
            .find(|t| candidates.contains(*t))
            .unwrap_or(candidates.first);
        return Shape {
            target,
            pattern: Vec::new(),
            stable_above: None,
        };
    }
    let shortlist = shortlist(candidates, &weighed_types.by_efficiency);
    let cap = per_node_cap(compiled, state, class);
    let opening = &compiled.classes[class].requests;
    // Pods of each member class not yet promised to another node.
    let waiting: Vec<(usize, i64)> = members
        .iter()
        .map(|&m| (m, waiting_of(state, m, m == class, cap)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let alone = members.len() == 1 && members[0] == class;
    let waiting = Waiting::new(compiled, &waiting, &value);
    let (mut shape, most_taken) = simulate(
        types,
        &shortlist,
        opening,
        &waiting,
        &value,
        class,
        candidates.first,
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
fn simulate(
    types: &[crate::compile::TypeC],
    shortlist: &[u32],
    opening: &Res,
    waiting: &Waiting<'_>,
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
    let mut scratch = FillScratch::default();
    for &t in shortlist {
        let ty = &types[t as usize];
        let mut start = ty.alloc.clone();
        start.sub(opening);
        // Two greedy fills, keep the one that packs more value: by value per unit of the scarcest
        // room, and by how well a pod's shape matches the room that is left.
        // With one distinct request (a class that is its own family) both fills take the same
        // pods in the same order: one fill is enough.
        let greedies: &[Greedy] = if waiting.requests.len() <= 1 {
            &[Greedy::Density]
        } else {
            &[Greedy::Density, Greedy::Alignment]
        };
        let (v, pattern) = greedies
            .iter()
            .map(|&greedy| {
                let mut room = start.clone();
                let pattern = fill(waiting, &mut room, &ty.alloc, greedy, &mut scratch);
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
/// ones (for the tail of a batch, where a small node beats a half-empty big one). `by_efficiency`
/// ranks every type of the pool; the candidates keep their order in it.
fn shortlist(candidates: &Candidates<'_>, by_efficiency: &[u32]) -> Vec<u32> {
    let mut shortlist: Vec<u32> = by_efficiency
        .iter()
        .copied()
        .filter(|t| candidates.contains(*t))
        .take(MOST_EFFICIENT)
        .collect();
    shortlist.extend(candidates.iter().take(6));
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

/// The pods a new node may be filled with, grouped by request: classes with equal requests are
/// interchangeable to a fill (same value, same density), so a fill weighs each distinct request
/// once per round instead of each class (a family of generic pods has hundreds of classes and a
/// few dozen distinct requests).
struct Waiting<'a> {
    /// Per distinct request: the request and its value (fixed for the whole simulation).
    requests: Vec<(&'a Res, f64)>,
    /// Per distinct request, the range of `members` holding its classes.
    ranges: Vec<std::ops::Range<usize>>,
    /// (position in waiting order, class, pods waiting), grouped by request, in waiting order
    /// within a group.
    members: Vec<(usize, usize, i64)>,
}

impl<'a> Waiting<'a> {
    fn new(compiled: &'a Compiled, waiting: &[(usize, i64)], value: &dyn Fn(&Res) -> f64) -> Self {
        let mut requests: Vec<(&Res, f64)> = Vec::new();
        let mut grouped: Vec<Vec<(usize, usize, i64)>> = Vec::new();
        for (position, &(class, count)) in waiting.iter().enumerate() {
            let request = &compiled.classes[class].requests;
            let group = requests
                .iter()
                .position(|(r, _)| *r == request)
                .unwrap_or_else(|| {
                    requests.push((request, value(request)));
                    grouped.push(Vec::new());
                    requests.len() - 1
                });
            grouped[group].push((position, class, count));
        }
        let mut ranges = Vec::with_capacity(grouped.len());
        let mut members = Vec::with_capacity(waiting.len());
        for group in grouped {
            let start = members.len();
            members.extend(group);
            ranges.push(start..members.len());
        }
        Self {
            requests,
            ranges,
            members,
        }
    }
}

/// Buffers one simulation's fills reuse.
#[derive(Default)]
struct FillScratch {
    /// Pods left per member of [`Waiting::members`].
    left: Vec<i64>,
    /// Per request group: the member whose pods go next; `usize::MAX` once the group is used up
    /// or no longer fits (the room only shrinks).
    next: Vec<usize>,
}

/// Fills `room` from the waiting pods greedily. Returns the counts per class (in the order the
/// classes were first taken) and leaves what is unused in `room`.
///
/// Each round takes the waiting class with the best score, the earliest in waiting order among
/// equal scores; classes of one request group score alike, so only each group's earliest class
/// with pods left can win, and a round scores one class per group.
fn fill(
    waiting: &Waiting<'_>,
    room: &mut Res,
    alloc: &Res,
    greedy: Greedy,
    scratch: &mut FillScratch,
) -> Vec<(usize, i64)> {
    let FillScratch { left, next } = scratch;
    left.clear();
    left.extend(waiting.members.iter().map(|(_, _, count)| *count));
    next.clear();
    next.extend(waiting.ranges.iter().map(|r| r.start));
    let mut taken: Vec<(usize, i64)> = Vec::new();
    loop {
        // The earliest class still in play, and the best-scoring one (earliest among equals).
        // (position in waiting order, score, member, group)
        let mut earliest: Option<(usize, f64, usize, usize)> = None;
        let mut best: Option<(usize, f64, usize, usize)> = None;
        for (group, &(request, request_value)) in waiting.requests.iter().enumerate() {
            let range = &waiting.ranges[group];
            let mut member = next[group];
            if member == usize::MAX {
                continue;
            }
            if !request.fits_in(room) {
                next[group] = usize::MAX;
                continue;
            }
            while member < range.end && left[member] <= 0 {
                member += 1;
            }
            if member == range.end {
                next[group] = usize::MAX;
                continue;
            }
            next[group] = member;
            let position = waiting.members[member].0;
            let score = score(greedy, request, request_value, room, alloc);
            if earliest.is_none_or(|(p, ..)| position < p) {
                earliest = Some((position, score, member, group));
            }
            let beats = |(p, s, ..): (usize, f64, usize, usize)| match score.partial_cmp(&s) {
                Some(std::cmp::Ordering::Greater) => true,
                Some(std::cmp::Ordering::Equal) => position < p,
                _ => false,
            };
            if !score.is_nan() && best.is_none_or(beats) {
                best = Some((position, score, member, group));
            }
        }
        // A scan in waiting order keeps the first class it sees unless a later one scores
        // strictly higher; a first class scoring NaN is never beaten.
        let (chosen, group) = match (earliest, best) {
            (Some((_, score, member, group)), _) if score.is_nan() => (member, group),
            (_, Some((_, _, member, group))) => (member, group),
            _ => break,
        };
        let (_, class, _) = waiting.members[chosen];
        let request = waiting.requests[group].0;
        let count = left[chosen];
        // Take a quarter of what still fits at once: fewer rounds, while the room's shape is
        // still followed as it shrinks.
        let k = count.min((request.copies_in(room) / 4).max(1));
        room.sub_scaled(request, k);
        left[chosen] -= k;
        match taken.iter_mut().find(|(c, _)| *c == class) {
            Some(entry) => entry.1 += k,
            None => taken.push((class, k)),
        }
    }
    taken
}

/// How much a pod of `request` is worth taking next into `room`.
#[allow(clippy::cast_precision_loss)] // scores only rank candidates
fn score(greedy: Greedy, request: &Res, request_value: f64, room: &Res, alloc: &Res) -> f64 {
    match greedy {
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
    }
}
