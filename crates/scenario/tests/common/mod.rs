//! What the scenario tests share: the first step of their scenarios, which applies a `web`
//! Deployment of 1-CPU pods at zero replicas for later steps to scale.

/// Scenario YAML of one step (under `steps:`) applying the `web` Deployment at 0 s.
pub(crate) const APPLY_WEB_AT_START: &str = r#"  - at: 0s
    apply:
      inline: |
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          replicas: 0
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec:
              terminationGracePeriodSeconds: 0
              containers:
              - name: web
                image: web:1
                resources: {requests: {cpu: "1"}}
"#;

/// Held by each test that plays a scenario at speed: two played at once on a loaded machine can
/// fall behind their accelerated clocks, and then the timings they assert mean nothing.
pub(crate) static ONE_PLAY_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
