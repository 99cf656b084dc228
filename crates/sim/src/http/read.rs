//! GET: one object, a list (pages with `limit`/`continue`, selectors, Table or metadata-only
//! shapes) and watches (newline-delimited events streamed as they happen, with bookmarks,
//! `timeoutSeconds`, `sendInitialEvents`, and an in-stream 410 ERROR event for a compacted
//! version).

use std::{collections::VecDeque, sync::Arc, time::Duration};

use axum::{
    body::{Body, Bytes},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use serde_json::{Value, json};
use tokio::{sync::broadcast, time::Instant};

use super::{
    AppState, bytes_response, json_response,
    route::{self, Query, Shape, Target},
};
use crate::{
    error::{ApiError, ApiResult},
    resources::ResourceInfo,
    store::{Change, EventType, Filter, Obj},
    table::{self, IncludeObject},
};

/// An object's JSON in the requested version.
pub(crate) fn object_bytes(info: &ResourceInfo, version: &str, obj: &Obj) -> Bytes {
    if version == info.storage_version() {
        return obj.json.clone();
    }
    let mut value = obj.value();
    value["apiVersion"] = info.api_version(version).into();
    Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
}

fn include_object(query: &Query) -> IncludeObject {
    match query.get("includeObject") {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    }
}

fn table_response(value: &Value) -> Response {
    let mut response = json_response(StatusCode::OK, value);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;as=Table;v=v1;g=meta.k8s.io"),
    );
    response
}

pub(super) fn get(state: &AppState, target: &Target, headers: &HeaderMap) -> ApiResult<Response> {
    let name = target.name.as_deref().unwrap_or_default();
    let obj = state.store.get(&target.info, &target.namespace, name)?;
    match route::shape(headers) {
        Shape::Table => {
            let now = state.store.config().clock.now();
            let t = table::table(
                &target.info,
                &target.version,
                &[&obj],
                obj.rv,
                None,
                IncludeObject::Metadata,
                now,
            );
            Ok(table_response(&t))
        }
        Shape::Metadata => Ok(json_response(
            StatusCode::OK,
            &table::partial_metadata(&obj.value()),
        )),
        Shape::Plain => Ok(bytes_response(
            StatusCode::OK,
            object_bytes(&target.info, &target.version, &obj),
        )),
    }
}

pub(super) fn list(
    state: &AppState,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let filter = query.filter(&target.namespace)?;
    let limit = query.int("limit")?.and_then(|l| usize::try_from(l).ok());
    let page = state.store.list(
        &target.info,
        &filter,
        limit,
        query.get("continue").filter(|c| !c.is_empty()),
    )?;
    let info = &target.info;
    match route::shape(headers) {
        Shape::Table => {
            let now = state.store.config().clock.now();
            let objects: Vec<&Obj> = page.items.iter().map(Arc::as_ref).collect();
            let t = table::table(
                info,
                &target.version,
                &objects,
                page.rv,
                page.continue_token.as_deref(),
                include_object(query),
                now,
            );
            Ok(table_response(&t))
        }
        Shape::Metadata => {
            let items: Vec<Value> = page
                .items
                .iter()
                .map(|o| table::partial_metadata(&o.value()))
                .collect();
            let mut metadata = json!({"resourceVersion": page.rv.to_string()});
            if let Some(token) = &page.continue_token {
                metadata["continue"] = token.clone().into();
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "items": items}),
            ))
        }
        Shape::Plain => {
            let mut metadata = json!({"resourceVersion": page.rv.to_string()});
            if let Some(token) = &page.continue_token {
                metadata["continue"] = token.clone().into();
            }
            if let Some(remaining) = page.remaining {
                metadata["remainingItemCount"] = remaining.into();
            }
            let head = json!({
                "apiVersion": info.api_version(&target.version),
                "kind": format!("{}List", info.kind),
                "metadata": metadata,
            });
            let mut out = serde_json::to_vec(&head).unwrap_or_default();
            out.pop(); // the closing brace: items follow
            out.extend_from_slice(b",\"items\":[");
            for (i, obj) in page.items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&object_bytes(info, &target.version, obj));
            }
            out.extend_from_slice(b"]}");
            Ok(bytes_response(StatusCode::OK, Bytes::from(out)))
        }
    }
}

/// A watch in progress.
struct Watch {
    info: Arc<ResourceInfo>,
    version: String,
    filter: Filter,
    backlog: VecDeque<Arc<Change>>,
    receiver: broadcast::Receiver<Arc<Change>>,
    last_rv: u64,
    deadline: Instant,
    bookmark_every: Option<Duration>,
    next_bookmark: Instant,
    initial_end: Option<u64>,
    /// The backlog is synthetic ADDED events (any versions, in name order) up to this version.
    synthetic_until: Option<u64>,
    shape: Shape,
    columns_sent: bool,
    clock: crate::meta::Clock,
    finished: bool,
}

impl Watch {
    fn line(&mut self, kind: &str, obj: &Obj) -> Bytes {
        let mut out = format!("{{\"type\":\"{kind}\",\"object\":").into_bytes();
        match self.shape {
            Shape::Plain => out.extend_from_slice(&object_bytes(&self.info, &self.version, obj)),
            Shape::Metadata => out.extend_from_slice(
                &serde_json::to_vec(&table::partial_metadata(&obj.value())).unwrap_or_default(),
            ),
            Shape::Table => {
                let mut t = table::table(
                    &self.info,
                    &self.version,
                    &[obj],
                    obj.rv,
                    None,
                    IncludeObject::Metadata,
                    self.clock.now(),
                );
                if self.columns_sent {
                    t["columnDefinitions"] = json!([]);
                }
                self.columns_sent = true;
                out.extend_from_slice(&serde_json::to_vec(&t).unwrap_or_default());
            }
        }
        out.extend_from_slice(b"}\n");
        Bytes::from(out)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({"kind": self.info.kind, "apiVersion": self.info.api_version(&self.version), "metadata": metadata});
        let mut out = serde_json::to_vec(&json!({"type": "BOOKMARK", "object": object})).unwrap_or_default();
        out.push(b'\n');
        Bytes::from(out)
    }

    /// The event a change becomes for this watch, if any: objects entering the selection are
    /// ADDED, objects leaving it DELETED.
    fn render(&mut self, change: &Change) -> Option<Bytes> {
        if self.synthetic_until.is_none() {
            if change.obj.rv <= self.last_rv {
                return None;
            }
            self.last_rv = change.obj.rv;
        }
        let now = self.filter.matches(&self.info, &change.obj);
        let before = change
            .prev
            .as_ref()
            .is_some_and(|p| self.filter.matches(&self.info, p));
        let kind = match change.kind {
            EventType::Modified if now && before => EventType::Modified,
            EventType::Added | EventType::Modified if now => EventType::Added,
            EventType::Modified if before => EventType::Deleted,
            EventType::Deleted if now || before => EventType::Deleted,
            _ => return None,
        };
        Some(self.line(kind.as_str(), &change.obj))
    }

    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if self.finished {
                return None;
            }
            if let Some(change) = self.backlog.pop_front() {
                if let Some(line) = self.render(&change) {
                    return Some(line);
                }
                continue;
            }
            if let Some(rv) = self.synthetic_until.take() {
                self.last_rv = rv;
            }
            if let Some(rv) = self.initial_end.take() {
                self.last_rv = self.last_rv.max(rv);
                return Some(self.bookmark(rv, true));
            }
            let wake = match self.bookmark_every {
                Some(_) => self.deadline.min(self.next_bookmark),
                None => self.deadline,
            };
            tokio::select! {
                received = self.receiver.recv() => match received {
                    Ok(change) => {
                        if let Some(line) = self.render(&change) {
                            return Some(line);
                        }
                    }
                    // A watcher too slow for the buffer, or a dropped watch: end the stream; the
                    // client re-watches from its last version.
                    Err(_) => self.finished = true,
                },
                () = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= self.deadline {
                        self.finished = true;
                    } else if let Some(every) = self.bookmark_every {
                        self.next_bookmark = Instant::now() + every;
                        return Some(self.bookmark(self.last_rv, false));
                    }
                }
            }
        }
    }
}

fn stream_response(body: Body) -> Response {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    response
}

pub(super) fn watch(
    state: &AppState,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let mut filter = query.filter(&target.namespace)?;
    if let Some(name) = &target.name {
        filter.fields.0.push(crate::selector::FieldTerm {
            field: "metadata.name".into(),
            value: name.clone(),
            negated: false,
        });
    }
    let from = match query.get("resourceVersion") {
        None | Some("" | "0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid resource version {rv:?}")))?,
        ),
    };
    let send_initial = query.flag("sendInitialEvents");
    let timeout = query
        .int("timeoutSeconds")?
        .and_then(|t| u64::try_from(t).ok())
        .map_or(state.config.default_watch_timeout, Duration::from_secs)
        // Far-future deadlines would overflow the clock; no watch needs more than a day.
        .min(Duration::from_hours(24));
    let bookmark_every = query
        .flag("allowWatchBookmarks")
        .then_some(state.config.bookmark_interval);
    let shape = route::shape(headers);
    let start = match state
        .store
        .watch(&target.info, &filter, if send_initial { None } else { from })
    {
        Ok(start) => start,
        Err(err @ ApiError::Gone { .. }) => {
            // As the watch cache does: a 200 response whose only event is a 410 ERROR.
            let mut line =
                serde_json::to_vec(&json!({"type": "ERROR", "object": err.to_status()})).unwrap_or_default();
            line.push(b'\n');
            return Ok(stream_response(Body::from(line)));
        }
        Err(err) => return Err(err),
    };
    let now = Instant::now();
    let watch = Watch {
        info: target.info.clone(),
        version: target.version.clone(),
        filter,
        backlog: start.backlog.into(),
        receiver: start.receiver,
        last_rv: from.unwrap_or(0),
        deadline: now + timeout,
        bookmark_every,
        next_bookmark: now + bookmark_every.unwrap_or_default(),
        initial_end: (send_initial && bookmark_every.is_some()).then_some(start.rv),
        synthetic_until: (from.is_none() || send_initial).then_some(start.rv),
        shape,
        columns_sent: false,
        clock: state.store.config().clock.clone(),
        finished: false,
    };
    let stream = futures_util::stream::unfold(watch, |mut w| async move {
        w.next()
            .await
            .map(|line| (Ok::<_, std::convert::Infallible>(line), w))
    });
    Ok(stream_response(Body::from_stream(stream)))
}
