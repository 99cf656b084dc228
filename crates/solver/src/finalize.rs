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
    place::{allowed_offering, type_allowed},
    plan::{NodeClaimPlan, Plan, Unschedulable},
    problem::Options,
    requirements::Requirements,
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

/// The cheapest (type, offering) that holds `used` under `requirements` within `remaining` limits.
fn cheapest(
    compiled: &Compiled,
    pool: usize,
    types: &[u32],
    requirements: &Requirements,
    used: &Res,
    remaining: &[Option<i64>],
) -> Option<Choice> {
    let p = &compiled.pools[pool];
    types
        .iter()
        .filter_map(|t| {
            let ty = &p.types[*t as usize];
            if !used.fits_in(&ty.alloc)
                || !ty
                    .capacity
                    .0
                    .iter()
                    .zip(remaining)
                    .all(|(need, left)| left.is_none_or(|l| *need <= l))
            {
                return None;
            }
            allowed_offering(compiled, ty, requirements).map(|o| Choice {
                ty: *t,
                price: o.price,
                zone: o.zone,
                capacity_type: o.capacity_type,
            })
        })
        .min_by_key(|c| (c.price, c.ty))
}

fn only_unconstrained(compiled: &Compiled, bin: &Bin) -> bool {
    bin.classes.iter().all(|c| !compiled.classes[*c].constrained())
}

/// Local search over new nodes holding only unconstrained pods: move every pod of a node into
/// the spare room of the others, or merge two nodes into one cheaper node. A move is kept only if
/// the total price drops. `rounds` bounds the work, so results are deterministic.
fn improve(compiled: &Compiled, state: &mut State, rounds: u32) {
    let unlimited: Vec<Option<i64>> = vec![None; compiled.dims.len()];
    let price_of = |state: &State, b: usize| {
        let bin = &state.bins[b];
        cheapest(
            compiled,
            bin.pool,
            &bin.types,
            &bin.requirements,
            &bin.used,
            &unlimited,
        )
        .map_or(Price(u64::MAX), |c| c.price)
    };
    for _ in 0..rounds {
        let mut improved = false;
        // Merge pairs of lightly used nodes of the same pool: only nodes whose pods fill less than
        // half of their cheapest type are worth pairing.
        let mut candidates: Vec<(Price, usize)> = (0..state.bins.len())
            .filter(|b| !state.bins[*b].pods.is_empty() && only_unconstrained(compiled, &state.bins[*b]))
            .filter_map(|b| {
                let bin = &state.bins[b];
                let choice = cheapest(
                    compiled,
                    bin.pool,
                    &bin.types,
                    &bin.requirements,
                    &bin.used,
                    &unlimited,
                )?;
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
                let pool = &compiled.pools[state.bins[a].pool];
                let mut used = state.bins[a].used.clone();
                used.add(&state.bins[b].used);
                // Both nodes' type lists are sorted indices; a merged node can use types in both.
                let types: Vec<u32> = state.bins[a]
                    .types
                    .iter()
                    .copied()
                    .filter(|t| state.bins[b].types.binary_search(t).is_ok())
                    .filter(|t| type_allowed(compiled, pool, &pool.types[*t as usize], &requirements))
                    .collect();
                let Some(merged) = cheapest(
                    compiled,
                    state.bins[a].pool,
                    &types,
                    &requirements,
                    &used,
                    &unlimited,
                ) else {
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

/// Chooses every bin's type and offering, improves the set, and builds the plan.
pub(crate) fn finish(compiled: &Compiled, state: &mut State, options: &Options) -> Plan {
    improve(compiled, state, options.improvement_rounds);
    let mut remaining: Vec<Vec<Option<i64>>> = compiled.pools.iter().map(|p| p.remaining.clone()).collect();
    let mut reservations: HashMap<String, u32> = HashMap::new();
    let mut plan = Plan::default();
    let mut new_node_of_bin: Vec<Option<usize>> = vec![None; state.bins.len()];
    for (b, bin) in state.bins.iter().enumerate() {
        if bin.pods.is_empty() {
            continue;
        }
        let pool = &compiled.pools[bin.pool];
        let Some(choice) = cheapest(
            compiled,
            bin.pool,
            &bin.types,
            &bin.requirements,
            &bin.used,
            &remaining[bin.pool],
        ) else {
            for pod in &bin.pods {
                state.placements[*pod] =
                    Placement::Unschedulable(vec![format!("nodepool {}: limits reached", pool.name)]);
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
        if let Some((id, capacity)) = offering.and_then(|o| o.reservation.clone()) {
            let used = reservations.entry(id).or_insert(0);
            *used += 1;
            let _ = capacity;
        }
        new_node_of_bin[b] = Some(plan.new_nodes.len());
        plan.new_nodes.push(node_claim(compiled, bin, &choice, options));
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
    for node in &mut plan.new_nodes {
        node.pods.sort_unstable();
    }
    plan.total_price = plan.new_nodes.iter().map(|n| n.price).sum();
    plan.lower_bound = lower_bound(compiled, state);
    plan
}

fn node_claim(compiled: &Compiled, bin: &Bin, choice: &Choice, options: &Options) -> NodeClaimPlan {
    let pool = &compiled.pools[bin.pool];
    let interner = &compiled.interner;
    // Every type that holds the pods, cheapest first: the cloud provider may fall back to them.
    let mut fitting: Vec<(Price, &str)> = bin
        .types
        .iter()
        .filter_map(|t| {
            let ty = &pool.types[*t as usize];
            if !bin.used.fits_in(&ty.alloc) {
                return None;
            }
            allowed_offering(compiled, ty, &bin.requirements).map(|o| (o.price, ty.name.as_str()))
        })
        .collect();
    fitting.sort();
    fitting.truncate(options.max_instance_types.max(1));
    let instance_types: Vec<String> = fitting.iter().map(|(_, n)| (*n).to_owned()).collect();
    let mut requirements: Vec<NodeSelectorRequirementWithMinValues> = Vec::new();
    for (key, requirement) in bin.requirements.iter() {
        if key == compiled.keys.hostname || key == compiled.keys.instance_type {
            continue;
        }
        let mut r = NodeSelectorRequirementWithMinValues::new(
            interner.resolve(key),
            requirement.operator(),
            requirement
                .values()
                .unwrap_or_default()
                .iter()
                .map(|v| interner.resolve(*v).to_owned()),
        );
        if requirement.values().is_none() && matches!(requirement.operator(), Operator::NotIn) {
            r.values = Vec::new();
        }
        r.min_values = requirement.min_values.map(i64::from);
        requirements.push(r);
    }
    let mut types = NodeSelectorRequirementWithMinValues::new(
        labels::INSTANCE_TYPE,
        Operator::In,
        instance_types.clone(),
    );
    types.min_values = bin
        .requirements
        .get(compiled.keys.instance_type)
        .and_then(|r| r.min_values)
        .map(i64::from);
    requirements.push(types);
    let ty = &pool.types[choice.ty as usize];
    let mut requests = bin.used.clone();
    requests.add(&ty.daemon);
    NodeClaimPlan {
        nodepool: pool.name.clone(),
        requirements,
        instance_types,
        instance_type: ty.name.clone(),
        zone: interner.resolve(choice.zone).to_owned(),
        capacity_type: CapacityType::from_label(interner.resolve(choice.capacity_type))
            .unwrap_or(CapacityType::OnDemand),
        price: choice.price,
        pods: Vec::new(),
        requests: compiled.dims.named(&requests),
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
    let mut types: Vec<(&Res, f64)> = compiled
        .pools
        .iter()
        .flat_map(|p| p.types.iter().map(|t| (&t.alloc, t.offerings[0].price.as_usd())))
        .collect();
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
