//! API faults while the controllers work: a fraction of requests answered 409, 429 or 500, and
//! every watch dropped now and then. Work is neither lost (every pod ends running, everything is
//! cleaned up) nor duplicated (one instance per NodeClaim, no spare NodeClaims).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod common;

use common::Lab;
use k8s_openapi::api::core::v1::Node;
use nodewright_sim::faults::FaultConfig;

/// One step of the faulty run: rotate the injected status code and drop every watch now and then.
fn inject(lab: &Lab, step: usize) {
    let code = [409, 429, 500][step % 3];
    lab.cluster.state().faults.set(FaultConfig {
        fail_ratio: 0.15,
        fail_code: code,
        ..FaultConfig::default()
    });
    if step.is_multiple_of(7) {
        lab.cluster.state().store.drop_watches();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_faults_neither_lose_nor_duplicate_work() {
    let lab = Lab::start().await;
    lab.scale_in_store(5);
    let mut step = 0;
    while !lab.running_in_store(5) {
        inject(&lab, step);
        lab.step().await;
        step += 1;
        assert!(
            step < 1440,
            "five running pods within 2 simulated hours under faults"
        );
    }
    lab.cluster.state().faults.clear();
    // Let anything in flight finish, then count: one NodeClaim per node, one instance each.
    // Disruption may be replacing a node meanwhile (a Node outlives its NodeClaim for a pass or
    // two while the kubelet notices its instance is gone), so the counts must agree once the
    // cluster is quiet, within a bounded number of passes.
    let counts = |lab: &Lab| {
        let nodes: Vec<Node> = lab.stored("", "nodes");
        (
            lab.claims_in_store().len(),
            nodes.len(),
            lab.cluster.cloud().unwrap().instances().len(),
        )
    };
    let mut quiet = 0;
    for _ in 0..120 {
        lab.step().await;
        let (claims, nodes, instances) = counts(&lab);
        quiet = if claims == nodes && instances == nodes {
            quiet + 1
        } else {
            0
        };
        if quiet == 20 {
            break;
        }
    }
    let (claims, nodes, instances) = counts(&lab);
    assert_eq!(claims, nodes, "no spare NodeClaims");
    assert_eq!(instances, nodes, "one instance per node");
    assert_eq!(quiet, 20, "the counts agreed for 20 passes in a row");

    // Tear down under faults too: once the pods are gone, delete the NodeClaims (deleting them
    // while pods still run would, rightly, make the provisioner replace their nodes).
    lab.scale_in_store(0);
    while !lab.running_in_store(0) {
        inject(&lab, step);
        lab.step().await;
        step += 1;
        assert!(
            step < 2880,
            "the pods to go within 2 more simulated hours under faults"
        );
    }
    lab.delete_claims_in_store();
    let cloud = lab.cluster.cloud().unwrap().clone();
    while !(cloud.instances().is_empty() && lab.claims_in_store().is_empty()) {
        lab.delete_claims_in_store();
        inject(&lab, step);
        lab.step().await;
        step += 1;
        if step >= 2880 {
            lab.cluster.state().faults.clear();
            let claims: Vec<String> = lab
                .claims_in_store()
                .iter()
                .map(|c| {
                    format!(
                        "{} fin={:?} del={:?} status={:?}",
                        c.metadata.name.as_deref().unwrap_or(""),
                        c.metadata.finalizers,
                        c.metadata.deletion_timestamp,
                        c.status.as_ref().map(|s| (
                            &s.provider_id,
                            &s.node_name,
                            s.conditions
                                .iter()
                                .map(|c| format!("{}={}:{}", c.type_, c.status, c.reason))
                                .collect::<Vec<_>>()
                        ))
                    )
                })
                .collect();
            let nodes: Vec<String> = lab
                .stored::<Node>("", "nodes")
                .iter()
                .map(|n| {
                    format!(
                        "{} fin={:?} del={:?}",
                        n.metadata.name.as_deref().unwrap_or(""),
                        n.metadata.finalizers,
                        n.metadata.deletion_timestamp
                    )
                })
                .collect();
            panic!(
                "teardown within 2 more simulated hours under faults: instances {:?}\nclaims {claims:#?}\nnodes {nodes:#?}",
                cloud
                    .instances()
                    .iter()
                    .map(|i| &i.provider_id)
                    .collect::<Vec<_>>()
            );
        }
    }
    lab.cluster.state().faults.clear();
    lab.assert_nothing_leaked();
}
