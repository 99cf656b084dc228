//! Property tests: decoding and `validate()` never panic, whatever the input structure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use nodewright_api::{
    EC2NodeClass, NodeClaim, NodePool, Object,
    decode::{decode_object, parse_objects},
    nodepool::{parse_budget_nodes, parse_schedule},
    quantity,
};
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use serde_json::{Map, Value, json};

static RUNS: AtomicUsize = AtomicUsize::new(0);
static DECODED: AtomicUsize = AtomicUsize::new(0);

/// The mutation test is only meaningful if many mutated objects still decode and reach
/// `validate()` (enum strings replaced by arbitrary text rightly fail to decode); check the share.
#[test]
fn mutations_mostly_reach_validate() {
    mutated_objects_never_panic();
    let (runs, decoded) = (RUNS.load(Ordering::Relaxed), DECODED.load(Ordering::Relaxed));
    assert!(
        decoded * 4 >= runs,
        "only {decoded} of {runs} mutated objects decoded"
    );
}

/// Strings that sit on the edges of the API's rules.
fn edge_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("Never".to_owned()),
        Just("-1".to_owned()),
        Just("100%".to_owned()),
        Just("101%".to_owned()),
        Just("@daily".to_owned()),
        Just("0 19-7 * * *".to_owned()),
        Just("99999999999999999999999999999999h".to_owned()),
        Just("1e999".to_owned()),
        Just("karpenter.sh/nodepool".to_owned()),
        Just("kubernetes.io/hostname".to_owned()),
        Just("al2023@latest".to_owned()),
        Just("a@".to_owned()),
        Just("@".to_owned()),
        Just("x".repeat(400)),
        Just("ü/ß".to_owned()),
        "[a-zA-Z0-9./@%:*_ -]{0,24}",
        any::<String>(),
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        edge_string().prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((edge_string(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn bases() -> Vec<Value> {
    vec![
        json!({ "apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": { "name": "default" }, "spec": {
            "template": { "metadata": { "labels": { "a": "b" } }, "spec": {
                "requirements": [{ "key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"], "minValues": 1 }],
                "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" },
                "taints": [{ "key": "k", "effect": "NoSchedule" }], "terminationGracePeriod": "1h" } },
            "disruption": { "budgets": [{ "nodes": "10%", "schedule": "@daily", "duration": "1h", "reasons": ["Empty"] }] },
            "limits": { "cpu": "10" }, "weight": 5 } }),
        json!({ "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim", "metadata": { "name": "c" }, "spec": {
            "requirements": [{ "key": "karpenter.sh/nodepool", "operator": "In", "values": ["default"] }],
            "resources": { "requests": { "cpu": "1" } },
            "nodeClassRef": { "group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default" } } }),
        json!({ "apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass", "metadata": { "name": "default" }, "spec": {
            "amiSelectorTerms": [{ "alias": "al2023@latest" }], "role": "r",
            "subnetSelectorTerms": [{ "tags": { "a": "b" } }], "securityGroupSelectorTerms": [{ "id": "sg-1" }],
            "blockDeviceMappings": [{ "rootVolume": true, "ebs": { "volumeSize": "20Gi" } }],
            "networkInterfaces": [{ "networkCardIndex": 0, "deviceIndex": 0, "interfaceType": "interface" }],
            "connectionTracking": { "udpTimeout": 30 },
            "kubelet": { "maxPods": 10, "evictionSoft": { "memory.available": "1%" }, "evictionSoftGracePeriod": { "memory.available": "1m" }, "kubeReserved": { "cpu": "100m" } } } }),
        json!({ "apiVersion": "karpenter.sh/v1alpha1", "kind": "NodeOverlay", "metadata": { "name": "o" }, "spec": {
            "requirements": [{ "key": "a", "operator": "Exists" }], "price": "1.5", "capacity": { "example.com/x": "1" } } }),
        json!({ "apiVersion": "autoscaling.x-k8s.io/v1beta1", "kind": "CapacityBuffer", "metadata": { "name": "b", "namespace": "n" }, "spec": {
            "scalableRef": { "kind": "Deployment", "name": "d" }, "percentage": 10, "limits": { "cpu": "1" } } }),
    ]
}

/// Replaces the node reached by following `route` (one choice per level) with what `replace` makes
/// of it.
fn mutate(value: &mut Value, route: &[usize], replace: &dyn Fn(&Value) -> Value) {
    let Some((&choice, rest)) = route.split_first() else {
        *value = replace(value);
        return;
    };
    match value {
        Value::Object(map) if !map.is_empty() => {
            let key = map.keys().nth(choice % map.len()).cloned().unwrap();
            mutate(map.get_mut(&key).unwrap(), rest, replace);
        }
        Value::Array(items) if !items.is_empty() => {
            let len = items.len();
            mutate(&mut items[choice % len], rest, replace);
        }
        other => *other = replace(other),
    }
}

/// A mutation: a route into the object, and either an arbitrary replacement or one of the same
/// JSON type as the value it replaces (so typed decoding usually succeeds and `validate()` runs).
#[derive(Debug, Clone)]
struct Mutation {
    route: Vec<usize>,
    any: Value,
    text: String,
    number: i64,
    same_type: bool,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        prop::collection::vec(any::<usize>(), 0..7),
        json_value(),
        edge_string(),
        any::<i64>(),
        prop::bool::weighted(0.8),
    )
        .prop_map(|(route, any, text, number, same_type)| Mutation {
            route,
            any,
            text,
            number,
            same_type,
        })
}

impl Mutation {
    fn apply(&self, object: &mut Value) {
        mutate(object, &self.route, &|old| {
            if !self.same_type {
                return self.any.clone();
            }
            match old {
                Value::String(_) => Value::String(self.text.clone()),
                Value::Number(_) => Value::from(self.number % 1000),
                Value::Bool(b) => Value::Bool(!b),
                Value::Array(items) => Value::Array(items.iter().chain(items.first()).cloned().collect()),
                _ => self.any.clone(),
            }
        });
    }
}

fn exercise(object: &Object) {
    let _ = object.validate();
    let _ = object.describe();
    let _ = object.to_value();
    match object {
        Object::NodePool(pool) => {
            let _ = pool.validate_update(pool);
        }
        Object::NodeClaim(claim) => {
            let _ = claim.validate_update(claim);
        }
        Object::EC2NodeClass(class) => {
            let _ = class.ami_family();
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mutated_objects_never_panic(
        base in 0usize..5,
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let mut object = bases()[base].clone();
        for mutation in &mutations {
            mutation.apply(&mut object);
        }
        // Keep the kind so the typed decoders are exercised, not just the "other kind" path.
        if let Some(map) = object.as_object_mut() {
            let base = &bases()[base];
            map.insert("apiVersion".into(), base["apiVersion"].clone());
            map.insert("kind".into(), base["kind"].clone());
        }
        if let Ok(decoded) = decode_object(object, "prop", 0) {
            exercise(&decoded);
            DECODED.fetch_add(1, Ordering::Relaxed);
        }
        RUNS.fetch_add(1, Ordering::Relaxed);
    }

    #[test]
    fn arbitrary_documents_never_panic(value in json_value()) {
        if let Ok(decoded) = decode_object(value, "prop", 0) {
            exercise(&decoded);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        if let Ok(objects) = parse_objects(&text, "prop") {
            objects.iter().for_each(exercise);
        }
    }

    #[test]
    fn field_parsers_never_panic(text in edge_string()) {
        let _ = quantity::parse_milli(&text);
        let _ = parse_budget_nodes(&text);
        let _ = parse_schedule(&text);
        let _ = nodewright_api::duration::parse_go_duration(&text);
        let _ = nodewright_api::nodeoverlay::parse_price_adjustment(&text);
    }

    #[test]
    fn typed_objects_with_arbitrary_strings_never_panic(
        key in edge_string(), value in edge_string(), duration in edge_string(), nodes in edge_string(), alias in edge_string(),
    ) {
        let mut pool: NodePool = serde_json::from_value(bases()[0].clone()).unwrap();
        pool.spec.template.spec.requirements[0].key = key.clone();
        pool.spec.template.spec.requirements[0].values = vec![value.clone()];
        pool.spec.template.spec.expire_after = nodewright_api::duration::NillableDuration::new(duration.clone());
        pool.spec.disruption.budgets[0].nodes = nodes;
        pool.spec.disruption.budgets[0].schedule = Some(value.clone());
        pool.spec.template.metadata.labels.insert(key.clone(), value.clone());
        pool.spec.limits.insert(key.clone(), k8s_openapi::apimachinery::pkg::api::resource::Quantity(value.clone()));
        let _ = pool.validate();
        let mut claim: NodeClaim = serde_json::from_value(bases()[1].clone()).unwrap();
        claim.spec.termination_grace_period = Some(nodewright_api::duration::GoDuration::new(duration));
        claim.metadata.name = Some(key.clone());
        let _ = claim.validate();
        let mut class: EC2NodeClass = serde_json::from_value(bases()[2].clone()).unwrap();
        class.spec.ami_selector_terms[0].alias = Some(alias);
        class.spec.tags.insert(key, value);
        let _ = class.validate();
        let _ = class.ami_family();
    }
}
