//! The LP relaxation: the cheapest fractional mix of instance types whose allocatable covers a
//! demand. Its optimum is a lower bound on the price of any real set of nodes for that demand, and
//! its dual gives each resource a shadow price, which the shape choice uses to weigh resources.

use microlp::{ComparisonOp, OptimizationDirection, Problem};

use crate::resources::Res;

/// Solves `max Σ demand_d·y_d  s.t. Σ_d alloc_t,d·y_d ≤ price_t for every type, y ≥ 0` (the dual of
/// covering the demand at least cost). Returns `(optimum in USD, y per dimension)`; `None` when
/// the LP fails (e.g. no type has some demanded resource).
pub(crate) fn solve_dual(demand: &Res, types: &[(&Res, f64)]) -> Option<(f64, Vec<f64>)> {
    let dims = demand.0.len();
    // Scale each dimension by its largest allocatable so coefficients are near 1.
    #[allow(clippy::cast_precision_loss)]
    let scale: Vec<f64> = (0..dims)
        .map(|d| types.iter().map(|(a, _)| a.0[d]).max().unwrap_or(0).max(1) as f64)
        .collect();
    let mut lp = Problem::new(OptimizationDirection::Maximize);
    #[allow(clippy::cast_precision_loss)]
    let vars: Vec<_> = (0..dims)
        .map(|d| lp.add_var(demand.0[d].max(0) as f64 / scale[d], (0.0, f64::INFINITY)))
        .collect();
    for (alloc, price) in types {
        #[allow(clippy::cast_precision_loss)]
        let terms: Vec<_> = (0..dims)
            .filter(|d| alloc.0[*d] > 0)
            .map(|d| (vars[d], alloc.0[d] as f64 / scale[d]))
            .collect();
        if terms.is_empty() {
            continue;
        }
        lp.add_constraint(terms.as_slice(), ComparisonOp::Le, *price);
    }
    let microlp::SolveOutcome::Solution(solution) = lp.solve().ok()? else {
        return None;
    };
    let y = (0..dims).map(|d| solution[vars[d]] / scale[d]).collect();
    Some((solution.objective(), y))
}

/// Shadow prices for weighing resources; falls back to "each resource relative to the largest
/// allocatable" when the LP has no solution.
pub(crate) fn shadow_prices(demand: &Res, types: &[(&Res, f64)]) -> Vec<f64> {
    match solve_dual(demand, types) {
        Some((_, y)) if y.iter().any(|v| *v > 0.0) => y,
        _ => {
            #[allow(clippy::cast_precision_loss)]
            let fallback = (0..demand.0.len())
                .map(|d| {
                    let largest = types.iter().map(|(a, _)| a.0[d]).max().unwrap_or(0);
                    if largest > 0 && demand.0[d] > 0 {
                        1.0 / largest as f64
                    } else {
                        0.0
                    }
                })
                .collect();
            fallback
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering_cpu_with_two_types() {
        // Type A: 2 cpu for $1; type B: 8 cpu for $3. Covering 16 cpu costs at least 16 × 3/8 = $6.
        let a = Res(smallvec::smallvec![2000, 0]);
        let b = Res(smallvec::smallvec![8000, 0]);
        let (bound, y) = solve_dual(&Res(smallvec::smallvec![16_000, 0]), &[(&a, 1.0), (&b, 3.0)]).unwrap();
        assert!((bound - 6.0).abs() < 1e-6, "{bound}");
        assert!(
            (y[0] * 8000.0 - 3.0).abs() < 1e-6,
            "B's cpu is priced at its cost"
        );
    }

    #[test]
    fn two_resources_bind_together() {
        // A: 4 cpu / 8 GiB for $1, B: 2 cpu / 16 GiB for $1. Demand 8 cpu and 32 GiB: 4/3 of A and
        // 4/3 of B cover it exactly: $8/3.
        let a = Res(smallvec::smallvec![4, 8]);
        let b = Res(smallvec::smallvec![2, 16]);
        let (bound, _) = solve_dual(&Res(smallvec::smallvec![8, 32]), &[(&a, 1.0), (&b, 1.0)]).unwrap();
        assert!((bound - 8.0 / 3.0).abs() < 1e-6, "{bound}");
    }
}
