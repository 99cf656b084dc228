//! The scenario file: what happens when, in simulated time.
//!
//! ```yaml
//! name: inflate-lab
//! description: The hands-on lab's inflate flow.
//! duration: 60m            # simulated time to play (after the last step, the cluster is watched until then)
//! sampleEvery: 15s         # how often progress is recorded (default 10s)
//! steps:
//!   - at: 0s
//!     apply: { file: examples/inflate.yaml }     # or { inline: "<YAML>" }
//!   - at: 1m
//!     scale: { kind: Deployment, name: inflate, replicas: 5 }   # namespace defaults to "default"
//!   - at: 50m
//!     delete: { kind: Deployment, name: burst-small }
//! variants:                # optional: play the scenario once per variant, each on its own cluster
//!   - name: plain
//!   - name: warm
//!     description: 5 replicas from the start
//!     apply: [{ file: examples/warm.yaml }]    # applied at 0s, after the scenario's own 0s steps
//!     steps:                                   # merged in time order, after the scenario's steps
//!       - at: 0s                               #   at the same moment
//!         scale: { kind: Deployment, name: inflate, replicas: 5 }
//! ```
//!
//! Durations are Go/Kubernetes style (`90s`, `1m30s`, `2h`). Steps must be in time order and
//! within `duration`. Variant names must be unique.

use std::path::{Path, PathBuf};

use jiff::SignedDuration;
use serde::Deserialize;

/// Why a scenario cannot be played.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: {field}: {message}")]
    Invalid {
        file: String,
        field: String,
        message: String,
    },
    #[error("{file}: {field}: reading {path}: {source}")]
    Read {
        file: String,
        field: String,
        path: String,
        source: std::io::Error,
    },
}

/// A parsed, checked scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub duration: SignedDuration,
    pub sample_every: SignedDuration,
    pub steps: Vec<Step>,
    /// Ways to play the scenario side by side; empty: play it as it is.
    pub variants: Vec<Variant>,
}

/// One way to play a scenario: its own steps added to the scenario's.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub name: String,
    pub description: String,
    /// In time order; `apply` entries come first, at 0s.
    pub steps: Vec<Step>,
}

/// One timed action.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub at: SignedDuration,
    pub action: Action,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Server-side apply of a YAML stream.
    Apply { source: String, yaml: String },
    /// Sets `spec.replicas` of a Deployment, ReplicaSet or StatefulSet through its scale subresource.
    Scale {
        kind: ScaleKind,
        namespace: String,
        name: String,
        replicas: i32,
    },
    /// Deletes an object (background propagation).
    Delete {
        kind: String,
        namespace: String,
        name: String,
    },
}

/// The kinds `scale` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleKind {
    Deployment,
    ReplicaSet,
    StatefulSet,
}

impl Action {
    /// One line for progress output.
    pub fn describe(&self) -> String {
        match self {
            Self::Apply { source, .. } => format!("apply {source}"),
            Self::Scale {
                kind, name, replicas, ..
            } => format!("scale {kind:?} {name} to {replicas}"),
            Self::Delete { kind, name, .. } => format!("delete {kind} {name}"),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawScenario {
    name: String,
    #[serde(default)]
    description: String,
    duration: String,
    #[serde(default)]
    sample_every: Option<String>,
    steps: Vec<RawStep>,
    #[serde(default)]
    variants: Vec<RawVariant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariant {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    apply: Vec<RawApply>,
    #[serde(default)]
    steps: Vec<RawStep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    at: String,
    #[serde(default)]
    apply: Option<RawApply>,
    #[serde(default)]
    scale: Option<RawScale>,
    #[serde(default)]
    delete: Option<RawDelete>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApply {
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    inline: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScale {
    kind: String,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    replicas: i32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelete {
    kind: String,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

impl Scenario {
    /// Parses a scenario; `apply.file` paths are read relative to `base`. `file` names the
    /// scenario in errors.
    pub fn parse(text: &str, file: &str, base: &Path) -> Result<Self, ScenarioError> {
        let raw: RawScenario = serde_saphyr::from_str(text).map_err(|e| ScenarioError::Parse {
            file: file.to_owned(),
            message: e.to_string(),
        })?;
        let invalid = |field: String, message: String| invalid(file, field, message);
        let duration = parse_duration(&raw.duration).map_err(|m| invalid("duration".into(), m))?;
        let sample_every = match &raw.sample_every {
            Some(text) => parse_duration(text).map_err(|m| invalid("sampleEvery".into(), m))?,
            None => SignedDuration::from_secs(10),
        };
        if sample_every.is_zero() {
            return Err(invalid("sampleEvery".into(), "must be more than 0s".into()));
        }
        let steps = parse_steps(raw.steps, "steps", duration, file, base)?;
        let variants = parse_variants(raw.variants, duration, file, base)?;
        Ok(Self {
            name: raw.name,
            description: raw.description,
            duration,
            sample_every,
            steps,
            variants,
        })
    }

    /// The scenario as `variant` plays it: its steps merged with the variant's (the scenario's
    /// first at equal times), named `<scenario>/<variant>`, without variants.
    #[must_use]
    pub fn with_variant(&self, variant: &Variant) -> Self {
        let mut steps: Vec<Step> = self.steps.iter().chain(&variant.steps).cloned().collect();
        // Stable: at equal times the scenario's steps stay before the variant's.
        steps.sort_by_key(|step| step.at);
        Self {
            name: format!("{}/{}", self.name, variant.name),
            description: if variant.description.is_empty() {
                self.description.clone()
            } else {
                variant.description.clone()
            },
            duration: self.duration,
            sample_every: self.sample_every,
            steps,
            variants: Vec::new(),
        }
    }
}

fn invalid(file: &str, field: String, message: String) -> ScenarioError {
    ScenarioError::Invalid {
        file: file.to_owned(),
        field,
        message,
    }
}

/// Checks and converts the steps at `prefix` (`steps`, `variants[1].steps`).
fn parse_steps(
    raw: Vec<RawStep>,
    prefix: &str,
    duration: SignedDuration,
    file: &str,
    base: &Path,
) -> Result<Vec<Step>, ScenarioError> {
    let invalid = |field: String, message: String| invalid(file, field, message);
    let mut steps = Vec::with_capacity(raw.len());
    let mut previous = SignedDuration::ZERO;
    for (i, step) in raw.into_iter().enumerate() {
        let field = |name: &str| format!("{prefix}[{i}].{name}");
        let at = parse_duration(&step.at).map_err(|m| invalid(field("at"), m))?;
        if at < previous {
            return Err(invalid(
                field("at"),
                format!("{} comes before the previous step", step.at),
            ));
        }
        if at > duration {
            return Err(invalid(
                field("at"),
                format!("{} is after the scenario's duration", step.at),
            ));
        }
        previous = at;
        let action = match (step.apply, step.scale, step.delete) {
            (Some(apply), None, None) => read_apply(apply, base, file, &field("apply"))?,
            (None, Some(scale), None) => Action::Scale {
                kind: match scale.kind.as_str() {
                    "Deployment" => ScaleKind::Deployment,
                    "ReplicaSet" => ScaleKind::ReplicaSet,
                    "StatefulSet" => ScaleKind::StatefulSet,
                    other => {
                        return Err(invalid(
                            field("scale.kind"),
                            format!("{other:?} cannot be scaled; use Deployment, ReplicaSet or StatefulSet"),
                        ));
                    }
                },
                namespace: scale.namespace.unwrap_or_else(|| "default".to_owned()),
                name: scale.name,
                replicas: if scale.replicas < 0 {
                    return Err(invalid(field("scale.replicas"), "must not be negative".into()));
                } else {
                    scale.replicas
                },
            },
            (None, None, Some(delete)) => Action::Delete {
                kind: delete.kind,
                namespace: delete.namespace.unwrap_or_else(|| "default".to_owned()),
                name: delete.name,
            },
            _ => {
                return Err(invalid(
                    format!("{prefix}[{i}]"),
                    "needs exactly one of apply, scale or delete".into(),
                ));
            }
        };
        steps.push(Step { at, action });
    }
    Ok(steps)
}

/// Checks and converts the variants: unique, non-empty names; `apply` entries become steps at 0s.
fn parse_variants(
    raw: Vec<RawVariant>,
    duration: SignedDuration,
    file: &str,
    base: &Path,
) -> Result<Vec<Variant>, ScenarioError> {
    let mut variants: Vec<Variant> = Vec::with_capacity(raw.len());
    for (i, variant) in raw.into_iter().enumerate() {
        let field = |name: &str| format!("variants[{i}].{name}");
        if variant.name.trim().is_empty() {
            return Err(invalid(file, field("name"), "must not be empty".into()));
        }
        // The name goes into chart file names (chart-<name>.svg).
        if !variant
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            || variant.name.starts_with('.')
        {
            return Err(invalid(
                file,
                field("name"),
                format!(
                    "{:?}: only letters, digits, '-', '_' and '.' (not first)",
                    variant.name
                ),
            ));
        }
        if variants.iter().any(|v| v.name == variant.name) {
            return Err(invalid(
                file,
                field("name"),
                format!("{:?} names an earlier variant too", variant.name),
            ));
        }
        let mut steps = Vec::with_capacity(variant.apply.len() + variant.steps.len());
        for (j, apply) in variant.apply.into_iter().enumerate() {
            steps.push(Step {
                at: SignedDuration::ZERO,
                action: read_apply(apply, base, file, &field(&format!("apply[{j}]")))?,
            });
        }
        steps.extend(parse_steps(variant.steps, &field("steps"), duration, file, base)?);
        variants.push(Variant {
            name: variant.name,
            description: variant.description,
            steps,
        });
    }
    Ok(variants)
}

fn read_apply(apply: RawApply, base: &Path, file: &str, field: &str) -> Result<Action, ScenarioError> {
    match (apply.file, apply.inline) {
        (Some(path), None) => {
            let full: PathBuf = base.join(&path);
            let yaml = std::fs::read_to_string(&full).map_err(|source| ScenarioError::Read {
                file: file.to_owned(),
                field: format!("{field}.file"),
                path: full.display().to_string(),
                source,
            })?;
            Ok(Action::Apply { source: path, yaml })
        }
        (None, Some(yaml)) => Ok(Action::Apply {
            source: "inline YAML".to_owned(),
            yaml,
        }),
        _ => Err(ScenarioError::Invalid {
            file: file.to_owned(),
            field: field.to_owned(),
            message: "needs exactly one of file or inline".into(),
        }),
    }
}

/// `90s`, `1m30s`, `2h`, `0s`.
pub fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    let parsed: SignedDuration = text
        .parse()
        .map_err(|e| format!("{text:?} is not a duration like 90s or 1m30s: {e}"))?;
    if parsed.is_negative() {
        return Err(format!("{text:?} is negative"));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(text, "test.yaml", Path::new("."))
    }

    #[test]
    fn a_scenario_parses_with_defaults() {
        let scenario = parse(
            "name: t\nduration: 10m\nsteps:\n- at: 1m\n  scale: {kind: Deployment, name: web, replicas: 3}\n- at: 2m30s\n  delete: {kind: Deployment, name: web}\n- at: 3m\n  apply: {inline: 'kind: x'}\n",
        )
        .unwrap();
        assert_eq!(scenario.duration, SignedDuration::from_mins(10));
        assert_eq!(scenario.sample_every, SignedDuration::from_secs(10));
        assert_eq!(scenario.steps[1].at, SignedDuration::from_secs(150));
        assert_eq!(
            scenario.steps[0].action,
            Action::Scale {
                kind: ScaleKind::Deployment,
                namespace: "default".into(),
                name: "web".into(),
                replicas: 3
            }
        );
    }

    const TWO_VARIANTS: &str = "name: t\nduration: 10m\nsteps:\n- at: 0s\n  apply: {inline: 'kind: base'}\n- at: 2m\n  scale: {kind: Deployment, name: web, replicas: 3}\nvariants:\n- name: plain\n- name: warm\n  description: pre-scaled\n  apply: [{inline: 'kind: extra'}]\n  steps:\n  - at: 0s\n    scale: {kind: Deployment, name: web, replicas: 3}\n  - at: 5m\n    delete: {kind: Deployment, name: web}\n";

    #[test]
    fn variants_add_their_steps_after_the_scenarios_at_equal_times() {
        let scenario = parse(TWO_VARIANTS).unwrap();
        assert_eq!(scenario.variants.len(), 2);
        let plain = scenario.with_variant(&scenario.variants[0]);
        assert_eq!(plain.name, "t/plain");
        assert_eq!(plain.steps, scenario.steps);
        let warm = scenario.with_variant(&scenario.variants[1]);
        assert_eq!(warm.description, "pre-scaled");
        let described: Vec<(i64, String)> = warm
            .steps
            .iter()
            .map(|s| (s.at.as_secs(), s.action.describe()))
            .collect();
        assert_eq!(
            described,
            vec![
                (0, "apply inline YAML".to_owned()),
                (0, "apply inline YAML".to_owned()),
                (0, "scale Deployment web to 3".to_owned()),
                (120, "scale Deployment web to 3".to_owned()),
                (300, "delete Deployment web".to_owned()),
            ]
        );
        assert!(
            matches!(&warm.steps[1].action, Action::Apply { yaml, .. } if yaml == "kind: extra"),
            "the variant's apply comes after the scenario's own 0s step"
        );
        assert!(warm.variants.is_empty());
    }

    #[test]
    fn variant_mistakes_name_the_variant_and_field() {
        let cases = [
            (
                "name: t\nduration: 1m\nsteps: []\nvariants:\n- name: a\n- name: a\n",
                "test.yaml: variants[1].name: \"a\" names an earlier variant too",
            ),
            (
                "name: t\nduration: 1m\nsteps: []\nvariants:\n- name: ' '\n",
                "variants[0].name: must not be empty",
            ),
            (
                "name: t\nduration: 1m\nsteps: []\nvariants:\n- name: ../x\n",
                "variants[0].name: \"../x\": only letters, digits",
            ),
            (
                "name: t\nduration: 1m\nsteps: []\nvariants:\n- name: a\n  steps:\n  - at: 2m\n    delete: {kind: Pod, name: a}\n",
                "variants[0].steps[0].at: 2m is after the scenario's duration",
            ),
            (
                "name: t\nduration: 1m\nsteps: []\nvariants:\n- name: a\n  apply: [{file: x.yaml, inline: y}]\n",
                "variants[0].apply[0]: needs exactly one of file or inline",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}\n  expected: {expected}");
        }
    }

    #[test]
    fn mistakes_name_the_step_and_field() {
        let cases = [
            (
                "name: t\nduration: 10m\nsteps:\n- at: 1m\n",
                "test.yaml: steps[0]: needs exactly one of apply, scale or delete",
            ),
            (
                "name: t\nduration: 10m\nsteps:\n- at: soon\n  delete: {kind: Pod, name: a}\n",
                "steps[0].at: \"soon\" is not a duration",
            ),
            (
                "name: t\nduration: 1m\nsteps:\n- at: 2m\n  delete: {kind: Pod, name: a}\n",
                "steps[0].at: 2m is after the scenario's duration",
            ),
            (
                "name: t\nduration: 9m\nsteps:\n- at: 2m\n  delete: {kind: Pod, name: a}\n- at: 1m\n  delete: {kind: Pod, name: a}\n",
                "steps[1].at: 1m comes before the previous step",
            ),
            (
                "name: t\nduration: 9m\nsteps:\n- at: 2m\n  scale: {kind: Pod, name: a, replicas: 1}\n",
                "steps[0].scale.kind: \"Pod\" cannot be scaled",
            ),
            (
                "name: t\nduration: 9m\nsteps:\n- at: 2m\n  apply: {file: does/not/exist.yaml}\n",
                "steps[0].apply.file: reading ./does/not/exist.yaml",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}\n  expected: {expected}");
        }
        let unknown = parse("name: t\nduration: 1m\nsteps: []\nspeed: 3\n")
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("speed"), "{unknown}");
    }
}
