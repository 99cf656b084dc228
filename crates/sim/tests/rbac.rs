//! RBAC through kube-rs: a client minted for a ServiceAccount gets what its bindings grant and a
//! 403 `Status` for anything else, each refusal recorded; the admin client is unaffected.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::{ConfigMap, Node, Pod},
};
use kube::{
    Api,
    api::{DeleteParams, ListParams, PostParams},
};
use nodewright_sim::testing::TestCluster;

const POLICY: &str = r"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: node-reader
rules:
  - apiGroups: ['']
    resources: ['nodes']
    verbs: ['get', 'list', 'watch']
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: node-reader
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: node-reader}
subjects:
  - {kind: ServiceAccount, name: reader, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: one-lease
  namespace: kube-system
rules:
  - apiGroups: ['coordination.k8s.io']
    resources: ['leases']
    verbs: ['get']
    resourceNames: ['mine']
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: one-lease
  namespace: kube-system
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: one-lease}
subjects:
  - {kind: ServiceAccount, name: reader, namespace: kube-system}
";

fn lease(name: &str) -> Lease {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "kube-system"}, "spec": {}
    }))
    .unwrap()
}

fn status_code(error: &kube::Error) -> u16 {
    match error {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn a_service_account_gets_what_its_bindings_grant_and_a_403_for_the_rest() {
    let cluster = TestCluster::start().await.unwrap();
    cluster.apply_yaml(POLICY).unwrap();
    let admin = cluster.client();
    let leases: Api<Lease> = Api::namespaced(admin.clone(), "kube-system");
    for name in ["mine", "theirs"] {
        leases.create(&PostParams::default(), &lease(name)).await.unwrap();
    }
    let reader = cluster
        .client_for_service_account("kube-system", "reader")
        .unwrap();

    // Granted: the ClusterRole's reads, and the Role's one named Lease.
    let nodes: Api<Node> = Api::all(reader.clone());
    nodes.list(&ListParams::default()).await.unwrap();
    let mine: Api<Lease> = Api::namespaced(reader.clone(), "kube-system");
    mine.get("mine").await.unwrap();
    assert!(cluster.state().rbac.denied().is_empty());

    // Refused: another Lease, a verb the role lacks, a resource it does not name, the Role's
    // resource in another namespace.
    let refused = [
        mine.get("theirs").await.unwrap_err(),
        nodes.delete("x", &DeleteParams::default()).await.unwrap_err(),
        Api::<Pod>::all(reader.clone())
            .list(&ListParams::default())
            .await
            .unwrap_err(),
        Api::<Lease>::namespaced(reader.clone(), "default")
            .get("mine")
            .await
            .unwrap_err(),
    ];
    for error in &refused {
        assert_eq!(status_code(error), 403, "{error}");
    }
    let kube::Error::Api(status) = &refused[0] else {
        unreachable!()
    };
    assert_eq!(status.reason, "Forbidden");
    assert_eq!(
        status.message,
        "leases.coordination.k8s.io \"theirs\" is forbidden: User \
         \"system:serviceaccount:kube-system:reader\" cannot get resource \"leases\" in API group \
         \"coordination.k8s.io\" in the namespace \"kube-system\""
    );
    let denied: Vec<String> = cluster
        .state()
        .rbac
        .denied()
        .iter()
        .map(|d| {
            format!(
                "{} {} {}",
                d.attributes.verb,
                d.attributes.combined_resource(),
                d.attributes.name
            )
        })
        .collect();
    assert_eq!(
        denied,
        [
            "get leases theirs",
            "delete nodes x",
            "list pods ",
            "get leases mine"
        ]
    );

    // The admin client (no token) is unaffected; an unknown token is a 401.
    Api::<ConfigMap>::namespaced(admin, "default")
        .list(&ListParams::default())
        .await
        .unwrap();
    let mut config = kube::Config::new(cluster.url().parse().unwrap());
    config.auth_info.token = Some("made-up".to_owned().into());
    let stranger = kube::Client::try_from(config).unwrap();
    let error = Api::<Node>::all(stranger)
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert_eq!(status_code(&error), 401);
}
