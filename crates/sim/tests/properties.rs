//! Property tests: whatever a client sends, the server answers with a result or a Status error
//! and never panics; selectors, patches and applies never crash on arbitrary input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use nodewright_sim::{
    patch,
    selector::{FieldSelector, LabelSelector},
    store::{Operation, Store, StoreConfig, Subresource, WriteOptions},
};
use proptest::prelude::*;
use serde_json::{Value, json};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z$/.]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("spec".to_owned()),
                    Just("metadata".to_owned()),
                    Just("containers".to_owned()),
                    Just("name".to_owned()),
                    Just("$patch".to_owned()),
                    Just("replicas".to_owned()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn deployment() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn selectors_never_panic(text in ".{0,40}") {
        let _ = LabelSelector::parse(&text);
        let _ = FieldSelector::parse(&text);
    }

    #[test]
    fn patches_never_panic(body in arb_json()) {
        let bytes = body.to_string();
        for apply in [patch::merge_patch, patch::strategic_patch, patch::json_patch] {
            let mut target = deployment();
            let _ = apply(&mut target, bytes.as_bytes());
        }
    }

    #[test]
    fn arbitrary_writes_are_stored_or_refused(body in arb_json(), apply in any::<bool>()) {
        let store = Store::new(StoreConfig::default());
        let info = store.registry().get("apps", "deployments").unwrap();
        store.create(&info, "default", deployment(), &WriteOptions::default()).unwrap();
        let opts = WriteOptions {
            field_manager: Some("fuzz".into()),
            operation: if apply { Operation::Apply } else { Operation::Update },
            ..WriteOptions::default()
        };
        let result = store.update(&info, "default", "web", Subresource::Main, &opts, &mut |current| {
            if apply {
                let mut applied = body.clone();
                if let Some(map) = applied.as_object_mut() {
                    map.insert("apiVersion".into(), "apps/v1".into());
                    map.insert("kind".into(), "Deployment".into());
                }
                nodewright_sim::apply::apply(&info, current, &applied, "fuzz", false, Subresource::Main, "t")
            } else {
                let mut merged = current.cloned().unwrap_or(Value::Null);
                json_patch::merge(&mut merged, &body);
                Ok(merged)
            }
        });
        // Either stored (and then readable) or refused with a Status-worthy error.
        match result {
            Ok((obj, _)) => prop_assert_eq!(&*obj.name, "web"),
            Err(err) => prop_assert!((400..600).contains(&err.code()), "{err:?}"),
        }
        let still = store.get(&info, "default", "web").unwrap().value();
        prop_assert!(still["spec"]["selector"].is_object());
    }
}
