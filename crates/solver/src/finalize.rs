//! After placement: give every new node its cheapest instance type and offering within limits,
//! improve the node set by local search (empty small nodes into others' room, merge pairs), and
//! turn the result into a [`Plan`].

use std::collections::HashMap;

use nodewright_api::{NodeSelectorRequirementWithMinValues, Operator, labels};
use nodewright_catalog::{CapacityType, Price};

use crate::{
    compile::Compiled,
    intern::Sym,
    lower_bound::solve_dual,
    place::allowed_offering,
    plan::{NodeClaimPlan, Plan, Unschedulable},
    problem::Options,
    resources::Res,
    state::{Bin, Placement, State},
};

/// A bin's final choice.
#[derive(Debug, Clone)]
struct Choice {
    ty: u32,
    price: Price,
    zone: Sym,
    capacity_type: Sym,
}

/// The cheapest (type, offering) that holds the bin's pods within `remaining` limits, using only
/// offerings `usable` accepts. The bin's types are sorted by their cheapest allowed offering, so
/// the scan stops once no later type can be cheaper.
fn cheapest_usable(
    compiled: &Compiled,
    bin: &Bin,
    remaining: &[Option<i64>],
    usable: &dyn Fn(&crate::compile::OfferingC) -> bool,
) -> Option<Choice> {
    let pool = &compiled.pools[bin.pool];
    let zone = bin.requirements.get(compiled.keys.zone);
    let capacity_type = bin.requirements.get(compiled.keys.capacity_type);
    let mut best: Option<Choice> = None;
    for &t in bin.types.iter() {
        let ty = &pool.types[t as usize];
        let floor = allowed_offering(compiled, ty, &bin.requirements).map_or(Price(u64::MAX), |o| o.price);
        if best.as_ref().is_some_and(|b| floor >= b.price) {
            break;
        }
        if !bin.used.fits_in(&ty.alloc)
            || !ty
                .capacity
                .0
                .iter()
                .zip(remaining)
                .all(|(need, left)| left.is_none_or(|l| *need <= l))
        {
            continue;
        }
        let offering = ty.offerings.iter().find(|o| {
            zone.is_none_or(|r| r.has(o.zone, &compiled.interner))
                && capacity_type.is_none_or(|r| r.has(o.capacity_type, &compiled.interner))
                && usable(o)
        });
        if let Some(o) = offering
            && best.as_ref().is_none_or(|b| o.price < b.price)
        {
            best = Some(Choice {
                ty: t,
                price: o.price,
                zone: o.zone,
                capacity_type: o.capacity_type,
            });
        }
    }
    best
}

/// The cheapest choice with no limits and every offering usable.
fn cheapest(compiled: &Compiled, bin: &Bin) -> Option<Choice> {
    let unlimited = vec![None; compiled.dims.len()];
    cheapest_usable(compiled, bin, &unlimited, &|_| true)
}

fn only_unconstrained(compiled: &Compiled, bin: &Bin) -> bool {
    bin.classes.iter().all(|c| !compiled.classes[*c].constrained())
}

/// Local search over new nodes holding only unconstrained pods: move every pod of a node into
/// the spare room of the others, or merge two nodes into one cheaper node. A move is kept only if
/// the total price drops. `rounds` bounds the work, so results are deterministic.
fn improve(compiled: &Compiled, state: &mut State, rounds: u32) {
    let price_of =
        |state: &State, b: usize| cheapest(compiled, &state.bins[b]).map_or(Price(u64::MAX), |c| c.price);
    for _ in 0..rounds {
        let mut improved = false;
        // Merge pairs of lightly used nodes of the same pool: only nodes whose pods fill less than
        // half of their cheapest type are worth pairing.
        let mut candidates: Vec<(Price, usize)> = (0..state.bins.len())
            .filter(|b| !state.bins[*b].pods.is_empty() && only_unconstrained(compiled, &state.bins[*b]))
            .filter_map(|b| {
                let bin = &state.bins[b];
                let choice = cheapest(compiled, bin)?;
                let alloc = &compiled.pools[bin.pool].types[choice.ty as usize].alloc;
                let half_empty = bin
                    .used
                    .0
                    .iter()
                    .zip(&alloc.0)
                    .all(|(used, have)| used.saturating_mul(2) <= *have);
                half_empty.then_some((choice.price, b))
            })
            .collect();
        candidates.sort();
        candidates.truncate(64);
        for i in 0..candidates.len() {
            for j in (i + 1)..candidates.len() {
                let (a, b) = (candidates[i].1, candidates[j].1);
                if state.bins[a].pods.is_empty()
                    || state.bins[b].pods.is_empty()
                    || state.bins[a].pool != state.bins[b].pool
                {
                    continue;
                }
                let mut requirements = state.bins[a].requirements.clone();
                requirements.add_all(&state.bins[b].requirements, &compiled.interner);
                if requirements.has_empty().is_some() {
                    continue;
                }
                let mut used = state.bins[a].used.clone();
                used.add(&state.bins[b].used);
                let types = compiled.allowed_types(state.bins[a].pool, &requirements);
                let trial = Bin {
                    requirements: requirements.clone(),
                    types: types.clone(),
                    used: used.clone(),
                    ..state.bins[a].clone()
                };
                let Some(merged) = cheapest(compiled, &trial) else {
                    continue;
                };
                let before = price_of(state, a).0.saturating_add(price_of(state, b).0);
                if merged.price.0 < before {
                    let moved = std::mem::take(&mut state.bins[b].pods);
                    let moved_classes = std::mem::take(&mut state.bins[b].classes);
                    for pod in &moved {
                        state.placements[*pod] = Placement::Bin(a);
                    }
                    let bin = &mut state.bins[a];
                    bin.pods.extend(moved);
                    bin.classes.extend(moved_classes);
                    bin.used = used;
                    bin.requirements = requirements;
                    bin.types = types;
                    bin.target = merged.ty;
                    state.bins[b].used = Res::zero(compiled.dims.len());
                    improved = true;
                }
            }
        }
        if !improved {
            break;
        }
    }
}

/// Every new node's final type and offering, and what the plan would cost.
#[derive(Debug)]
pub(crate) struct Outcome {
    choices: Vec<Option<Choice>>,
    pub total: Price,
    pub unplaced: usize,
    pub nodes: usize,
}

/// Improves the node set, then gives every node its cheapest type and offering within the pool's
/// limits and the capacity of reservations. Pods on a node that no type can serve within limits
/// become unschedulable.
pub(crate) fn choose(compiled: &Compiled, state: &mut State, options: &Options) -> Outcome {
    improve(compiled, state, options.improvement_rounds);
    let mut remaining: Vec<Vec<Option<i64>>> = compiled.pools.iter().map(|p| p.remaining.clone()).collect();
    let mut reserved: HashMap<&str, u32> = HashMap::new();
    let mut choices = vec![None; state.bins.len()];
    let mut total = Price::ZERO;
    let mut nodes = 0;
    for (b, bin) in state.bins.iter().enumerate() {
        if bin.pods.is_empty() {
            continue;
        }
        let pool = &compiled.pools[bin.pool];
        let usable = |o: &crate::compile::OfferingC| {
            o.reservation
                .as_ref()
                .is_none_or(|(id, capacity)| reserved.get(id.as_str()).copied().unwrap_or(0) < *capacity)
        };
        let Some(choice) = cheapest_usable(compiled, bin, &remaining[bin.pool], &usable) else {
            for pod in &bin.pods {
                state.placements[*pod] = Placement::Unschedulable(vec![format!(
                    "nodepool {}: limits reached (no instance type that holds the pods fits the remaining limits)",
                    pool.name
                )]);
            }
            continue;
        };
        let ty = &pool.types[choice.ty as usize];
        for (left, need) in remaining[bin.pool].iter_mut().zip(&ty.capacity.0) {
            if let Some(left) = left {
                *left -= need;
            }
        }
        let offering = ty
            .offerings
            .iter()
            .find(|o| o.zone == choice.zone && o.capacity_type == choice.capacity_type);
        if let Some((id, _)) = offering.and_then(|o| o.reservation.as_ref()) {
            *reserved.entry(id.as_str()).or_insert(0) += 1;
        }
        total = total.saturating_add(choice.price);
        nodes += 1;
        choices[b] = Some(choice);
    }
    let unplaced = state
        .placements
        .iter()
        .filter(|p| matches!(p, Placement::Unschedulable(_) | Placement::Pending))
        .count();
    Outcome {
        choices,
        total,
        unplaced,
        nodes,
    }
}

/// Turns the chosen node set into a [`Plan`].
pub(crate) fn build_plan(compiled: &Compiled, state: &State, outcome: &Outcome, options: &Options) -> Plan {
    let mut plan = Plan::default();
    let mut new_node_of_bin: Vec<Option<usize>> = vec![None; state.bins.len()];
    for (b, bin) in state.bins.iter().enumerate() {
        if let Some(choice) = &outcome.choices[b] {
            new_node_of_bin[b] = Some(plan.new_nodes.len());
            plan.new_nodes.push(node_claim(compiled, bin, choice, options));
        }
    }
    for (pod, placement) in state.placements.iter().enumerate() {
        match placement {
            Placement::Existing(node) => plan
                .existing_placements
                .push((pod, compiled.existing[*node].name.clone())),
            Placement::Bin(b) => {
                if let Some(n) = new_node_of_bin[*b] {
                    plan.new_nodes[n].pods.push(pod);
                }
            }
            Placement::Unschedulable(reasons) => plan.unschedulable.push(Unschedulable {
                pod,
                reasons: reasons.clone(),
            }),
            Placement::Pending => plan.unschedulable.push(Unschedulable {
                pod,
                reasons: vec!["not considered".into()],
            }),
        }
    }
    plan.total_price = outcome.total;
    plan.lower_bound = lower_bound(compiled, state);
    plan
}

fn node_claim(compiled: &Compiled, bin: &Bin, choice: &Choice, options: &Options) -> NodeClaimPlan {
    let pool = &compiled.pools[bin.pool];
    let interner = &compiled.interner;
    // Every type that holds the pods, cheapest first: the cloud provider may fall back to them.
    let min_values = bin
        .requirements
        .get(compiled.keys.instance_type)
        .and_then(|r| r.min_values)
        .map_or(0, |m| m as usize);
    let listed = options.max_instance_types.max(min_values).max(1);
    // The bin's types are already cheapest first.
    let instance_types: Vec<std::sync::Arc<str>> = bin
        .types
        .iter()
        .map(|t| &pool.types[*t as usize])
        .filter(|ty| bin.used.fits_in(&ty.alloc))
        .take(listed)
        .map(|ty| ty.name.clone())
        .collect();
    let mut requirements: Vec<NodeSelectorRequirementWithMinValues> = Vec::new();
    for (key, requirement) in bin.requirements.iter() {
        if key == compiled.keys.hostname || key == compiled.keys.instance_type {
            continue;
        }
        for (operator, values) in requirement.to_terms(interner) {
            let mut r = NodeSelectorRequirementWithMinValues::new(interner.resolve(key), operator, values);
            r.min_values = requirement.min_values.map(i64::from);
            requirements.push(r);
        }
    }
    let mut types = NodeSelectorRequirementWithMinValues::new(
        labels::INSTANCE_TYPE,
        Operator::In,
        // `&str` into `String` copies; `to_string` would run the formatter per name.
        instance_types.iter().map(|name| &**name),
    );
    types.min_values = bin
        .requirements
        .get(compiled.keys.instance_type)
        .and_then(|r| r.min_values)
        .map(i64::from);
    requirements.push(types);
    let ty = &pool.types[choice.ty as usize];
    // A node that draws on a capacity reservation is pinned to it, as Karpenter pins it, so the
    // launch cannot silently land outside the reservation.
    let reservation = ty
        .offerings
        .iter()
        .find(|o| o.zone == choice.zone && o.capacity_type == choice.capacity_type)
        .and_then(|o| o.reservation.as_ref());
    if let Some((id, _)) = reservation {
        requirements.retain(|r| r.key != labels::CAPACITY_TYPE);
        requirements.push(NodeSelectorRequirementWithMinValues::new(
            labels::CAPACITY_TYPE,
            Operator::In,
            [labels::CAPACITY_TYPE_RESERVED],
        ));
        requirements.push(NodeSelectorRequirementWithMinValues::new(
            labels::AWS_CAPACITY_RESERVATION_ID,
            Operator::In,
            [id.clone()],
        ));
    }
    let mut requests = bin.used.clone();
    requests.add(&ty.daemon);
    NodeClaimPlan {
        nodepool: pool.name.clone(),
        requirements,
        instance_types,
        instance_type: ty.name.to_string(),
        zone: interner.resolve(choice.zone).to_owned(),
        capacity_type: CapacityType::from_label(interner.resolve(choice.capacity_type))
            .unwrap_or(CapacityType::OnDemand),
        price: choice.price,
        pods: Vec::new(),
        requests: compiled.dims.named(&requests),
        min_values_relaxed: bin.min_values_relaxed,
    }
}

/// LP lower bound on the price of new capacity for the pods placed on new nodes: any instance type
/// of any pool, fractional counts, resources pooled. Every real plan is feasible for it.
fn lower_bound(compiled: &Compiled, state: &State) -> Price {
    let mut demand = Res::zero(compiled.dims.len());
    for bin in &state.bins {
        demand.add(&bin.used);
    }
    if demand.is_zero() {
        return Price::ZERO;
    }
    // Each pool's types as its own requirements allow them (and at the prices it can pay).
    let mut types: Vec<(&Res, f64)> = Vec::new();
    for (p, pool) in compiled.pools.iter().enumerate() {
        for t in compiled.allowed_types(p, &pool.requirements).iter() {
            let ty = &pool.types[*t as usize];
            types.push((&ty.alloc, ty.offerings[0].price.as_usd()));
        }
    }
    // Dominated types (no more of anything, for no less money) never bind; dropping them keeps
    // the LP small.
    types.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut kept: Vec<(&Res, f64)> = Vec::new();
    for (alloc, price) in types {
        if !kept.iter().any(|(k, _)| alloc.fits_in(k)) {
            kept.push((alloc, price));
        }
    }
    solve_dual(&demand, &kept).map_or(Price::ZERO, |(bound, _)| Price::from_usd(bound * (1.0 - 1e-9)))
}
