//! Liveness: a claim that does not launch within [`super::LAUNCH_TTL`] of its creation, or whose
//! launched instance does not register within `settings.registration_ttl` of `Launched` turning
//! True, is deleted with a Warning event, so the provisioner plans again. Either timeout is a
//! failure in the NodePool's registration-health tracker (`NodeRegistrationHealthy`).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use nodewright_api::{NodeClaimStatus, conditions::nodeclaim};

use super::{LAUNCH_TTL, Working, condition, registration_health, write};
use crate::{context::Context, error::ControllerError, events::reasons, nodepool_status::health::Outcome};

/// Whether a claim may live on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Alive,
    /// Not launched `LAUNCH_TTL` after creation.
    LaunchTimedOut,
    /// Launched, not registered `registration_ttl` after the launch.
    RegistrationTimedOut,
}

fn verdict(
    status: &NodeClaimStatus,
    created: Option<Timestamp>,
    now: Timestamp,
    registration_ttl: Duration,
) -> Verdict {
    let is_true = |condition_type| condition(status, condition_type).is_some_and(|c| c.status == "True");
    let expired = |since: Timestamp, ttl: Duration| {
        SignedDuration::try_from(ttl)
            .ok()
            .and_then(|ttl| since.checked_add(ttl).ok())
            .is_some_and(|deadline| deadline <= now)
    };
    if is_true(nodeclaim::REGISTERED) {
        return Verdict::Alive;
    }
    match condition(status, nodeclaim::LAUNCHED) {
        Some(launched) if launched.status == "True" => {
            if expired(launched.last_transition_time.0, registration_ttl) {
                Verdict::RegistrationTimedOut
            } else {
                Verdict::Alive
            }
        }
        _ if created.is_some_and(|created| expired(created, LAUNCH_TTL)) => Verdict::LaunchTimedOut,
        _ => Verdict::Alive,
    }
}

/// Deletes the claim if it outlived its launch or registration deadline; returns whether it did.
pub(super) async fn enforce(ctx: &Context, working: &Working) -> Result<bool, ControllerError> {
    let created = working.claim.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let ttl = ctx.settings.registration_ttl;
    let (reason, metric_reason, message) = match verdict(&working.status, created, working.now, ttl) {
        Verdict::Alive => return Ok(false),
        Verdict::LaunchTimedOut => (
            reasons::LAUNCH_FAILED,
            "launch_timeout",
            format!(
                "NodeClaim {} did not launch within {}",
                working.name(),
                humanize(LAUNCH_TTL)
            ),
        ),
        Verdict::RegistrationTimedOut => (
            reasons::REGISTRATION_TIMEOUT,
            "registration_timeout",
            format!(
                "NodeClaim {} launched but its Node did not register within {}",
                working.name(),
                humanize(ttl)
            ),
        ),
    };
    tracing::info!(
        node_claim = working.name(),
        reason,
        "deleting the nodeclaim: {message}"
    );
    ctx.events
        .warning(&working.claim, reason, "Delete", message.clone())
        .await;
    write::delete_claim(ctx, &working.claim).await?;
    crate::metrics::nodeclaim_failed(&working.claim, metric_reason);
    let outcome = if reason == reasons::REGISTRATION_TIMEOUT {
        Outcome::registration_failed()
    } else {
        registration_health::launch_timed_out(&working.status, &message)
    };
    registration_health::record(ctx, &working.claim, outcome);
    Ok(true)
}

fn humanize(duration: Duration) -> String {
    format!(
        "{:#}",
        SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX)
    )
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn with(conditions: &[(&str, &str, i64)]) -> NodeClaimStatus {
        NodeClaimStatus {
            conditions: conditions
                .iter()
                .map(|(type_, status, since)| Condition {
                    type_: (*type_).to_owned(),
                    status: (*status).to_owned(),
                    reason: "R".to_owned(),
                    message: String::new(),
                    observed_generation: None,
                    last_transition_time: Time(at(*since)),
                })
                .collect(),
            ..NodeClaimStatus::default()
        }
    }

    const TTL: Duration = Duration::from_mins(15);

    #[test]
    fn registration_deadline_counts_from_the_launch() {
        let launched = with(&[("Launched", "True", 100), ("Registered", "Unknown", 0)]);
        assert_eq!(
            verdict(&launched, Some(at(0)), at(100 + 899), TTL),
            Verdict::Alive
        );
        assert_eq!(
            verdict(&launched, Some(at(0)), at(100 + 900), TTL),
            Verdict::RegistrationTimedOut
        );
        let registered = with(&[("Launched", "True", 100), ("Registered", "True", 200)]);
        assert_eq!(
            verdict(&registered, Some(at(0)), at(100_000), TTL),
            Verdict::Alive
        );
    }

    #[test]
    fn launch_deadline_counts_from_creation() {
        let failing = with(&[("Launched", "False", 10)]);
        assert_eq!(verdict(&failing, Some(at(0)), at(299), TTL), Verdict::Alive);
        assert_eq!(
            verdict(&failing, Some(at(0)), at(300), TTL),
            Verdict::LaunchTimedOut
        );
        assert_eq!(
            verdict(&NodeClaimStatus::default(), None, at(100_000), TTL),
            Verdict::Alive,
            "no creation time, no deadline"
        );
    }

    #[test]
    fn durations_read_well_in_events() {
        assert_eq!(humanize(Duration::from_mins(15)), "15m");
    }
}
