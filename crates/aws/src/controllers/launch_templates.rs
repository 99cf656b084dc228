//! Launch-template garbage collection on a timer: templates no launch used for
//! [`LaunchTemplateCollection::unused_for`] (outdated AMIs, user data, deleted node classes) are
//! deleted ([`AwsProvider::garbage_collect_launch_templates`]). A launch that races a deletion
//! recreates its template, so collecting is always safe.

use std::{sync::Arc, time::Duration};

use crate::AwsProvider;

/// When and what the collection deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchTemplateCollection {
    /// How often templates are listed.
    pub interval: Duration,
    /// Templates unused for this long are deleted.
    pub unused_for: Duration,
}

impl Default for LaunchTemplateCollection {
    fn default() -> Self {
        Self {
            interval: Duration::from_mins(5),
            unused_for: Duration::from_hours(1),
        }
    }
}

/// Runs the collection until the returned future is dropped.
pub async fn run(provider: Arc<AwsProvider>, config: LaunchTemplateCollection) {
    loop {
        tokio::time::sleep(config.interval).await;
        match provider.garbage_collect_launch_templates(config.unused_for).await {
            Ok(deleted) if deleted.is_empty() => {}
            Ok(deleted) => tracing::info!(?deleted, "deleted unused launch templates"),
            Err(error) => tracing::warn!(%error, "launch-template garbage collection failed"),
        }
    }
}
