//! `karpenter.sh/v1` NodePool: the template, limits, weight and disruption policy for a set of nodes.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::Taint,
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Condition},
};
use kube::{CustomResource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    duration::{GoDuration, NillableDuration},
    labels, quantity,
    requirements::{NodeSelectorRequirementWithMinValues, validate_requirements},
    schema,
    validation::{FieldPath, Invalid, Problems, syntax},
};

/// Default node lifetime before forced replacement.
pub const DEFAULT_EXPIRE_AFTER: &str = "720h";
/// Default wait after the last pod event before a node may be consolidated.
pub const DEFAULT_CONSOLIDATE_AFTER: &str = "0s";
/// Default disruption budget.
pub const DEFAULT_BUDGET_NODES: &str = "10%";

/// NodePool is the specification for a set of nodes Nodewright may launch and disrupt.
// kube-derive repeats `type_`/`priority` keys across printcolumn(...) entries by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    derive = "PartialEq",
    group = "karpenter.sh",
    version = "v1",
    kind = "NodePool",
    plural = "nodepools",
    singular = "nodepool",
    status = "NodePoolStatus",
    category = "karpenter",
    scale(spec_replicas_path = ".spec.replicas", status_replicas_path = ".status.nodes"),
    printcolumn(
        name = "NodeClass",
        type_ = "string",
        json_path = ".spec.template.spec.nodeClassRef.name"
    ),
    printcolumn(name = "Nodes", type_ = "string", json_path = ".status.resources.nodes"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Weight", type_ = "integer", json_path = ".spec.weight", priority = 1),
    printcolumn(
        name = "CPU",
        type_ = "string",
        json_path = ".status.resources.cpu",
        priority = 1
    ),
    printcolumn(
        name = "Memory",
        type_ = "string",
        json_path = ".status.resources.memory",
        priority = 1
    ),
    doc = "NodePool is the Schema for the NodePools API"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = nodepool_spec_rules()))]
pub struct NodePoolSpec {
    /// Template for the NodeClaims this NodePool creates.
    pub template: NodeClaimTemplate,
    /// When and how nodes may be disrupted.
    #[serde(default)]
    #[schemars(default = "default_disruption_schema")]
    pub disruption: Disruption,
    /// Caps on the resources this NodePool may provision (cpu, memory, nodes, any resource).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::schema::resource_list")]
    pub limits: BTreeMap<String, Quantity>,
    /// Priority among NodePools; higher is tried first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub weight: Option<i32>,
    /// Static capacity: a fixed node count for this NodePool (alpha, gate StaticCapacity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i64>,
}

fn nodepool_spec_rules() -> serde_json::Value {
    json!([
        {
            "message": "Cannot transition NodePool between static (replicas set) and dynamic (replicas unset) provisioning modes",
            "rule": "has(self.replicas) == has(oldSelf.replicas)"
        },
        {
            "message": "only 'limits.nodes' is supported on static NodePools",
            "rule": "!has(self.replicas) || (!has(self.limits) || self.limits.size() == 0 || (self.limits.size() == 1 && has(self.limits.nodes)))"
        },
        {
            "message": "'weight' is not supported on static NodePools",
            "rule": "!has(self.replicas) || !has(self.weight)"
        }
    ])
}

fn default_disruption_schema() -> serde_json::Value {
    json!({ "consolidateAfter": DEFAULT_CONSOLIDATE_AFTER })
}

/// Metadata applied to the NodeClaims and Nodes of a NodePool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMetadata {
    /// Labels for the nodes; keys in reserved domains are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "schema::nodepool_labels")]
    pub labels: BTreeMap<String, String>,
    /// Annotations for the nodes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "schema::string_map")]
    pub annotations: BTreeMap<String, String>,
}

/// The NodeClaim template of a NodePool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimTemplate {
    #[serde(default, skip_serializing_if = "is_default")]
    pub metadata: TemplateMetadata,
    pub spec: NodeClaimTemplateSpec,
}

/// The NodeClaim spec of a NodePool template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeClaimTemplateSpec {
    /// Taints the nodes carry; pods must tolerate them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::taints")]
    pub taints: Vec<Taint>,
    /// Taints present at start-up that a daemon removes; pods need not tolerate them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::taints")]
    pub startup_taints: Vec<Taint>,
    /// Constraints on the nodes: instance types, zones, capacity types, architectures, ...
    #[schemars(length(max = 100), extend("x-kubernetes-list-type" = "atomic"), transform = crate::requirements::restrict_nodepool_keys)]
    pub requirements: Vec<NodeSelectorRequirementWithMinValues>,
    /// The provider-specific node class the nodes are launched with.
    #[schemars(extend("x-kubernetes-validations" = node_class_ref_immutability_rules()))]
    pub node_class_ref: NodeClassReference,
    /// How long a draining node may take before its pods are deleted regardless of PDBs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = GRACE_PERIOD_PATTERN))]
    pub termination_grace_period: Option<GoDuration>,
    /// Lifetime of a node before it is replaced; `Never` disables expiry.
    #[serde(default = "default_expire_after")]
    #[schemars(regex(pattern = NILLABLE_DURATION_PATTERN))]
    pub expire_after: NillableDuration,
}

/// `expireAfter` and `consolidateAfter`: a Go duration in s/m/h, or `Never`.
pub const NILLABLE_DURATION_PATTERN: &str = r"^(([0-9]+(s|m|h))+|Never)$";
/// `terminationGracePeriod`: a Go duration in s/m/h.
pub const GRACE_PERIOD_PATTERN: &str = r"^([0-9]+(s|m|h))+$";

fn node_class_ref_immutability_rules() -> serde_json::Value {
    json!([
        { "message": "nodeClassRef.group is immutable", "rule": "self.group == oldSelf.group" },
        { "message": "nodeClassRef.kind is immutable", "rule": "self.kind == oldSelf.kind" }
    ])
}

fn default_expire_after() -> NillableDuration {
    NillableDuration::new(DEFAULT_EXPIRE_AFTER)
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// A reference to a provider node class, e.g. `karpenter.k8s.aws/EC2NodeClass/default`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeClassReference {
    /// Kind of the node class.
    #[schemars(length(max = 63), extend("x-kubernetes-validations" = [{ "message": "kind may not be empty", "rule": "self != ''" }]))]
    pub kind: String,
    /// Name of the node class.
    #[schemars(length(max = 253), extend("x-kubernetes-validations" = [{ "message": "name may not be empty", "rule": "self != ''" }]))]
    pub name: String,
    /// API group of the node class.
    #[schemars(length(max = 253), regex(pattern = r"^[^/]*$"), extend("x-kubernetes-validations" = [{ "message": "group may not be empty", "rule": "self != ''" }]))]
    pub group: String,
}

impl NodeClassReference {
    pub(crate) fn validate(&self, path: &FieldPath, problems: &mut Problems) {
        for (field, value, max) in [
            ("kind", &self.kind, 63),
            ("name", &self.name, 253),
            ("group", &self.group, 253),
        ] {
            let field_path = path.child(field);
            if value.is_empty() {
                problems.required(&field_path, format!("{field} may not be empty"));
            } else if value.len() > max {
                problems.too_long(&field_path, value, max);
            }
        }
        if self.group.contains('/') {
            problems.invalid(&path.child("group"), &self.group, "must not contain '/'");
        }
    }
}

/// Consolidation policies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ConsolidationPolicy {
    /// Only empty nodes are removed.
    WhenEmpty,
    /// Empty and underutilized nodes are removed or replaced.
    #[default]
    WhenEmptyOrUnderutilized,
    /// Like WhenEmptyOrUnderutilized, but a move must save enough to justify the disruption.
    Balanced,
}

/// Voluntary disruption reasons a budget can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub enum DisruptionReason {
    Underutilized,
    Empty,
    Drifted,
}

/// Disruption policy of a NodePool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Disruption {
    /// Time since the last pod event before a node may be consolidated; `Never` disables it.
    #[serde(default = "default_consolidate_after")]
    #[schemars(regex(pattern = NILLABLE_DURATION_PATTERN))]
    pub consolidate_after: NillableDuration,
    /// Which nodes consolidation considers.
    #[serde(default)]
    pub consolidation_policy: ConsolidationPolicy,
    /// How many nodes may be disrupted at once.
    #[serde(default = "default_budgets")]
    #[schemars(length(max = 50), extend("x-kubernetes-validations" = [{ "message": "'schedule' must be set with 'duration'", "rule": "self.all(x, has(x.schedule) == has(x.duration))" }]))]
    pub budgets: Vec<Budget>,
}

impl Default for Disruption {
    fn default() -> Self {
        Self {
            consolidate_after: default_consolidate_after(),
            consolidation_policy: ConsolidationPolicy::default(),
            budgets: default_budgets(),
        }
    }
}

fn default_consolidate_after() -> NillableDuration {
    NillableDuration::new(DEFAULT_CONSOLIDATE_AFTER)
}

fn default_budgets() -> Vec<Budget> {
    vec![Budget {
        nodes: DEFAULT_BUDGET_NODES.into(),
        schedule: None,
        duration: None,
        reasons: Vec::new(),
    }]
}

/// A disruption budget: at most `nodes` at once, optionally only inside a cron window and for
/// some reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// Reasons the budget applies to; all when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub reasons: Vec<DisruptionReason>,
    /// A count (`5`) or a percentage of the NodePool's nodes (`10%`, rounded up).
    #[serde(default = "default_budget_nodes")]
    #[schemars(regex(pattern = BUDGET_NODES_PATTERN))]
    pub nodes: String,
    /// Cron schedule (UTC) at which the budget becomes active; always active when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = BUDGET_SCHEDULE_PATTERN))]
    pub schedule: Option<String>,
    /// How long the budget stays active after each schedule hit (hours and minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = BUDGET_DURATION_PATTERN))]
    pub duration: Option<GoDuration>,
}

fn default_budget_nodes() -> String {
    DEFAULT_BUDGET_NODES.into()
}

pub const BUDGET_NODES_PATTERN: &str = r"^((100|[0-9]{1,2})%|[0-9]+)$";
pub const BUDGET_SCHEDULE_PATTERN: &str =
    r"^(@(annually|yearly|monthly|weekly|daily|midnight|hourly))|((.+)\s(.+)\s(.+)\s(.+)\s(.+))$";
pub const BUDGET_DURATION_PATTERN: &str = r"^((([0-9]+(h|m))|([0-9]+h[0-9]+m))(0s)?)$";

/// Observed state of a NodePool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodePoolStatus {
    /// Resources provisioned by this NodePool, including `nodes`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::schema::resource_list")]
    pub resources: BTreeMap<String, Quantity>,
    /// Number of nodes (the scale subresource's status replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<i64>,
    /// Generation of the node class last observed, to reset registration health on change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_class_observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl NodePool {
    /// Every problem with this NodePool, as CRD validation and Karpenter's runtime validation see it.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.problems().into_result("NodePool", &self.name_any())
    }

    /// [`Self::validate`] plus the rules on changes (immutable node class group and kind, no
    /// switch between static and dynamic provisioning).
    pub fn validate_update(&self, old: &NodePool) -> Result<(), Invalid> {
        let mut problems = self.problems();
        let spec = FieldPath::root("spec");
        let class_path = spec.child("template").child("spec").child("nodeClassRef");
        let (new_ref, old_ref) = (
            &self.spec.template.spec.node_class_ref,
            &old.spec.template.spec.node_class_ref,
        );
        if new_ref.group != old_ref.group {
            problems.invalid(
                &class_path.child("group"),
                &new_ref.group,
                "nodeClassRef.group is immutable",
            );
        }
        if new_ref.kind != old_ref.kind {
            problems.invalid(
                &class_path.child("kind"),
                &new_ref.kind,
                "nodeClassRef.kind is immutable",
            );
        }
        if self.spec.replicas.is_some() != old.spec.replicas.is_some() {
            problems.forbidden(
                &spec.child("replicas"),
                "Cannot transition NodePool between static (replicas set) and dynamic (replicas unset) provisioning modes",
            );
        }
        problems.into_result("NodePool", &self.name_any())
    }

    /// Whether this is a static NodePool (fixed replicas, not driven by pods).
    pub fn is_static(&self) -> bool {
        self.spec.replicas.is_some()
    }

    fn problems(&self) -> Problems {
        let mut problems = Problems::new();
        validate_object_name(self.metadata.name.as_deref(), &mut problems);
        let spec = FieldPath::root("spec");
        let template = spec.child("template");
        validate_template_metadata(
            &self.spec.template.metadata,
            &template.child("metadata"),
            &mut problems,
        );
        validate_template_spec(&self.spec.template.spec, &template.child("spec"), &mut problems);
        validate_disruption(&self.spec.disruption, &spec.child("disruption"), &mut problems);
        validate_limits(&self.spec.limits, &spec.child("limits"), &mut problems);
        if let Some(weight) = self.spec.weight
            && !(1..=100).contains(&weight)
        {
            problems.invalid(
                &spec.child("weight"),
                &weight.to_string(),
                "must be between 1 and 100",
            );
        }
        if let Some(replicas) = self.spec.replicas {
            if replicas < 0 {
                problems.invalid(
                    &spec.child("replicas"),
                    &replicas.to_string(),
                    "must be greater than or equal to 0",
                );
            }
            if self.spec.weight.is_some() {
                problems.forbidden(
                    &spec.child("weight"),
                    "'weight' is not supported on static NodePools",
                );
            }
            if self.spec.limits.keys().any(|k| k != "nodes") {
                problems.forbidden(
                    &spec.child("limits"),
                    "only 'limits.nodes' is supported on static NodePools",
                );
            }
        }
        problems
    }
}

pub(crate) fn validate_object_name(name: Option<&str>, problems: &mut Problems) {
    let path = FieldPath::root("metadata").child("name");
    match name {
        None | Some("") => problems.required(&path, "name or generateName is required"),
        Some(name) if !syntax::is_dns1123_subdomain(name) => problems.invalid(
            &path,
            name,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        ),
        Some(_) => {}
    }
}

fn validate_template_metadata(metadata: &TemplateMetadata, path: &FieldPath, problems: &mut Problems) {
    let labels_path = path.child("labels");
    if metadata.labels.len() > 100 {
        problems.too_many(&labels_path, metadata.labels.len(), 100);
    }
    for (key, value) in &metadata.labels {
        let entry = labels_path.key(key);
        if let Some(reason) = syntax::qualified_name(key) {
            problems.invalid(&entry, key, reason);
        } else if let Some(reason) = labels::restricted_label_reason(key, false) {
            problems.invalid(&entry, key, reason);
        }
        if let Some(reason) = syntax::label_value(value) {
            problems.invalid(&entry, value, reason);
        }
    }
    for key in metadata.annotations.keys() {
        if let Some(reason) = syntax::qualified_name(key) {
            problems.invalid(&path.child("annotations").key(key), key, reason);
        }
    }
}

pub(crate) fn validate_template_spec(
    spec: &NodeClaimTemplateSpec,
    path: &FieldPath,
    problems: &mut Problems,
) {
    validate_taints(&spec.taints, &spec.startup_taints, path, problems);
    validate_requirements(&spec.requirements, &path.child("requirements"), false, problems);
    spec.node_class_ref
        .validate(&path.child("nodeClassRef"), problems);
    validate_lifetimes(
        spec.termination_grace_period.as_ref(),
        &spec.expire_after,
        path,
        problems,
    );
}

/// `terminationGracePeriod` and `expireAfter` of a template or NodeClaim spec at `path`.
pub(crate) fn validate_lifetimes(
    grace: Option<&GoDuration>,
    expire_after: &NillableDuration,
    path: &FieldPath,
    problems: &mut Problems,
) {
    if let Some(grace) = grace {
        validate_duration_pattern(
            grace.as_str(),
            false,
            &path.child("terminationGracePeriod"),
            problems,
        );
    }
    validate_duration_pattern(expire_after.as_str(), true, &path.child("expireAfter"), problems);
}

/// Checks a duration against the CRD's pattern (`GRACE_PERIOD_PATTERN`, or
/// `NILLABLE_DURATION_PATTERN` where `Never` is allowed) and that it fits a Go duration.
fn validate_duration_pattern(text: &str, allow_never: bool, path: &FieldPath, problems: &mut Problems) {
    if allow_never && text == crate::duration::NEVER {
        return;
    }
    let pattern = if allow_never {
        NILLABLE_DURATION_PATTERN
    } else {
        GRACE_PERIOD_PATTERN
    };
    let ok = crate::validation::matches_pattern(pattern, text);
    if !ok || crate::duration::parse_go_duration(text).is_err() {
        let expected = if allow_never {
            "a duration such as 720h, 30m or 90s, or Never"
        } else {
            "a duration such as 720h, 30m or 90s"
        };
        problems.invalid(path, text, format!("must be {expected}"));
    }
}

pub(crate) fn validate_taints(
    taints: &[Taint],
    startup_taints: &[Taint],
    path: &FieldPath,
    problems: &mut Problems,
) {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (field, list) in [("taints", taints), ("startupTaints", startup_taints)] {
        for (i, taint) in list.iter().enumerate() {
            let taint_path = path.child(field).index(i);
            if taint.key.is_empty() {
                problems.required(&taint_path.child("key"), "taint key is required");
            } else if let Some(reason) = syntax::qualified_name(&taint.key) {
                problems.invalid(&taint_path.child("key"), &taint.key, reason);
            }
            if let Some(value) = &taint.value
                && let Some(reason) = syntax::label_value(value)
            {
                problems.invalid(&taint_path.child("value"), value, reason);
            }
            if !schema::TAINT_EFFECTS.contains(&taint.effect.as_str()) {
                problems.not_supported(&taint_path.child("effect"), &taint.effect, &schema::TAINT_EFFECTS);
            }
            let identity = (taint.key.as_str(), taint.effect.as_str());
            if seen.contains(&identity) {
                problems.push(
                    &taint_path,
                    crate::validation::ErrorType::Duplicate,
                    Some(&format!("{}:{}", taint.key, taint.effect)),
                    "taints and startupTaints may not repeat a key and effect",
                );
            }
            seen.push(identity);
        }
    }
}

fn validate_disruption(disruption: &Disruption, path: &FieldPath, problems: &mut Problems) {
    validate_duration_pattern(
        disruption.consolidate_after.as_str(),
        true,
        &path.child("consolidateAfter"),
        problems,
    );
    let budgets_path = path.child("budgets");
    if disruption.budgets.len() > 50 {
        problems.too_many(&budgets_path, disruption.budgets.len(), 50);
    }
    for (i, budget) in disruption.budgets.iter().enumerate() {
        budget.validate(&budgets_path.index(i), problems);
    }
}

impl Budget {
    fn validate(&self, path: &FieldPath, problems: &mut Problems) {
        if parse_budget_nodes(&self.nodes).is_none() {
            problems.invalid(
                &path.child("nodes"),
                &self.nodes,
                "must be a non-negative count or a percentage from 0% to 100%",
            );
        }
        if self.reasons.len() > 50 {
            problems.too_many(&path.child("reasons"), self.reasons.len(), 50);
        }
        match (&self.schedule, &self.duration) {
            (Some(_), None) => {
                problems.required(&path.child("duration"), "'schedule' must be set with 'duration'");
            }
            (None, Some(_)) => {
                problems.required(&path.child("schedule"), "'schedule' must be set with 'duration'");
            }
            _ => {}
        }
        if let Some(schedule) = &self.schedule
            && let Err(reason) = parse_schedule(schedule)
        {
            problems.invalid(&path.child("schedule"), schedule, reason);
        }
        if let Some(duration) = &self.duration {
            let text = duration.as_str();
            let well_formed = crate::validation::matches_pattern(BUDGET_DURATION_PATTERN, text)
                && crate::duration::parse_go_duration(text).is_ok();
            if !well_formed {
                problems.invalid(
                    &path.child("duration"),
                    text,
                    "must be hours and minutes, such as 10h, 30m or 1h30m",
                );
            }
        }
    }
}

/// A budget's `nodes` value: a count, or a percentage of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetNodes {
    Count(u64),
    Percent(u8),
}

impl BudgetNodes {
    /// The number of nodes allowed out of `total`; percentages round up, as Karpenter does.
    pub fn allowed(self, total: u64) -> u64 {
        match self {
            Self::Count(count) => count,
            Self::Percent(percent) => (total * u64::from(percent)).div_ceil(100),
        }
    }
}

/// Parses a budget's `nodes`, or `None` if malformed.
pub fn parse_budget_nodes(text: &str) -> Option<BudgetNodes> {
    if let Some(percent) = text.strip_suffix('%') {
        let value: u8 = percent.parse().ok().filter(|p| *p <= 100)?;
        (!percent.is_empty() && percent.len() <= 3 && percent.bytes().all(|b| b.is_ascii_digit()))
            .then_some(BudgetNodes::Percent(value))
    } else {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse().ok().map(BudgetNodes::Count))?
    }
}

/// Parses a budget schedule: five cron fields or an `@` descriptor, interpreted in UTC.
pub fn parse_schedule(schedule: &str) -> Result<croner::Cron, String> {
    let descriptor = schedule.starts_with('@');
    let fields = schedule.split_whitespace().count();
    if descriptor {
        const DESCRIPTORS: [&str; 7] = [
            "@annually",
            "@yearly",
            "@monthly",
            "@weekly",
            "@daily",
            "@midnight",
            "@hourly",
        ];
        if !DESCRIPTORS.contains(&schedule) {
            return Err(format!(
                "unsupported descriptor; use one of {}",
                DESCRIPTORS.join(", ")
            ));
        }
    } else if fields != 5 {
        return Err(format!(
            "must have 5 fields (minute hour day-of-month month day-of-week), found {fields}"
        ));
    }
    let expanded = match schedule {
        "@annually" | "@yearly" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        other => other,
    };
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(expanded)
        .map_err(|e| format!("invalid cron schedule: {e}"))
}

fn validate_limits(limits: &BTreeMap<String, Quantity>, path: &FieldPath, problems: &mut Problems) {
    for (resource, value) in limits {
        let entry = path.key(resource);
        if let Some(reason) = syntax::qualified_name(resource) {
            problems.invalid(&entry, resource, reason);
        }
        match quantity::parse_milli(&value.0) {
            Ok(milli) if milli < 0 => problems.invalid(&entry, &value.0, "must be non-negative"),
            Ok(_) => {}
            Err(e) => problems.invalid(&entry, &value.0, e.reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_nodes_round_up() {
        assert_eq!(parse_budget_nodes("10%"), Some(BudgetNodes::Percent(10)));
        assert_eq!(parse_budget_nodes("0"), Some(BudgetNodes::Count(0)));
        assert_eq!(parse_budget_nodes("100%"), Some(BudgetNodes::Percent(100)));
        assert_eq!(parse_budget_nodes("101%"), None);
        assert_eq!(parse_budget_nodes("-1"), None);
        assert_eq!(parse_budget_nodes("%"), None);
        assert_eq!(parse_budget_nodes("ten"), None);
        assert_eq!(BudgetNodes::Percent(10).allowed(11), 2);
        assert_eq!(BudgetNodes::Percent(10).allowed(10), 1);
        assert_eq!(BudgetNodes::Percent(10).allowed(0), 0);
        assert_eq!(BudgetNodes::Count(3).allowed(1), 3);
    }

    #[test]
    fn schedules() {
        assert!(parse_schedule("0 8-18 * * MON-FRI").is_ok());
        assert!(parse_schedule("@daily").is_ok());
        assert!(parse_schedule("0 0-23 * * SAT,SUN").is_ok());
        assert!(parse_schedule("@fortnightly").is_err());
        assert!(parse_schedule("0 8 * *").is_err());
        assert!(parse_schedule("0 25 * * *").is_err());
        assert!(parse_schedule("* * * * * *").is_err(), "seconds are not allowed");
    }
}
