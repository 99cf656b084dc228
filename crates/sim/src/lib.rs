//! An in-memory Kubernetes API server that the real clients — kube-rs and kubectl — talk to
//! unchanged, for Nodewright's controller tests and the `nodewright sim` demo.
//!
//! Start one with [`testing::TestCluster::start`] (a free loopback port, a kube-rs client, a
//! kubeconfig writer, YAML apply, waits), or serve one with [`serve`] / [`Server::start`]; add the
//! fake cloud and the simulated data plane with [`testing::TestCluster::start_simulated`] or
//! [`simulation::Simulation`] (`nodewright sim serve`).
//!
//! # What it serves
//!
//! - **Discovery**: `/version`, `/api`, `/apis`, `/apis/{group}`, the APIResourceLists of each
//!   group version (verbs, short names, categories, scope, kind, subresources with their kinds:
//!   `deployments/scale` → `autoscaling/v1 Scale`, `pods/eviction` → `policy/v1 Eviction`), the
//!   aggregated `apidiscovery.k8s.io/v2` form of `/api` and `/apis` (kubectl 1.32 asks for it
//!   first and needs nothing else), and OpenAPI v3 (`/openapi/v3` index plus one document per
//!   group version, with PATCH operations carrying `fieldValidation`, so kubectl sends
//!   `fieldValidation=Strict` and the server validates; documents carry each kind's schema — the
//!   CRD's, or for built-in kinds one generated from k8s-openapi's types — so `kubectl explain`
//!   works for every kind). There is no `/openapi/v2`: kubectl then
//!   builds client-side apply patches from its compiled-in types.
//! - **Built-in types**: core/v1 pods (`binding`, `eviction`, `status`), nodes, namespaces
//!   (`default`, `kube-system`, `kube-public`, `kube-node-lease` exist at start; deletion empties
//!   them first), events, configmaps, secrets, services, serviceaccounts, podtemplates,
//!   persistentvolumes, persistentvolumeclaims; apps/v1 deployments, replicasets and statefulsets
//!   (`scale`), daemonsets; batch/v1 jobs; policy/v1 poddisruptionbudgets;
//!   coordination.k8s.io/v1 leases; scheduling.k8s.io/v1 priorityclasses; storage.k8s.io/v1
//!   storageclasses, volumeattachments, csinodes, csidrivers; events.k8s.io/v1 events;
//!   rbac.authorization.k8s.io/v1 clusterroles, clusterrolebindings, roles and rolebindings
//!   (enforced for clients with a minted token, see [`rbac`]);
//!   apiextensions.k8s.io/v1 customresourcedefinitions. events.k8s.io/v1 Events are also stored in
//!   their core/v1 form ([`events`]), so `kubectl describe` shows what kube-runtime's `Recorder`
//!   publishes (one way: core/v1 writes are not copied back).
//! - **Custom resources**: a stored CRD is served at once (status `Established`), with its
//!   status and scale subresources, printer columns and selectable fields. Writes are pruned of
//!   unknown fields (400 under `fieldValidation=Strict`), defaulted (nested defaults included),
//!   and validated: types, required fields and enums (`nodewright_api::structural::check`),
//!   patterns, numeric bounds, lengths, item/property counts, list-type uniqueness, and the
//!   `x-kubernetes-validations` CEL rules through kube-cel, with `oldSelf` on updates. Failures
//!   are one 422 Invalid whose causes name each field. Deleting a CRD deletes its objects.
//!
//! # Semantics
//!
//! - One global, monotonically increasing resourceVersion; uid, creationTimestamp and
//!   generation (bumped when anything but metadata and a subresource-managed status changes).
//! - Optimistic concurrency: a write naming a stale resourceVersion gets 409 Conflict; writes
//!   without one recompute on the latest object (custom resources refuse a PUT without one, as
//!   the API server does). Writes that change nothing store nothing.
//! - Built-in kinds are checked against schemas generated from k8s-openapi's types
//!   ([`builtin_schema`]): a value of the wrong JSON type is a 400, as the API server's decoder
//!   answers (so typed clients never read an object they cannot decode), numeric quantities are
//!   stored as strings, and unknown fields are dropped, or refused under
//!   `fieldValidation=Strict` with each field named.
//! - Metadata: names must be path segments (and DNS-1123 subdomains for built-in kinds), label
//!   and annotation keys qualified names, label values valid label values; objects are stored in
//!   the storage version and served in the version of the request path.
//! - Status subresource: the main resource keeps the stored status, `/status` changes only
//!   status. Scale subresource: `autoscaling/v1 Scale` read from and written to the replica
//!   paths (GET, PUT with resourceVersion precondition, merge/JSON patch).
//! - Deletion: finalizers keep an object (with `deletionTimestamp`) until removed, and no new
//!   finalizer may be added meanwhile; pods bound to a node terminate gracefully (grace period
//!   from the request or the pod, the final delete with grace 0 removes them); preconditions
//!   (uid, resourceVersion); `propagationPolicy` Background, Foreground (`foregroundDeletion`
//!   until blocking dependents are gone) and Orphan; owner-reference garbage collection runs
//!   before the response is sent, and also removes objects created naming only owners that do
//!   not exist. `deletecollection` with selectors. `default`, `kube-system` and `kube-public`
//!   cannot be deleted.
//! - Lists: label selectors (`=`, `==`, `!=`, `in`, `notin`, exists, `!`, `>`, `<`), field
//!   selectors (`metadata.name`, `metadata.namespace` and per-type fields such as pods'
//!   `spec.nodeName`, `status.phase`, events' `involvedObject.*`, CRD `selectableFields`; other
//!   fields are a 400), `limit`/`continue` (a continue token expires, 410, once its version is
//!   compacted), `remainingItemCount`.
//! - Watches: from a version (history per type, bounded by [`store::StoreConfig::watch_history`];
//!   an older version gets a 410 "too old resource version" ERROR event), or from now with
//!   synthetic ADDED events; objects entering or leaving a selector are ADDED or DELETED;
//!   bookmarks when `allowWatchBookmarks` (and the `initial-events-end` bookmark with
//!   `sendInitialEvents`); `timeoutSeconds`.
//! - Patches: JSON merge patch and JSON patch (json-patch crate; a `test` for `null` passes on a
//!   missing path, as Kubernetes' implementation and kube-runtime's finalizer helper expect);
//!   strategic merge patch for built-in kinds (415 for custom resources) — see [`patch`] for the
//!   list keys and directives supported; server-side apply with managedFields (see [`apply`] and [`managed`]): conflicts
//!   between managers are 409 listing each field unless `force=true`, fields a manager stops
//!   applying are removed unless someone else owns them, non-apply writes move ownership of the
//!   fields they change. `dryRun=All` on every write.
//! - Tables for `kubectl get`: CRD printer columns (JSONPath subset), kubectl's usual columns
//!   for pods, nodes, namespaces, deployments and replicasets, Name/Age for the rest;
//!   `PartialObjectMetadata` responses for metadata-only clients.
//! - Eviction: 429 when the one PodDisruptionBudget covering the pod would be broken, its
//!   disruptions allowed computed from the matching pods' readiness (terminating and finished
//!   pods do not count); 500 when several budgets cover the pod, as Kubernetes answers.
//! - Errors are `Status` objects with Kubernetes' codes and reasons (NotFound, AlreadyExists,
//!   Conflict, Invalid with causes, Gone, Expired, MethodNotAllowed, UnsupportedMediaType,
//!   TooManyRequests, BadRequest, Forbidden, Unauthorized); malformed input is a 400, never a crash.
//! - Faults ([`faults`]): fail or delay a fraction of resource requests (409, 429, 500); drop
//!   every watch ([`store::Store::drop_watches`]); compact the watch history
//!   ([`store::Store::compact`]); restart the server keeping its objects ([`Server::restart`]).
//!
//! # kube-rs and kube-runtime, verified by tests
//!
//! `Api` CRUD, `patch` of every type, `patch_status`, `get_scale`/`patch_scale`, `evict`,
//! `create_subresource("binding")`, `delete_collection`, `watch`, `watcher` (list-watch and
//! streaming lists, relisting after 410), metadata-only watchers (`Api<PartialObjectMeta<K>>`),
//! `Controller`, the `finalizer` helper, the events `Recorder`, `Discovery`.
//!
//! # kubectl 1.32, verified by tests (`tests/kubectl.rs`) or by hand
//!
//! `apply -f` (client-side and `--server-side`) of `crds/`, `examples/default/` and
//! `examples/inflate.yaml`; `get` (tables with printer columns, `-o wide`, `-o yaml`,
//! `-o jsonpath`, `--show-managed-fields`, `get all`); `get -w` and
//! `get -w --output-watch-events`; `describe`; `scale`; `edit`; `patch` (merge, JSON, strategic,
//! `--subresource=status`); `delete` (waiting for finalizers), `delete -f`; `label`; `run`;
//! `api-resources`; `explain`; `cordon` and `drain` (evictions); `get events`
//! and `describe` showing Recorder events. `cargo run -p nodewright-sim --example serve -- PORT
//! KUBECONFIG` serves an empty cluster for trying more by hand.
//!
//! # Memory
//!
//! Objects are kept as serialized JSON (shared `Arc`s between the store, the watch history and
//! every watcher, so an event costs no copy) plus small indexes. `examples/memory.rs` stores
//! 10,000 nodes and 200,000 pods (with their managedFields): 5.5 s to create, 695 MiB resident,
//! of which 413 MiB is the objects' JSON and indexes (release build, 2 cores).
//! `examples/crd_writes.rs` times NodePool creates through pruning, defaults, validation and the
//! CEL rules (compiled once per CRD): 175 µs each.
//!
//! # Not implemented
//!
//! Authentication beyond bearer tokens the server mints, and RBAC beyond what [`rbac`] says
//! (requests without a token are the admin; ClusterRole aggregation and non-resource URL rules
//! are not evaluated), protobuf (JSON only), CBOR,
//! TLS, `/openapi/v2`, validation of built-in kinds beyond JSON types, unknown fields, metadata and the
//! few checks in [`admission`] (required fields, enums and formats are not checked),
//! CRD conversion webhooks (served versions share one stored form, only `apiVersion` differs),
//! admission webhooks, ValidatingAdmissionPolicies, CEL validation ratcheting, list
//! `resourceVersionMatch=Exact` on old versions (lists are always current), `pods/log`, `exec`,
//! `attach`, `portforward`, proxy subresources, field selectors on fields a type does not
//! declare, core/v1 → events.k8s.io/v1 event mirroring (only the other way), pod `qosClass`.
//!
//! # The simulated data plane and the whole simulation
//!
//! [`dataplane`] runs what a real cluster runs besides the API server: Deployment →
//! ReplicaSet → Pods, DaemonSet and Job controllers and PodDisruptionBudget status, a
//! kube-scheduler (the solver's fit checks over existing nodes; `PodScheduled=False, reason
//! Unschedulable` otherwise), and kubelets that register a Node for each fake-cloud instance and
//! run, stop and collect pods — all on the store's clock. [`simulation::Simulation`] puts the
//! server, Nodewright's CRDs, the [`cloud::FakeCloud`] and the data plane together; it is what
//! `nodewright sim serve` runs. Tests use [`testing::TestCluster::start_simulated`].

pub mod admission;
pub mod apply;
pub mod builtin_schema;
pub mod cloud;
pub mod crd;
pub mod dataplane;
pub mod defaults;
pub mod discovery;
pub mod error;
pub mod events;
pub mod eviction;
pub mod faults;
pub mod gc;
pub mod http;
pub mod listtype;
pub mod managed;
pub mod meta;
pub mod patch;
pub mod rbac;
pub mod resources;
pub mod selector;
pub mod simulation;
pub mod store;
pub mod table;
pub mod testing;
pub mod validation;

pub use http::{AppState, Server, ServerConfig, serve};
