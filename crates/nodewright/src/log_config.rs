//! The log level changed while the controller runs, the way Karpenter's users did it before v1:
//! the ConfigMap `config-logging` in the controller's namespace (`SYSTEM_NAMESPACE`), key
//! `loglevel.controller` (`debug`, `info`, `warn` or `error`). Without the ConfigMap or the key,
//! `LOG_LEVEL` applies again. A value that is not a level is logged and ignored (the level in
//! force stays).
//!
//! The ConfigMap is read every few seconds rather than watched: a single named GET needs only
//! `get` on that one ConfigMap (the chart's Role names it), where a watch would need `list` and
//! `watch` as well.

use std::time::Duration;

use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind},
};
use tracing::Level;

use crate::logging::LogLevel;

/// The ConfigMap Karpenter read its log level from.
pub(crate) const CONFIG_MAP: &str = "config-logging";
/// The key holding the controller's level.
pub(crate) const LEVEL_KEY: &str = "loglevel.controller";
/// How often the ConfigMap is read.
pub(crate) const READ_INTERVAL: Duration = Duration::from_secs(5);

/// The level the ConfigMap asks for: None when the ConfigMap or its key is absent.
fn requested_level(config_map: Option<&DynamicObject>) -> Result<Option<Level>, String> {
    let Some(value) = config_map
        .and_then(|cm| cm.data.get("data"))
        .and_then(|d| d.get(LEVEL_KEY))
    else {
        return Ok(None);
    };
    let text = value.as_str().unwrap_or_default();
    text.trim().parse().map(Some).map_err(|_| {
        format!("ConfigMap {CONFIG_MAP} key {LEVEL_KEY}: {text:?} is not debug, info, warn or error")
    })
}

/// What one read of the ConfigMap leads to.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Change the level.
    Set(Level),
    /// Keep the level in force.
    Keep,
    /// Keep it, and say why once.
    Complain(String),
}

/// Decides from what was read, the level in force, `LOG_LEVEL`, and the last complaint (so a
/// bad value or a failing read is logged once, not every few seconds).
fn decide(
    read: Result<Option<&DynamicObject>, String>,
    current: Option<Level>,
    configured: Level,
    last_complaint: Option<&str>,
) -> Decision {
    let wanted = read.and_then(requested_level);
    match wanted {
        Ok(level) => {
            let level = level.unwrap_or(configured);
            if current == Some(level) {
                Decision::Keep
            } else {
                Decision::Set(level)
            }
        }
        Err(why) if last_complaint == Some(why.as_str()) => Decision::Keep,
        Err(why) => Decision::Complain(why),
    }
}

/// Follows the ConfigMap in `namespace` for as long as the process runs.
pub(crate) async fn follow(client: Client, namespace: String, level: LogLevel, interval: Duration) {
    let config_maps =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "ConfigMap"), "configmaps");
    let api: Api<DynamicObject> = Api::namespaced_with(client, &namespace, &config_maps);
    let mut last_complaint: Option<String> = None;
    loop {
        let read = api
            .get_opt(CONFIG_MAP)
            .await
            .map_err(|e| format!("reading ConfigMap {namespace}/{CONFIG_MAP} for the log level: {e}"));
        match decide(
            read.as_ref().map(Option::as_ref).map_err(Clone::clone),
            level.current(),
            level.configured(),
            last_complaint.as_deref(),
        ) {
            Decision::Set(new) => match level.set(new) {
                Ok(()) => {
                    last_complaint = None;
                    tracing::info!(level = %new, configmap = CONFIG_MAP, namespace, "log level changed");
                }
                Err(e) => tracing::error!(error = %e, "log level unchanged"),
            },
            Decision::Keep => {}
            Decision::Complain(why) => {
                tracing::warn!(configmap = CONFIG_MAP, namespace, "{why}; the log level stays");
                last_complaint = Some(why);
            }
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use nodewright_controller::Clock;
    use nodewright_sim::testing::TestCluster;
    use serde_json::json;

    use super::*;
    use crate::logging::{LogFormat, subscriber};

    fn config_map(data: &serde_json::Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": CONFIG_MAP, "namespace": "kube-system"},
            "data": data,
        }))
        .unwrap()
    }

    #[test]
    fn the_configmap_key_sets_the_level_and_its_absence_restores_log_level() {
        let debug = config_map(&json!({LEVEL_KEY: "debug"}));
        assert_eq!(
            decide(Ok(Some(&debug)), Some(Level::INFO), Level::INFO, None),
            Decision::Set(Level::DEBUG)
        );
        assert_eq!(
            decide(Ok(Some(&debug)), Some(Level::DEBUG), Level::INFO, None),
            Decision::Keep
        );
        let other_keys = config_map(&json!({"loglevel.webhook": "debug"}));
        for read in [Ok(None), Ok(Some(&other_keys))] {
            assert_eq!(
                decide(read, Some(Level::DEBUG), Level::INFO, None),
                Decision::Set(Level::INFO)
            );
        }
    }

    #[test]
    fn a_bad_value_or_a_failed_read_keeps_the_level_and_is_reported_once() {
        let loud = config_map(&json!({LEVEL_KEY: "loud"}));
        let Decision::Complain(why) = decide(Ok(Some(&loud)), Some(Level::DEBUG), Level::INFO, None) else {
            panic!("a bad level is reported");
        };
        assert!(why.contains(LEVEL_KEY) && why.contains("loud"), "{why}");
        assert_eq!(
            decide(Ok(Some(&loud)), Some(Level::DEBUG), Level::INFO, Some(&why)),
            Decision::Keep
        );
        assert_eq!(
            decide(Err("403".to_owned()), Some(Level::DEBUG), Level::INFO, None),
            Decision::Complain("403".to_owned())
        );
    }

    async fn wait_for(cluster: &TestCluster, level: &LogLevel, wanted: Level) {
        cluster
            .wait_until(Duration::from_secs(5), &format!("level {wanted}"), || {
                std::future::ready(level.current() == Some(wanted))
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_level_follows_the_configmap_on_a_running_cluster() {
        let cluster = TestCluster::start().await.unwrap();
        let clock = Clock::from_fn(|| "2026-11-01T00:00:00Z".parse().unwrap());
        let (_logs, level) = subscriber(Level::INFO, LogFormat::Json, clock, std::io::sink);
        let follower = tokio::spawn(follow(
            cluster.client(),
            "kube-system".to_owned(),
            level.clone(),
            Duration::from_millis(10),
        ));
        let apply = |value: &str| {
            cluster
                .apply_yaml(&format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {CONFIG_MAP}\n  namespace: kube-system\ndata:\n  {LEVEL_KEY}: {value}\n"
                ))
                .unwrap();
        };
        apply("debug");
        wait_for(&cluster, &level, Level::DEBUG).await;
        apply("loud");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(level.current(), Some(Level::DEBUG), "a bad value keeps the level");
        apply("warn");
        wait_for(&cluster, &level, Level::WARN).await;
        let config_maps: Api<DynamicObject> = Api::namespaced_with(
            cluster.client(),
            "kube-system",
            &ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "ConfigMap"), "configmaps"),
        );
        config_maps
            .delete(CONFIG_MAP, &kube::api::DeleteParams::default())
            .await
            .unwrap();
        wait_for(&cluster, &level, Level::INFO).await;
        follower.abort();
    }
}
