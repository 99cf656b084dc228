//! Subresources other than status: `scale` (autoscaling/v1 Scale), `pods/binding`,
//! `pods/eviction` (honouring PodDisruptionBudgets) and `namespaces/finalize`.

use axum::{
    body::Bytes,
    http::{HeaderMap, Method, StatusCode, header},
    response::Response,
};
use serde_json::{Value, json};

use super::{
    AppState, json_response, parse_json,
    route::{Query, Target, field_manager},
    success_status,
};
use crate::{
    error::{ApiError, ApiResult, Cause},
    eviction,
    meta::{self, meta_str},
    patch::{self, PatchType},
    resources::ResourceInfo,
    selector::{LabelSelector, lookup},
    store::{DeleteOptions, Filter, Subresource, WriteOptions},
};

fn name_of(target: &Target) -> &str {
    target.name.as_deref().unwrap_or_default()
}

/// The Scale view of an object.
fn scale_of(info: &ResourceInfo, value: &Value) -> Value {
    let Some(paths) = &info.scale else {
        return Value::Null;
    };
    let selector = paths
        .label_selector
        .as_deref()
        .and_then(|p| lookup(value, p))
        .map(|s| match s {
            Value::String(text) => text.clone(),
            object => LabelSelector::from_object(object)
                .map(|l| l.to_query())
                .unwrap_or_default(),
        });
    let meta = value.get("metadata");
    let pick = |k: &str| meta.and_then(|m| m.get(k)).cloned().unwrap_or(Value::Null);
    let mut status =
        json!({"replicas": lookup(value, &paths.status_replicas).and_then(Value::as_i64).unwrap_or(0)});
    if let Some(s) = selector {
        status["selector"] = s.into();
    }
    let mut metadata = json!({"name": pick("name"), "uid": pick("uid"), "resourceVersion": pick("resourceVersion"), "creationTimestamp": pick("creationTimestamp")});
    if info.namespaced {
        metadata["namespace"] = pick("namespace");
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": lookup(value, &paths.spec_replicas).and_then(Value::as_i64).unwrap_or(0)},
        "status": status,
    })
}

pub(super) fn scale(
    state: &AppState,
    method: &Method,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Response> {
    let info = &target.info;
    let Some(paths) = info.scale.clone() else {
        return Err(ApiError::NoResource);
    };
    let name = name_of(target);
    if *method == Method::GET {
        let obj = state.store.get(info, &target.namespace, name)?;
        return Ok(json_response(StatusCode::OK, &scale_of(info, &obj.value())));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let kind = match *method {
        Method::PUT => None,
        Method::PATCH => Some(PatchType::from_content_type(content_type)?),
        _ => return Err(ApiError::MethodNotAllowed),
    };
    let opts = WriteOptions {
        dry_run: query.dry_run()?,
        field_manager: Some(field_manager(query, headers)),
        ..WriteOptions::default()
    };
    let (obj, _) = state.store.update(info, &target.namespace, name, Subresource::Main, &opts, &mut |current| {
        let current = current.ok_or_else(|| ApiError::not_found(&info.group, &info.plural, name))?;
        let mut scale = scale_of(info, current);
        match kind {
            None => {
                let sent = parse_json(body)?;
                if let Some(rv) = meta_str(&sent, "resourceVersion").filter(|rv| !rv.is_empty())
                    && Some(rv) != meta_str(current, "resourceVersion")
                {
                    return Err(ApiError::conflict(
                        crate::error::Subject {
                            group: info.group.clone(),
                            resource: info.plural.clone(),
                            kind: info.kind.clone(),
                            name: name.to_owned(),
                        },
                        "the object has been modified; please apply your changes to the latest version and try again",
                    ));
                }
                scale = sent;
            }
            Some(PatchType::Json) => patch::json_patch(&mut scale, body)?,
            Some(_) => patch::merge_patch(&mut scale, body)?,
        }
        let replicas = scale.get("spec").and_then(|s| s.get("replicas")).and_then(Value::as_i64).unwrap_or(0);
        if replicas < 0 {
            return Err(ApiError::Invalid {
                subject: Box::new(crate::error::Subject { kind: "Scale".into(), name: name.to_owned(), ..Default::default() }),
                causes: vec![Cause::new("FieldValueInvalid", format!("Invalid value: {replicas}: must be greater than or equal to 0"), "spec.replicas")],
            });
        }
        let mut value = current.clone();
        meta::set_path(&mut value, &paths.spec_replicas, replicas.into());
        Ok(value)
    })?;
    Ok(json_response(StatusCode::OK, &scale_of(info, &obj.value())))
}

pub(super) fn binding(state: &AppState, target: &Target, body: &Bytes) -> ApiResult<Response> {
    let binding = parse_json(body)?;
    let node = binding
        .get("target")
        .and_then(|t| t.get("name"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest("a binding needs target.name".into()))?
        .to_owned();
    let name = name_of(target);
    let now = state.store.config().clock.now_rfc3339();
    let opts = WriteOptions {
        field_manager: Some("kube-scheduler".into()),
        ..WriteOptions::default()
    };
    // The binding writes spec.nodeName, which the main resource keeps and the status
    // subresource would drop: write the main object, then the PodScheduled condition.
    state.store.update(
        &target.info,
        &target.namespace,
        name,
        Subresource::Main,
        &opts,
        &mut |current| {
            let current = current.ok_or_else(|| ApiError::not_found("", "pods", name))?;
            if let Some(existing) = lookup(current, "spec.nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                return Err(ApiError::conflict(
                    crate::error::Subject {
                        resource: "pods".into(),
                        name: name.to_owned(),
                        ..Default::default()
                    },
                    &format!("pod {name} is already assigned to node \"{existing}\""),
                ));
            }
            let mut value = current.clone();
            meta::set_path(&mut value, "spec.nodeName", node.clone().into());
            Ok(value)
        },
    )?;
    state.store.update(&target.info, &target.namespace, name, Subresource::Status, &opts, &mut |current| {
        let mut value = current.cloned().ok_or_else(|| ApiError::not_found("", "pods", name))?;
        let status = meta::object_field_mut(&mut value, "status");
        let conditions = status.entry("conditions").or_insert_with(|| json!([]));
        if let Some(list) = conditions.as_array_mut() {
            list.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
            list.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
        }
        Ok(value)
    })?;
    Ok(json_response(StatusCode::CREATED, &success_status(201, None)))
}

pub(super) fn eviction(state: &AppState, target: &Target, body: &Bytes) -> ApiResult<Response> {
    let request = parse_json(body)?;
    let name = name_of(target);
    let ns = &target.namespace;
    let pod = state.store.get(&target.info, ns, name)?.value();
    let delete = DeleteOptions {
        grace_period: request
            .get("deleteOptions")
            .and_then(|d| d.get("gracePeriodSeconds"))
            .and_then(Value::as_i64),
        uid: request
            .get("deleteOptions")
            .and_then(|d| d.get("preconditions"))
            .and_then(|p| p.get("uid"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        ..DeleteOptions::default()
    };
    if !eviction::is_gone(&pod) {
        check_budgets(state, ns, &pod)?;
    }
    state.store.delete(&target.info, ns, name, &delete)?;
    Ok(json_response(StatusCode::CREATED, &success_status(201, None)))
}

/// Refuses an eviction (429) that would break the one PodDisruptionBudget covering the pod.
fn check_budgets(state: &AppState, ns: &str, pod: &Value) -> ApiResult<()> {
    let registry = state.store.registry();
    let (Some(pdbs_info), Some(pods_info)) = (
        registry.get("policy", "poddisruptionbudgets"),
        registry.get("", "pods"),
    ) else {
        return Ok(());
    };
    let in_ns = Filter {
        namespace: Some(ns.to_owned()),
        ..Filter::default()
    };
    let labels = pod.get("metadata").and_then(|m| m.get("labels"));
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let mut covering = Vec::new();
    for pdb in state.store.list(&pdbs_info, &in_ns, None, None)?.items {
        let pdb = pdb.value();
        let Some(selector) = pdb.get("spec").and_then(|s| s.get("selector")) else {
            continue;
        };
        let selector = LabelSelector::from_object(selector)?;
        // An empty selector matches every pod in the namespace (policy/v1).
        if selector.matches(label) {
            covering.push((pdb, selector));
        }
    }
    if covering.len() > 1 {
        return Err(ApiError::Internal(
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
        ));
    }
    let Some((pdb, selector)) = covering.pop() else {
        return Ok(());
    };
    let filter = Filter {
        namespace: Some(ns.to_owned()),
        labels: selector,
        ..Filter::default()
    };
    let pods: Vec<Value> = state
        .store
        .list(&pods_info, &filter, None, None)?
        .items
        .iter()
        .map(|p| p.value())
        .collect();
    let budget = eviction::budget(&pdb, &pods);
    let healthy_pod = eviction::is_ready(pod);
    let allowed = if healthy_pod {
        budget.disruptions_allowed() > 0
    } else {
        eviction::always_allows_unhealthy(&pdb) || budget.healthy >= budget.desired_healthy
    };
    if allowed {
        return Ok(());
    }
    let pdb_name = meta_str(&pdb, "name").unwrap_or_default();
    Err(ApiError::TooManyRequests {
        message: "Cannot evict pod as it would violate the pod's disruption budget.".into(),
        causes: vec![Cause::new(
            "DisruptionBudget",
            format!(
                "The disruption budget {pdb_name} needs {} healthy pods and has {} currently",
                budget.desired_healthy, budget.healthy
            ),
            "",
        )],
    })
}

pub(super) fn finalize_namespace(state: &AppState, target: &Target, body: &Bytes) -> ApiResult<Response> {
    let sent = parse_json(body)?;
    let finalizers = sent
        .get("spec")
        .and_then(|s| s.get("finalizers"))
        .cloned()
        .unwrap_or_else(|| json!([]));
    let name = name_of(target);
    let (obj, _) = state.store.update(
        &target.info,
        "",
        name,
        Subresource::Main,
        &WriteOptions::default(),
        &mut |current| {
            let mut value = current
                .cloned()
                .ok_or_else(|| ApiError::not_found("", "namespaces", name))?;
            meta::set_path(&mut value, "spec.finalizers", finalizers.clone());
            Ok(value)
        },
    )?;
    Ok(super::bytes_response(StatusCode::OK, obj.json.clone()))
}
