//! Crash safety: the controller is killed at seeded random points of launch, registration and
//! termination (200 cases) and restarted with nothing remembered. Afterwards every pod ran, no
//! NodeClaim ever had two instances, and teardown leaves no instance behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod common;

use common::Lab;
use futures_util::future::join_all;

const CASES: u64 = 200;
/// Cases run at once (each has its own cluster).
const CONCURRENT: usize = 8;
/// Kill points fall within this many writes of the start of a phase (a launch phase takes about
/// 50 writes to the API server, a teardown about 20, counting the data plane's).
const LAUNCH_WRITES: u64 = 35;
const TEARDOWN_WRITES: u64 = 10;

/// SplitMix64: a seeded, dependency-free source of kill points.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Steps until `done`, killing and restarting the controllers once the store has taken
/// `kill_after` more writes (or, if the phase finishes first, at its end). Returns whether the
/// kill came before the phase was done.
async fn run_with_crash(
    lab: &mut Lab,
    seed: u64,
    what: &str,
    kill_after: u64,
    done: impl Fn(&Lab) -> bool,
) -> bool {
    let start = lab.cluster.state().store.resource_version();
    let mut killed_mid_flow = None;
    for _ in 0..1440 {
        let finished = done(lab);
        if killed_mid_flow.is_none()
            && (finished || lab.cluster.state().store.resource_version() >= start + kill_after)
        {
            lab.kill_controllers().await;
            lab.start_controllers();
            killed_mid_flow = Some(!finished);
            // Let the restarted controllers look at a finished phase too: they must not undo or repeat it.
            lab.step().await;
            continue;
        }
        if let (Some(mid_flow), true) = (killed_mid_flow, finished) {
            return mid_flow;
        }
        lab.step().await;
    }
    panic!(
        "case {seed}: {what} did not happen within 2 simulated hours\n{}",
        lab.leftovers()
    );
}

/// One seeded case; returns whether each phase's kill came mid-flow.
async fn case(seed: u64) -> (bool, bool) {
    let mut lab = Lab::without_controllers().await;
    lab.scale_in_store(3);
    lab.start_controllers();
    let launch_kill = 1 + mix(seed) % LAUNCH_WRITES;
    let launch_crashed = run_with_crash(&mut lab, seed, "three running pods", launch_kill, |lab| {
        lab.running_in_store(3)
    })
    .await;

    lab.scale_in_store(0);
    for _ in 0..1440 {
        if lab.running_in_store(0) {
            break;
        }
        lab.step().await;
    }
    assert!(lab.running_in_store(0), "case {seed}: the pods went");
    lab.delete_claims_in_store();
    let teardown_kill = 1 + mix(seed ^ 0xdead_beef) % TEARDOWN_WRITES;
    let cloud = lab.cluster.cloud().unwrap().clone();
    let teardown_crashed = run_with_crash(&mut lab, seed, "teardown", teardown_kill, move |lab| {
        lab.delete_claims_in_store();
        cloud.instances().is_empty() && lab.claims_in_store().is_empty()
    })
    .await;
    lab.assert_nothing_leaked();
    (launch_crashed, teardown_crashed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_any_point_the_controller_leaks_nothing_and_duplicates_nothing() {
    let seeds: Vec<u64> = (0..CASES).collect();
    let mut mid_flow = (0, 0);
    for chunk in seeds.chunks(CONCURRENT) {
        for (launch, teardown) in join_all(chunk.iter().map(|seed| case(*seed))).await {
            mid_flow.0 += usize::from(launch);
            mid_flow.1 += usize::from(teardown);
        }
    }
    // The kill points are meant to land inside the flows, not after them.
    assert!(
        mid_flow.0 >= 150 && mid_flow.1 >= 150,
        "kills mid-flow (launch, teardown): {mid_flow:?} of {CASES}"
    );
}
