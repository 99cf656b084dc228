//! POST, PUT, PATCH and DELETE of objects and their status subresource.

use axum::{
    body::Bytes,
    http::{HeaderMap, StatusCode, header},
    response::Response,
};
use serde_json::{Value, json};

use super::{
    AppState, bytes_response, json_response, parse_json,
    read::object_bytes,
    route::{Query, Target, field_manager},
    success_status,
};
use crate::{
    apply,
    error::{ApiError, ApiResult, Subject},
    patch::{self, PatchType},
    store::{DeleteOptions, Deleted, Operation, Propagation, Subresource, WriteOptions},
};

fn subresource(target: &Target) -> Subresource {
    if target.sub.as_deref() == Some("status") {
        Subresource::Status
    } else {
        Subresource::Main
    }
}

fn write_options(query: &Query, headers: &HeaderMap) -> ApiResult<WriteOptions> {
    Ok(WriteOptions {
        dry_run: query.dry_run()?,
        field_manager: Some(field_manager(query, headers)),
        validation: query.field_validation()?,
        operation: Operation::Update,
    })
}

fn name_of(target: &Target) -> &str {
    target.name.as_deref().unwrap_or_default()
}

fn subject(target: &Target) -> Subject {
    Subject {
        group: target.info.group.clone(),
        resource: target.info.plural.clone(),
        kind: target.info.kind.clone(),
        name: name_of(target).to_owned(),
    }
}

fn written(target: &Target, obj: &crate::store::Obj, created: bool) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    bytes_response(status, object_bytes(&target.info, &target.version, obj))
}

/// Types whose PUT creates a missing object, as the API server allows for them.
fn create_on_update(target: &Target) -> bool {
    matches!(
        (target.info.group.as_str(), target.info.plural.as_str()),
        ("coordination.k8s.io", "leases") | ("" | "events.k8s.io", "events")
    )
}

pub(super) fn create(
    state: &AppState,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Response> {
    let value = parse_json(body)?;
    let opts = write_options(query, headers)?;
    let obj = state
        .store
        .create(&target.info, &target.namespace, value, &opts)?;
    Ok(written(target, &obj, true))
}

/// Checks a client's resourceVersion precondition against the stored object.
fn check_version(target: &Target, sent: Option<&str>, current: &Value) -> ApiResult<()> {
    let Some(sent) = sent.filter(|s| !s.is_empty()) else {
        return Ok(());
    };
    if Some(sent) == crate::meta::meta_str(current, "resourceVersion") {
        Ok(())
    } else {
        Err(ApiError::conflict(
            subject(target),
            "the object has been modified; please apply your changes to the latest version and try again",
        ))
    }
}

pub(super) fn update(
    state: &AppState,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Response> {
    let value = parse_json(body)?;
    let opts = write_options(query, headers)?;
    let sent_rv = crate::meta::meta_str(&value, "resourceVersion").map(str::to_owned);
    let allow_create = create_on_update(target) && subresource(target) == Subresource::Main;
    let (obj, created) = state.store.update(
        &target.info,
        &target.namespace,
        name_of(target),
        subresource(target),
        &opts,
        &mut |current| match current {
            Some(current) => {
                // Custom resources allow no unconditional update, as the API server's CR strategy.
                if target.info.crd.is_some() && sent_rv.as_deref().is_none_or(str::is_empty) {
                    return Err(ApiError::Invalid {
                        subject: Box::new(subject(target)),
                        causes: vec![crate::error::Cause::new(
                            "FieldValueInvalid",
                            "Invalid value: 0: must be specified for an update",
                            "metadata.resourceVersion",
                        )],
                    });
                }
                check_version(target, sent_rv.as_deref(), current)?;
                Ok(value.clone())
            }
            None if allow_create => Ok(value.clone()),
            None => Err(ApiError::not_found(
                &target.info.group,
                &target.info.plural,
                name_of(target),
            )),
        },
    )?;
    Ok(written(target, &obj, created))
}

pub(super) fn patch(
    state: &AppState,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Response> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let kind = PatchType::from_content_type(content_type)?;
    let mut opts = write_options(query, headers)?;
    let sub = subresource(target);
    let name = name_of(target);
    let not_found = || ApiError::not_found(&target.info.group, &target.info.plural, name);
    if kind == PatchType::Strategic && target.info.crd.is_some() {
        return Err(ApiError::UnsupportedMediaType(
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".into(),
        ));
    }
    if kind == PatchType::Apply {
        let manager = query
            .get("fieldManager")
            .filter(|m| !m.is_empty())
            .ok_or_else(|| ApiError::BadRequest("PATCH, fieldManager is required for apply requests".into()))?
            .to_owned();
        let applied = apply::parse_body(body)?;
        if crate::meta::meta_str(&applied, "name").is_some_and(|n| n != name) {
            return Err(ApiError::BadRequest(
                "the name of the object does not match the name on the URL".into(),
            ));
        }
        let force = query.flag("force");
        let now = state.store.config().clock.now_rfc3339();
        opts.operation = Operation::Apply;
        let info = target.info.clone();
        let (obj, created) = state.store.update(
            &target.info,
            &target.namespace,
            name,
            sub,
            &opts,
            &mut |current| {
                if current.is_none() && sub == Subresource::Status {
                    return Err(not_found());
                }
                let mut merged = apply::apply(&info, current, &applied, &manager, force, sub, &now)?;
                if current.is_none() {
                    crate::meta::metadata_mut(&mut merged).insert("name".into(), name.into());
                }
                Ok(merged)
            },
        )?;
        return Ok(written(target, &obj, created));
    }
    let (obj, created) = state.store.update(
        &target.info,
        &target.namespace,
        name,
        sub,
        &opts,
        &mut |current| {
            let current = current.ok_or_else(not_found)?;
            let mut value = current.clone();
            match kind {
                PatchType::Merge => patch::merge_patch(&mut value, body)?,
                PatchType::Json => patch::json_patch(&mut value, body)?,
                PatchType::Strategic | PatchType::Apply => patch::strategic_patch(&mut value, body)?,
            }
            let sent = crate::meta::meta_str(&value, "resourceVersion").map(str::to_owned);
            check_version(target, sent.as_deref(), current)?;
            Ok(value)
        },
    )?;
    Ok(written(target, &obj, created))
}

/// DeleteOptions from the body and the query string (the query wins).
fn delete_options(query: &Query, body: &Bytes) -> ApiResult<DeleteOptions> {
    let from_body = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        parse_json(body)?
    };
    let text = |key: &str| -> Option<String> {
        query
            .get(key)
            .map(str::to_owned)
            .or_else(|| from_body.get(key).and_then(Value::as_str).map(str::to_owned))
    };
    let propagation = match text("propagationPolicy").as_deref() {
        None | Some("") => {
            let orphan = query
                .get("orphanDependents")
                .map(|v| v == "true")
                .or_else(|| from_body.get("orphanDependents").and_then(Value::as_bool));
            (orphan == Some(true)).then_some(Propagation::Orphan)
        }
        Some("Background") => Some(Propagation::Background),
        Some("Foreground") => Some(Propagation::Foreground),
        Some("Orphan") => Some(Propagation::Orphan),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "invalid propagationPolicy {other:?}"
            )));
        }
    };
    let grace_period = match query.int("gracePeriodSeconds")? {
        Some(g) => Some(g),
        None => from_body.get("gracePeriodSeconds").and_then(Value::as_i64),
    };
    let dry_run = query.dry_run()?
        || from_body
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|v| v == "All"));
    let preconditions = from_body.get("preconditions");
    Ok(DeleteOptions {
        propagation,
        grace_period,
        uid: preconditions
            .and_then(|p| p.get("uid"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        resource_version: preconditions
            .and_then(|p| p.get("resourceVersion"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        dry_run,
    })
}

pub(super) fn delete(state: &AppState, target: &Target, query: &Query, body: &Bytes) -> ApiResult<Response> {
    let opts = delete_options(query, body)?;
    match state
        .store
        .delete(&target.info, &target.namespace, name_of(target), &opts)?
    {
        Deleted::Pending(obj) => Ok(bytes_response(
            StatusCode::ACCEPTED,
            object_bytes(&target.info, &target.version, &obj),
        )),
        Deleted::Gone(obj) => Ok(json_response(
            StatusCode::OK,
            &success_status(
                200,
                Some(
                    json!({"name": &*obj.name, "group": target.info.group, "kind": target.info.plural, "uid": &*obj.uid}),
                ),
            ),
        )),
    }
}

pub(super) fn delete_collection(
    state: &AppState,
    target: &Target,
    query: &Query,
    body: &Bytes,
) -> ApiResult<Response> {
    let opts = delete_options(query, body)?;
    let filter = query.filter(&target.namespace)?;
    let page = state.store.list(&target.info, &filter, None, None)?;
    let mut items = Vec::new();
    for obj in &page.items {
        match state.store.delete(&target.info, &obj.namespace, &obj.name, &opts) {
            Ok(Deleted::Gone(o) | Deleted::Pending(o)) => items.push(o.value()),
            Err(ApiError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "apiVersion": target.info.api_version(&target.version),
            "kind": format!("{}List", target.info.kind),
            "metadata": {"resourceVersion": state.store.resource_version().to_string()},
            "items": items,
        }),
    ))
}
