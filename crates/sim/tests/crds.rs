//! CustomResourceDefinitions over kube-rs: registration, discovery, defaults, pruning and the
//! Karpenter CRDs' validation (OpenAPI bounds and CEL rules, including transition rules).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

mod common;

use common::{WAIT, cluster, code};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Discovery, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

async fn install_crds(c: &nodewright_sim::testing::TestCluster) {
    let crds: Api<CustomResourceDefinition> = Api::all(c.client());
    for crd in nodewright_api::crds::all() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
}

fn nodepools(c: &nodewright_sim::testing::TestCluster) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("karpenter.sh", "v1", "NodePool"));
    Api::all_with(c.client(), &resource)
}

fn nodepool(name: &str, weight: Option<i64>) -> DynamicObject {
    let mut spec = json!({
        "template": {"spec": {
            "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
            "requirements": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]
        }}
    });
    if let Some(w) = weight {
        spec["weight"] = w.into();
    }
    serde_json::from_value(json!({"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": name}, "spec": spec})).unwrap()
}

fn causes(err: &kube::Error) -> Vec<String> {
    let kube::Error::Api(status) = err else {
        panic!("{err:?}")
    };
    status
        .details
        .as_ref()
        .map(|d| d.causes.iter().map(|c| c.field.clone()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn crds_are_established_and_discoverable() {
    let c = cluster().await;
    install_crds(&c).await;
    let crds: Api<CustomResourceDefinition> = Api::all(c.client());
    let crd = crds.get("nodepools.karpenter.sh").await.unwrap();
    let conditions = crd.status.unwrap().conditions.unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );

    let discovery = Discovery::new(c.client()).run().await.unwrap();
    let group = discovery.get("karpenter.sh").expect("karpenter.sh is discovered");
    let kinds: Vec<String> = group
        .recommended_resources()
        .into_iter()
        .map(|(r, _)| r.kind)
        .collect();
    assert!(kinds.contains(&"NodePool".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"NodeClaim".to_owned()), "{kinds:?}");

    // A CRD whose name does not match its names is refused.
    let mut bad = nodewright_api::crds::all().remove(0);
    bad.metadata.name = Some("wrong.example.com".into());
    assert_eq!(
        code(&crds.create(&PostParams::default(), &bad).await.unwrap_err()),
        Some(422)
    );

    // Deleting the CRD stops serving its resource and removes its objects.
    let pools = nodepools(&c);
    pools
        .create(&PostParams::default(), &nodepool("p", None))
        .await
        .unwrap();
    crds.delete("nodepools.karpenter.sh", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    c.wait_until(WAIT, "nodepools unserved", || async {
        pools.list(&kube::api::ListParams::default()).await.is_err()
    })
    .await
    .unwrap();
    assert_eq!(code(&pools.get("p").await.unwrap_err()), Some(404));
}

#[tokio::test]
async fn nodepools_are_defaulted_pruned_and_validated() {
    let c = cluster().await;
    install_crds(&c).await;
    let pools = nodepools(&c);
    let pp = PostParams::default();

    let created = pools.create(&pp, &nodepool("default", None)).await.unwrap();
    let spec = &created.data["spec"];
    assert_eq!(
        spec["disruption"]["budgets"],
        json!([{"nodes": "10%"}]),
        "schema defaults are applied"
    );
    assert_eq!(spec["disruption"]["consolidateAfter"], "0s");
    assert!(
        created.data.get("status").is_none(),
        "status is not set through the main resource"
    );

    // weight must be 1..=100.
    let zero = pools.create(&pp, &nodepool("zero", Some(0))).await.unwrap_err();
    assert_eq!(code(&zero), Some(422));
    assert_eq!(causes(&zero), ["spec.weight"]);

    // Unknown fields are pruned, or rejected under strict field validation.
    let mut extra = nodepool("extra", Some(10));
    extra.data["spec"]["bogus"] = json!(true);
    let stored = pools.create(&pp, &extra).await.unwrap();
    assert!(stored.data["spec"].get("bogus").is_none());
    let mut extra2 = nodepool("extra2", Some(10));
    extra2.data["spec"]["bogus"] = json!(true);
    let strict = axum::http::Request::post(format!(
        "{}/apis/karpenter.sh/v1/nodepools?fieldValidation=Strict",
        c.url()
    ))
    .header("content-type", "application/json")
    .body(serde_json::to_vec(&extra2).unwrap())
    .unwrap();
    let rejected = c.client().request::<DynamicObject>(strict).await.unwrap_err();
    let kube::Error::Api(status) = &rejected else {
        panic!()
    };
    assert!(
        status.message.contains("unknown field \"spec.bogus\""),
        "{}",
        status.message
    );
    assert_eq!(code(&rejected), Some(400));

    // A CEL transition rule: nodeClassRef.group may not change.
    let changed = pools
        .patch(
            "default",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"template": {"spec": {"nodeClassRef": {"group": "other.example.com"}}}}}),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&changed), Some(422));
    let fields = causes(&changed);
    assert!(fields.iter().any(|f| f.contains("nodeClassRef")), "{fields:?}");
    let kube::Error::Api(status) = &changed else {
        panic!()
    };
    assert!(status.message.contains("immutable"), "{}", status.message);

    // Status goes through the status subresource and does not bump the generation.
    let with_status = pools
        .patch_status(
            "default",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"resources": {"nodes": "3"}, "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}})),
        )
        .await
        .unwrap();
    assert_eq!(with_status.data["status"]["resources"]["nodes"], "3");
    assert_eq!(with_status.metadata.generation, Some(1));
}

#[tokio::test]
async fn example_manifests_apply_server_side() {
    let c = cluster().await;
    install_crds(&c).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/default");
    for file in ["ec2nodeclass.yaml", "nodepool.yaml"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let value: Value = serde_saphyr::from_str(&text).unwrap();
        let kind = value["kind"].as_str().unwrap();
        let (group, version) = value["apiVersion"].as_str().unwrap().split_once('/').unwrap();
        let api: Api<DynamicObject> = Api::all_with(
            c.client(),
            &ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind)),
        );
        let obj: DynamicObject = serde_json::from_value(value.clone()).unwrap();
        let applied = api
            .patch(&obj.name_any(), &PatchParams::apply("test"), &Patch::Apply(&obj))
            .await
            .unwrap();
        assert_eq!(applied.name_any(), "default");
        assert!(
            applied
                .managed_fields()
                .iter()
                .any(|m| m.manager.as_deref() == Some("test"))
        );
    }
}

const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas, labelSelectorPath: .status.selector}
    selectableFields:
    - jsonPath: .spec.color
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: "self.replicas <= 10"
              message: at most ten
            properties:
              replicas: {type: integer, default: 1}
              color: {type: string, enum: [red, blue]}
              parts:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {type: string}
                    size: {type: integer}
          status:
            type: object
            properties:
              replicas: {type: integer}
              selector: {type: string}
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

#[tokio::test]
async fn custom_resources_get_scale_selectable_fields_versions_and_list_maps() {
    let c = cluster().await;
    c.apply_yaml(WIDGET_CRD).unwrap();
    let v1 = ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"));
    let widgets: Api<DynamicObject> = Api::default_namespaced_with(c.client(), &v1);
    let widget = |name: &str, color: &str| -> DynamicObject {
        serde_json::from_value(
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name},
            "spec": {"color": color, "parts": [{"name": "a", "size": 1}]}}),
        )
        .unwrap()
    };
    let created = widgets
        .create(&PostParams::default(), &widget("w1", "red"))
        .await
        .unwrap();
    assert_eq!(created.data["spec"]["replicas"], 1);
    widgets
        .create(&PostParams::default(), &widget("w2", "blue"))
        .await
        .unwrap();

    // Selectable fields.
    let reds = widgets
        .list(&kube::api::ListParams::default().fields("spec.color=red"))
        .await
        .unwrap();
    assert_eq!(
        reds.items.iter().map(ResourceExt::name_any).collect::<Vec<_>>(),
        ["w1"]
    );

    // Scale subresource on the CRD's paths; the CEL rule still guards spec.replicas.
    let scaled = widgets
        .patch_scale(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.spec.unwrap().replicas, Some(4));
    let too_many = widgets
        .patch_scale(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 11}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&too_many), Some(422));

    // Server-side apply merges x-kubernetes-list-type=map lists by key across managers.
    let part = |manager: &str, name: &str, size: i64| {
        let obj: DynamicObject =
            serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w1"}, "spec": {"parts": [{"name": name, "size": size}]}}))
            .unwrap();
        (PatchParams::apply(manager), obj)
    };
    let (pp, obj) = part("one", "b", 2);
    widgets.patch("w1", &pp, &Patch::Apply(&obj)).await.unwrap();
    let (pp, obj) = part("two", "c", 3);
    let merged = widgets.patch("w1", &pp, &Patch::Apply(&obj)).await.unwrap();
    let names: Vec<&str> = merged.data["spec"]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);

    // Another served version sees the same object under its own apiVersion.
    let beta = ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1beta1", "Widget"));
    let beta_widgets: Api<DynamicObject> = Api::default_namespaced_with(c.client(), &beta);
    let seen = beta_widgets.get("w1").await.unwrap();
    assert_eq!(seen.types.unwrap().api_version, "example.com/v1beta1");
    assert_eq!(
        widgets.get("w1").await.unwrap().types.unwrap().api_version,
        "example.com/v1"
    );

    // Invalid enum values are refused with the field named.
    let bad = widgets
        .create(&PostParams::default(), &widget("w3", "green"))
        .await
        .unwrap_err();
    assert_eq!(causes(&bad), ["spec.color"]);

    // The test-support waits see changes made through the API.
    let found = c
        .wait_for_object("example.com", "widgets", "default", "w2", WAIT, |w| {
            w["spec"]["color"] == "blue"
        })
        .await
        .unwrap();
    assert_eq!(found["metadata"]["name"], "w2");
}

#[tokio::test]
async fn built_in_metadata_is_validated() {
    let c = cluster().await;
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::default_namespaced(c.client());
    let mut upper = common::cm("Upper");
    assert_eq!(
        code(&cms.create(&PostParams::default(), &upper).await.unwrap_err()),
        Some(422)
    );
    upper.metadata.name = Some("lower".into());
    upper.metadata.labels = Some([("bad key!".to_owned(), "v".to_owned())].into());
    let err = cms.create(&PostParams::default(), &upper).await.unwrap_err();
    assert_eq!(causes(&err), ["metadata.labels"]);
    upper.metadata.labels = Some([("ok".to_owned(), "-bad-value".to_owned())].into());
    assert_eq!(
        causes(&cms.create(&PostParams::default(), &upper).await.unwrap_err()),
        ["metadata.labels"]
    );
}

#[tokio::test]
async fn custom_resource_updates_need_a_resource_version() {
    let c = cluster().await;
    install_crds(&c).await;
    let pools = nodepools(&c);
    let created = pools
        .create(&PostParams::default(), &nodepool("p", Some(5)))
        .await
        .unwrap();
    let mut unconditional = nodepool("p", Some(6));
    unconditional.metadata.resource_version = None;
    let err = pools
        .replace("p", &PostParams::default(), &unconditional)
        .await
        .unwrap_err();
    assert_eq!(causes(&err), ["metadata.resourceVersion"]);
    let mut conditional = nodepool("p", Some(6));
    conditional.metadata.resource_version = created.metadata.resource_version.clone();
    let replaced = pools
        .replace("p", &PostParams::default(), &conditional)
        .await
        .unwrap();
    assert_eq!(replaced.data["spec"]["weight"], 6);
    assert_eq!(replaced.metadata.generation, Some(2));
}
