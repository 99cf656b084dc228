//! The HTTP server: accepting connections (so a restart can drop them all), routing each request
//! to discovery or a resource handler, fault injection, and turning errors into `Status` bodies.

mod read;
pub mod route;
mod subresource;
mod write;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use serde_json::Value;
use tokio::{net::TcpListener, task::JoinHandle};

use self::route::{Query, Route, Target};
use crate::{
    discovery,
    error::{ApiError, ApiResult},
    faults::{Faults, Verdict},
    rbac::{Attributes, Rbac},
    store::{Store, StoreConfig},
};

/// Server tunables.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// How often a watch that asked for bookmarks gets one.
    pub bookmark_interval: Duration,
    /// How long a watch lasts when the client sets no `timeoutSeconds`.
    pub default_watch_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bookmark_interval: Duration::from_secs(5),
            default_watch_timeout: Duration::from_mins(30),
        }
    }
}

/// Everything a request handler shares: the store, the fault injector and the configuration.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The objects.
    pub store: Arc<Store>,
    /// Injected faults.
    pub faults: Arc<Faults>,
    /// Tunables.
    pub config: Arc<ServerConfig>,
    /// Minted tokens and refused requests (RBAC applies only to requests with a token).
    pub rbac: Arc<Rbac>,
}

impl AppState {
    /// A fresh cluster state with default settings.
    pub fn new() -> Self {
        Self::with_config(StoreConfig::default(), ServerConfig::default())
    }

    /// A fresh cluster state.
    pub fn with_config(store: StoreConfig, server: ServerConfig) -> Self {
        Self {
            store: Arc::new(Store::new(store)),
            faults: Arc::new(Faults::default()),
            config: Arc::new(server),
            rbac: Arc::new(Rbac::default()),
        }
    }
}

impl Default for AppState {
    fn default() -> Self {
        Self::new()
    }
}

/// The axum router serving the API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(state)
}

/// Serves the API on `addr` until the task is dropped or the listener fails.
pub async fn serve(addr: SocketAddr, state: AppState) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    accept_loop(listener, state).await
}

async fn accept_loop(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    let app = router(state);
    // Connections live in this set: dropping the loop (a restart) aborts every one of them.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        connections.spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            // A client hanging up mid-response is not the server's problem.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

/// A running server that can be restarted (keeping its state, dropping every connection).
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    state: AppState,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port) and starts serving.
    pub async fn start(addr: SocketAddr, state: AppState) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        Ok(Self { addr, state, task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops serving and drops every connection (watches included), then serves again on the
    /// same address with the same objects.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.task.abort();
        // Wait for the abort so the port is free again.
        let _ = (&mut self.task).await;
        let listener = TcpListener::bind(self.addr).await?;
        self.task = tokio::spawn(accept_loop(listener, self.state.clone()));
        Ok(())
    }

    /// Stops serving.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    match dispatch(&state, &method, &uri, &headers, body, &host).await {
        Ok(response) => response,
        Err(err) => error_response(&err),
    }
}

async fn dispatch(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
    host: &str,
) -> ApiResult<Response> {
    let identity = state.rbac.authenticate(headers)?;
    let registry = state.store.registry();
    let route = route::parse(uri.path(), &registry)?;
    // Discovery and health are open to every authenticated identity, as Kubernetes' default
    // system:discovery and system:public-info-viewer bindings make them.
    let Route::Resource(target) = route else {
        if *method != Method::GET && *method != Method::HEAD {
            return Err(ApiError::MethodNotAllowed);
        }
        return discovery_response(&route, &registry, headers, host);
    };
    let query = Query::parse(uri.query());
    if let Some(identity) = identity {
        let attributes = Attributes::of(method, &target, &query);
        state.rbac.authorize(&state.store, &identity, attributes)?;
    }
    match state.faults.verdict(route::is_write(method)) {
        Verdict::Serve => {}
        Verdict::Delay(d) => tokio::time::sleep(d).await,
        Verdict::Fail(e) => return Err(e),
    }
    resource(state, method, &target, &query, headers, &body)
}

fn resource(
    state: &AppState,
    method: &Method,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Response> {
    let sub = target.sub.as_deref();
    let served_sub = match sub {
        None => true,
        Some("status") => target.info.status,
        Some("scale") => target.info.scale.is_some(),
        Some(other) => target.info.extra_subresources.iter().any(|s| s == other),
    };
    if !served_sub || (sub.is_some() && target.name.is_none()) {
        return Err(ApiError::NoResource);
    }
    match (method.as_str(), target.name.is_some(), sub) {
        ("GET", _, None) if target.watch_path || query.flag("watch") => {
            read::watch(state, target, query, headers)
        }
        ("GET", false, None) => read::list(state, target, query, headers),
        ("GET", true, None | Some("status")) => read::get(state, target, headers),
        ("POST", false, None) => write::create(state, target, query, headers, body),
        ("PUT", true, None | Some("status")) => write::update(state, target, query, headers, body),
        ("PATCH", true, None | Some("status")) => write::patch(state, target, query, headers, body),
        ("DELETE", true, None) => write::delete(state, target, query, body),
        ("DELETE", false, None) => write::delete_collection(state, target, query, body),
        (_, true, Some("scale")) => subresource::scale(state, method, target, query, headers, body),
        ("POST", true, Some("binding")) if target.info.plural == "pods" => {
            subresource::binding(state, target, body)
        }
        ("POST", true, Some("eviction")) if target.info.plural == "pods" => {
            subresource::eviction(state, target, body)
        }
        ("PUT", true, Some("finalize")) if target.info.plural == "namespaces" => {
            subresource::finalize_namespace(state, target, body)
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

fn discovery_response(
    route: &Route,
    registry: &crate::resources::Registry,
    headers: &HeaderMap,
    host: &str,
) -> ApiResult<Response> {
    let aggregated = route::wants_aggregated(headers);
    let value = match route {
        Route::Version => discovery::version(),
        Route::Health => return Ok((StatusCode::OK, "ok").into_response()),
        Route::CoreVersions if aggregated => {
            return Ok(aggregated_response(&discovery::aggregated(registry, true)));
        }
        Route::GroupList if aggregated => {
            return Ok(aggregated_response(&discovery::aggregated(registry, false)));
        }
        Route::CoreVersions => discovery::core_versions(host),
        Route::GroupList => discovery::group_list(registry),
        Route::Group(g) => discovery::group(registry, g).ok_or(ApiError::NoResource)?,
        Route::ResourceList { group, version } => {
            discovery::resource_list(registry, group, version).ok_or(ApiError::NoResource)?
        }
        Route::OpenApiIndex => discovery::openapi_index(registry),
        Route::OpenApiDoc { group, version } => {
            if !registry.groups().get(group).is_some_and(|v| v.contains(version)) {
                return Err(ApiError::NoResource);
            }
            discovery::openapi_group_version(registry, group, version)
        }
        Route::Resource(_) => return Err(ApiError::NoResource),
    };
    Ok(json_response(StatusCode::OK, &value))
}

fn aggregated_response(value: &Value) -> Response {
    let mut response = json_response(StatusCode::OK, value);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"),
    );
    response
}

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response {
    bytes_response(status, Bytes::from(serde_json::to_vec(value).unwrap_or_default()))
}

/// A response with a JSON body already serialized.
pub(crate) fn bytes_response(status: StatusCode, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The `Status` response of an error.
pub(crate) fn error_response(err: &ApiError) -> Response {
    let status = StatusCode::from_u16(err.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &err.to_status())
}

/// A success `Status` (for deletes that completed, bindings and evictions).
pub(crate) fn success_status(code: u16, details: Option<Value>) -> Value {
    let mut status = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": code,
    });
    if let Some(d) = details {
        status["details"] = d;
    }
    status
}

/// Parses a JSON request body.
pub(crate) fn parse_json(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the request body could not be decoded as JSON: {e}")))
}
