//! Which pod events are worth publishing: a pod still waiting is considered again every round,
//! and telling it the same thing each time only adds API writes. An event identical to the last
//! one published for the pod is held back for [`REPEAT_AFTER`] (Karpenter dedupes
//! `FailedScheduling` for 5 minutes too).

use std::collections::{HashMap, HashSet};

use jiff::{SignedDuration, Timestamp};

/// How long an identical event is not repeated.
pub(crate) const REPEAT_AFTER: SignedDuration = SignedDuration::from_mins(5);

/// The last event published per pod (by UID).
#[derive(Debug, Default)]
pub(crate) struct Announced {
    last: HashMap<String, (String, String, Timestamp)>,
}

impl Announced {
    /// Whether to publish `reason`/`note` for the pod now; if so, it is remembered as published.
    pub(crate) fn should_publish(&mut self, uid: &str, reason: &str, note: &str, now: Timestamp) -> bool {
        if let Some((last_reason, last_note, at)) = self.last.get(uid)
            && last_reason == reason
            && last_note == note
            && at.checked_add(REPEAT_AFTER).is_ok_and(|until| now < until)
        {
            return false;
        }
        self.last
            .insert(uid.to_owned(), (reason.to_owned(), note.to_owned(), now));
        true
    }

    /// Forgets pods that no longer wait.
    pub(crate) fn retain(&mut self, waiting: &HashSet<String>) {
        self.last.retain(|uid, _| waiting.contains(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_events_are_held_back_until_the_repeat_time() {
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let later = |secs| start.checked_add(SignedDuration::from_secs(secs)).unwrap();
        let mut announced = Announced::default();
        assert!(announced.should_publish("u1", "Nominated", "nodeclaim/a", start));
        assert!(!announced.should_publish("u1", "Nominated", "nodeclaim/a", later(299)));
        assert!(
            announced.should_publish("u1", "Nominated", "nodeclaim/b", later(10)),
            "new note"
        );
        assert!(
            announced.should_publish("u2", "Nominated", "nodeclaim/b", later(10)),
            "other pod"
        );
        assert!(
            announced.should_publish("u1", "Nominated", "nodeclaim/b", later(310)),
            "repeat time over"
        );
        announced.retain(&HashSet::from(["u2".to_owned()]));
        assert!(
            announced.should_publish("u1", "Nominated", "nodeclaim/b", later(311)),
            "forgotten"
        );
    }
}
