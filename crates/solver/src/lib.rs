//! Nodewright's scheduler: given pending pods, existing and in-flight nodes, NodePools and the
//! instance types they allow, decide which nodes to launch and where every pod goes, at minimum
//! price. Pure: no clients, no async, no clock reads; the same input gives the same plan.
//!
//! How it works: pods are grouped into classes of identical pods; classes with topology
//! constraints go first, then by size. Each pod goes to an existing node if one can take it, else
//! to a node being built, else to a new node of the highest-weight NodePool that can take it. A new
//! node's shape is chosen by price per unit of the resources the waiting pods actually need (LP
//! shadow prices), not by filling the largest type; afterwards every node gets the cheapest type
//! that holds its pods, and a local search merges nodes when that is cheaper. The LP relaxation
//! also gives a lower bound, so every plan reports its optimality gap.

mod compile;
mod fasthash;
mod finalize;
pub mod intern;
mod lookahead;
mod lower_bound;
pub mod manifests;
mod place;
pub mod plan;
pub mod pod;
pub mod problem;
pub mod report;
pub mod requirements;
pub mod resources;
mod state;
pub mod verify;
pub mod volumes;

pub use plan::{NodeClaimPlan, Plan, Unschedulable};
pub use problem::{ExistingNode, MinValuesPolicy, Options, PoolInput, PreferencePolicy, Problem};

/// From this many pods the two shaping runs get a thread each; below, a thread costs more than
/// it saves.
const PARALLEL_FROM_PODS: usize = 256;

/// Solves a problem: the cheapest set of new nodes found, placements, and reasons.
///
/// Two shaping strategies run (price-efficient shapes, and Karpenter's largest-type filling); the
/// plan that places more pods, then costs less, then uses fewer nodes wins.
pub fn solve(problem: &Problem) -> Plan {
    let compiled = compile::compile(problem);
    let order = placement_order(&compiled);
    let run = |shaping| {
        let mut state = state::State::new(&compiled, shaping);
        let mut weights = lookahead::ShapeWeights::default();
        for &class in &order {
            for &pod in &compiled.classes[class].pods {
                place::place_pod(&compiled, &mut state, &mut weights, class, pod);
                state.class_left[class] -= 1;
            }
        }
        let outcome = finalize::choose(&compiled, &mut state, &problem.options);
        (state, outcome)
    };
    // The two runs are independent: on a large problem they run on two threads (each is
    // deterministic, so the plan is the same either way).
    let (look_ahead, largest) = if problem.options.parallel && compiled.pod_count >= PARALLEL_FROM_PODS {
        std::thread::scope(|scope| {
            let largest = scope.spawn(|| run(state::Shaping::Largest));
            let look_ahead = run(state::Shaping::LookAhead);
            // A panic in the other run is re-raised here, as it would be without the thread.
            let largest = largest
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (look_ahead, largest)
        })
    } else {
        (run(state::Shaping::LookAhead), run(state::Shaping::Largest))
    };
    let rank = |o: &finalize::Outcome| (o.unplaced, o.total, o.nodes);
    let (state, outcome) = if rank(&largest.1) < rank(&look_ahead.1) {
        largest
    } else {
        look_ahead
    };
    finalize::build_plan(&compiled, &state, &outcome, &problem.options)
}

/// Constrained classes first (they have fewer places to go), then larger pods first.
fn placement_order(compiled: &compile::Compiled) -> Vec<usize> {
    let mut order: Vec<usize> = (0..compiled.classes.len()).collect();
    order.sort_by(|a, b| {
        let (ca, cb) = (&compiled.classes[*a], &compiled.classes[*b]);
        cb.constrained()
            .cmp(&ca.constrained())
            .then_with(|| cb.requests.0.cmp(&ca.requests.0))
            .then_with(|| ca.pods[0].cmp(&cb.pods[0]))
    });
    order
}
