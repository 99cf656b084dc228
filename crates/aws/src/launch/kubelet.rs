//! The EC2NodeClass's `kubelet` block for the AMI families that cannot take a kubelet
//! configuration file: as kubelet flags (AL2's `bootstrap.sh`, Windows' `Start-EKSBootstrap.ps1`)
//! and as Bottlerocket settings. Only the fields Karpenter maps are accepted (AL2023 takes the
//! block whole, Custom ignores it); any other field is an error naming it, as Karpenter's
//! `UnsupportedKubeletConfiguration` validation is. `maxPods` is not mapped here: every family
//! gets the resolved per-type value.

use std::collections::BTreeMap;

use nodewright_api::ec2nodeclass::AmiFamily;
use serde_json::Value;

use super::userdata::UserDataError;

/// How a kubelet field is passed: its flag, its Bottlerocket setting, and how its value reads.
struct Mapping {
    field: &'static str,
    flag: &'static str,
    /// `None`: Bottlerocket has no such setting.
    bottlerocket: Option<&'static str>,
    shape: Shape,
}

#[derive(Clone, Copy)]
enum Shape {
    /// A scalar, as it is.
    Scalar,
    /// A map written `k=v,k=v`.
    Pairs,
    /// An eviction threshold map written `k<v,k<v`.
    Thresholds,
}

const MAPPINGS: [Mapping; 10] = [
    Mapping {
        field: "podsPerCore",
        flag: "pods-per-core",
        bottlerocket: None,
        shape: Shape::Scalar,
    },
    Mapping {
        field: "systemReserved",
        flag: "system-reserved",
        bottlerocket: Some("system-reserved"),
        shape: Shape::Pairs,
    },
    Mapping {
        field: "kubeReserved",
        flag: "kube-reserved",
        bottlerocket: Some("kube-reserved"),
        shape: Shape::Pairs,
    },
    Mapping {
        field: "evictionHard",
        flag: "eviction-hard",
        bottlerocket: Some("eviction-hard"),
        shape: Shape::Thresholds,
    },
    Mapping {
        field: "evictionSoft",
        flag: "eviction-soft",
        bottlerocket: Some("eviction-soft"),
        shape: Shape::Thresholds,
    },
    Mapping {
        field: "evictionSoftGracePeriod",
        flag: "eviction-soft-grace-period",
        bottlerocket: Some("eviction-soft-grace-period"),
        shape: Shape::Pairs,
    },
    Mapping {
        field: "evictionMaxPodGracePeriod",
        flag: "eviction-max-pod-grace-period",
        bottlerocket: Some("eviction-max-pod-grace-period"),
        shape: Shape::Scalar,
    },
    Mapping {
        field: "imageGCHighThresholdPercent",
        flag: "image-gc-high-threshold",
        bottlerocket: Some("image-gc-high-threshold-percent"),
        shape: Shape::Scalar,
    },
    Mapping {
        field: "imageGCLowThresholdPercent",
        flag: "image-gc-low-threshold",
        bottlerocket: Some("image-gc-low-threshold-percent"),
        shape: Shape::Scalar,
    },
    Mapping {
        field: "cpuCFSQuota",
        flag: "cpu-cfs-quota",
        bottlerocket: Some("cpu-cfs-quota-enforced"),
        shape: Shape::Scalar,
    },
];

/// Fields every family handles itself rather than through [`MAPPINGS`].
const MAX_PODS: &str = "maxPods";
const CLUSTER_DNS: &str = "clusterDNS";

fn mapping(family: AmiFamily, field: &str) -> Result<&'static Mapping, UserDataError> {
    MAPPINGS
        .iter()
        .find(|m| m.field == field)
        .filter(|m| family != AmiFamily::Bottlerocket || m.bottlerocket.is_some())
        .ok_or_else(|| UserDataError::UnsupportedKubelet {
            family: family.as_str(),
            field: field.to_owned(),
        })
}

/// The one cluster DNS address of `kubelet.clusterDNS`, if set.
pub fn cluster_dns(
    family: AmiFamily,
    kubelet: Option<&BTreeMap<String, Value>>,
) -> Result<Option<String>, UserDataError> {
    let Some(value) = kubelet.and_then(|k| k.get(CLUSTER_DNS)) else {
        return Ok(None);
    };
    let invalid = |reason: String| UserDataError::Invalid {
        field: format!("kubelet.{CLUSTER_DNS}"),
        reason,
    };
    let addresses = value
        .as_array()
        .ok_or_else(|| invalid(format!("expected a list of addresses, got {value}")))?;
    match addresses.as_slice() {
        [] => Ok(None),
        [Value::String(address)] => Ok(Some(address.clone())),
        [other] => Err(invalid(format!("expected an address, got {other}"))),
        more => Err(invalid(format!(
            "AMI family {} takes one cluster DNS address, got {}",
            family.as_str(),
            more.len()
        ))),
    }
}

fn scalar_text(field: &str, value: &Value) -> Result<String, UserDataError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(_) | Value::Bool(_) => Ok(value.to_string()),
        other => Err(UserDataError::Invalid {
            field: format!("kubelet.{field}"),
            reason: format!("expected a string, number or boolean, got {other}"),
        }),
    }
}

fn map_text(field: &str, value: &Value, separator: &str) -> Result<String, UserDataError> {
    let entries = value.as_object().ok_or_else(|| UserDataError::Invalid {
        field: format!("kubelet.{field}"),
        reason: format!("expected a map, got {value}"),
    })?;
    let pairs: Result<Vec<String>, UserDataError> = entries
        .iter()
        .map(|(key, value)| Ok(format!("{key}{separator}{}", scalar_text(field, value)?)))
        .collect();
    Ok(pairs?.join(","))
}

/// `--flag=value` for each mapped field, sorted by field name (the map's order).
pub fn flags(
    family: AmiFamily,
    kubelet: Option<&BTreeMap<String, Value>>,
) -> Result<Vec<String>, UserDataError> {
    let mut flags = Vec::new();
    for (field, value) in kubelet.into_iter().flatten() {
        if field == MAX_PODS || field == CLUSTER_DNS {
            continue;
        }
        let mapping = mapping(family, field)?;
        let text = match mapping.shape {
            Shape::Scalar => scalar_text(field, value)?,
            Shape::Pairs => map_text(field, value, "=")?,
            Shape::Thresholds => map_text(field, value, "<")?,
        };
        flags.push(format!("--{}={text}", mapping.flag));
    }
    Ok(flags)
}

/// The Bottlerocket `settings.kubernetes` entries for the mapped fields, by setting name.
pub fn bottlerocket_settings(
    kubelet: Option<&BTreeMap<String, Value>>,
) -> Result<BTreeMap<&'static str, toml_edit::Value>, UserDataError> {
    let mut settings = BTreeMap::new();
    for (field, value) in kubelet.into_iter().flatten() {
        if field == MAX_PODS || field == CLUSTER_DNS {
            continue;
        }
        let mapping = mapping(AmiFamily::Bottlerocket, field)?;
        let (Some(setting), Some(value)) = (mapping.bottlerocket, toml_value(value)) else {
            continue;
        };
        let well_shaped = match mapping.shape {
            Shape::Scalar => !value.is_inline_table() && !value.is_array(),
            Shape::Pairs | Shape::Thresholds => value.is_inline_table(),
        };
        if !well_shaped {
            return Err(UserDataError::Invalid {
                field: format!("kubelet.{field}"),
                reason: "has the wrong type for Bottlerocket's setting".to_owned(),
            });
        }
        settings.insert(setting, value);
    }
    Ok(settings)
}

/// A JSON value (from the EC2NodeClass's kubelet map) as TOML, objects as inline tables; `None`
/// for `null`, which TOML cannot say (nulls inside arrays and objects are dropped).
fn toml_value(value: &Value) -> Option<toml_edit::Value> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or(f64::NAN).into(),
        },
        Value::String(s) => s.as_str().into(),
        Value::Array(items) => items
            .iter()
            .filter_map(toml_value)
            .collect::<toml_edit::Array>()
            .into(),
        Value::Object(map) => map
            .iter()
            .filter_map(|(key, value)| Some((key.as_str(), toml_value(value)?)))
            .collect::<toml_edit::InlineTable>()
            .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kubelet(value: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn flags_follow_the_kubelet_command_line() {
        let config = kubelet(json!({
            "maxPods": 50,
            "clusterDNS": ["10.0.0.10"],
            "systemReserved": {"cpu": "100m", "memory": "100Mi"},
            "evictionHard": {"memory.available": "5%"},
            "evictionMaxPodGracePeriod": 60,
            "cpuCFSQuota": false,
        }));
        assert_eq!(
            flags(AmiFamily::AL2, Some(&config)).unwrap(),
            [
                "--cpu-cfs-quota=false",
                "--eviction-hard=memory.available<5%",
                "--eviction-max-pod-grace-period=60",
                "--system-reserved=cpu=100m,memory=100Mi",
            ]
        );
        assert_eq!(
            cluster_dns(AmiFamily::AL2, Some(&config)).unwrap().as_deref(),
            Some("10.0.0.10")
        );
    }

    #[test]
    fn unmapped_fields_and_extra_dns_addresses_are_errors_naming_the_field() {
        let config = kubelet(json!({"registryPullQPS": 5}));
        assert_eq!(
            flags(AmiFamily::Windows2022, Some(&config))
                .unwrap_err()
                .to_string(),
            "spec.kubelet.registryPullQPS is not supported by AMI family Windows2022"
        );
        let pods_per_core = kubelet(json!({"podsPerCore": 4}));
        assert!(flags(AmiFamily::AL2, Some(&pods_per_core)).is_ok());
        assert!(matches!(
            bottlerocket_settings(Some(&pods_per_core)),
            Err(UserDataError::UnsupportedKubelet { field, .. }) if field == "podsPerCore"
        ));
        let two = kubelet(json!({"clusterDNS": ["10.0.0.10", "10.0.0.11"]}));
        assert_eq!(
            cluster_dns(AmiFamily::Bottlerocket, Some(&two))
                .unwrap_err()
                .to_string(),
            "spec.kubelet.clusterDNS: AMI family Bottlerocket takes one cluster DNS address, got 2"
        );
    }

    #[test]
    fn bottlerocket_settings_keep_value_types() {
        let config = kubelet(json!({
            "kubeReserved": {"cpu": "70m"},
            "imageGCHighThresholdPercent": 85,
            "cpuCFSQuota": true,
        }));
        let settings = bottlerocket_settings(Some(&config)).unwrap();
        let reserved = settings["kube-reserved"].as_inline_table().unwrap();
        assert_eq!(reserved.len(), 1);
        assert_eq!(reserved.get("cpu").and_then(|v| v.as_str()), Some("70m"));
        assert_eq!(settings["image-gc-high-threshold-percent"].as_integer(), Some(85));
        assert_eq!(settings["cpu-cfs-quota-enforced"].as_bool(), Some(true));
        let wrong = kubelet(json!({"kubeReserved": "70m"}));
        assert!(bottlerocket_settings(Some(&wrong)).is_err());
    }

    #[test]
    fn json_nulls_are_dropped_and_numbers_keep_their_kind() {
        assert!(toml_value(&json!(null)).is_none());
        let value = toml_value(&json!({"a": null, "b": [1, null, 2.5]})).unwrap();
        let table = value.as_inline_table().unwrap();
        assert!(!table.contains_key("a"), "{table}");
        let b = table.get("b").and_then(|v| v.as_array()).unwrap();
        assert_eq!(b.len(), 2, "{b}");
        assert_eq!(b.get(0).and_then(toml_edit::Value::as_integer), Some(1));
        assert_eq!(b.get(1).and_then(toml_edit::Value::as_float), Some(2.5));
    }
}
