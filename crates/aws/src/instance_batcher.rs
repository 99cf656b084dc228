//! Concurrent DescribeInstances and TerminateInstances calls for single instances merged into one
//! call per kind, as Karpenter's batchers do (100 ms idle, 1 s at most, 500 IDs): the garbage
//! collector, the lifecycle controller and termination each ask about one instance at a time, and
//! a thousand nodes would otherwise mean a thousand calls.
//!
//! EC2 fails a whole call when one ID is unknown (`InvalidInstanceID.NotFound`); the batch then
//! asks again one ID at a time, so one gone instance does not fail the others.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::{sync::oneshot, time::Instant};

use crate::{
    error::AwsError,
    instances::{self, InstanceInfo},
};

/// How long calls wait for others of the same kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdBatchWindow {
    pub idle: Duration,
    pub max_wait: Duration,
    pub max_ids: usize,
}

impl Default for IdBatchWindow {
    /// Karpenter's DescribeInstances and TerminateInstances batchers.
    fn default() -> Self {
        Self {
            idle: Duration::from_millis(100),
            max_wait: Duration::from_secs(1),
            max_ids: 500,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Describe,
    Terminate,
}

/// One ID's answer: the instance (describe), or whether EC2 knew it (terminate).
#[derive(Debug, Clone)]
enum Answer {
    Described(Option<Box<InstanceInfo>>),
    Terminated(bool),
}

type Reply = Result<Answer, (String, String)>;

#[derive(Debug, Default)]
struct Pending {
    ids: Vec<(String, oneshot::Sender<Reply>)>,
    first: Option<Instant>,
    last: Option<Instant>,
}

/// The batcher; clones share pending calls.
#[derive(Debug, Clone)]
pub struct InstanceBatcher {
    ec2: aws_sdk_ec2::Client,
    window: IdBatchWindow,
    pending: Arc<Mutex<HashMap<Kind, Pending>>>,
}

impl InstanceBatcher {
    pub fn new(ec2: aws_sdk_ec2::Client, window: IdBatchWindow) -> Self {
        Self {
            ec2,
            window,
            pending: Arc::default(),
        }
    }

    /// The instance with this ID, whatever its state; `None` when EC2 does not know it.
    pub async fn get(&self, instance_id: &str) -> Result<Option<InstanceInfo>, AwsError> {
        match self.submit(Kind::Describe, instance_id).await? {
            Answer::Described(found) => Ok(found.map(|b| *b)),
            Answer::Terminated(_) => Ok(None),
        }
    }

    /// Starts terminating the instance; `false` when EC2 does not know it.
    pub async fn terminate(&self, instance_id: &str) -> Result<bool, AwsError> {
        match self.submit(Kind::Terminate, instance_id).await? {
            Answer::Terminated(found) => Ok(found),
            Answer::Described(_) => Ok(false),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<Kind, Pending>> {
        // Entries are replaced whole: a panic elsewhere cannot leave one half-written.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn submit(&self, kind: Kind, instance_id: &str) -> Result<Answer, AwsError> {
        let (sender, receiver) = oneshot::channel();
        let now = Instant::now();
        let first_of_batch = {
            let mut pending = self.pending();
            let batch = pending.entry(kind).or_default();
            batch.ids.push((instance_id.to_owned(), sender));
            batch.last = Some(now);
            batch.first.get_or_insert(now);
            // The first request of a batch starts its timer; the rest ride along.
            batch.ids.len() == 1
        };
        if first_of_batch {
            tokio::spawn(self.clone().flush_when_due(kind));
        }
        let operation = match kind {
            Kind::Describe => "DescribeInstances",
            Kind::Terminate => "TerminateInstances",
        };
        match receiver.await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err((code, message))) => Err(AwsError::Api {
                operation,
                code,
                message,
            }),
            Err(_) => Err(AwsError::Api {
                operation,
                code: crate::error::REQUEST_FAILED.to_owned(),
                message: "the batch was dropped before it was sent (the runtime is shutting down)".to_owned(),
            }),
        }
    }

    async fn flush_when_due(self, kind: Kind) {
        loop {
            let due = {
                let pending = self.pending();
                let Some(batch) = pending.get(&kind) else { return };
                let (Some(first), Some(last)) = (batch.first, batch.last) else {
                    return;
                };
                if batch.ids.len() >= self.window.max_ids {
                    Instant::now()
                } else {
                    (last + self.window.idle).min(first + self.window.max_wait)
                }
            };
            if due <= Instant::now() {
                break;
            }
            tokio::time::sleep_until(due).await;
        }
        let Some(batch) = self.pending().remove(&kind) else {
            return;
        };
        let ids: Vec<String> = batch.ids.iter().map(|(id, _)| id.clone()).collect();
        let mut answers = self.run(kind, &ids).await;
        for (id, waiter) in batch.ids {
            let answer = answers.remove(&id).unwrap_or(Ok(match kind {
                Kind::Describe => Answer::Described(None),
                Kind::Terminate => Answer::Terminated(false),
            }));
            let _ = waiter.send(answer);
        }
    }

    /// One call for all `ids`, or one per ID when an unknown ID fails the whole call.
    async fn run(&self, kind: Kind, ids: &[String]) -> HashMap<String, Reply> {
        let mut unique = ids.to_vec();
        unique.sort();
        unique.dedup();
        match self.call(kind, &unique).await {
            Ok(answers) => answers.into_iter().map(|(id, a)| (id, Ok(a))).collect(),
            Err(error)
                if unique.len() > 1 && error.code().is_some_and(|c| c.starts_with("InvalidInstanceID")) =>
            {
                let mut answers = HashMap::new();
                for id in unique {
                    let answer = self.call(kind, std::slice::from_ref(&id)).await;
                    let reply = match answer {
                        Ok(mut found) => Ok(found.remove(&id).unwrap_or(match kind {
                            Kind::Describe => Answer::Described(None),
                            Kind::Terminate => Answer::Terminated(false),
                        })),
                        Err(error) => Err(shared(error)),
                    };
                    answers.insert(id, reply);
                }
                answers
            }
            Err(error) => {
                let error = shared(error);
                unique.into_iter().map(|id| (id, Err(error.clone()))).collect()
            }
        }
    }

    async fn call(&self, kind: Kind, ids: &[String]) -> Result<HashMap<String, Answer>, AwsError> {
        match kind {
            Kind::Describe => Ok(instances::describe_ids(&self.ec2, ids)
                .await?
                .into_iter()
                .map(|i| (i.id.clone(), Answer::Described(Some(Box::new(i)))))
                .collect()),
            Kind::Terminate => {
                let known = instances::terminate_ids(&self.ec2, ids).await?;
                Ok(ids
                    .iter()
                    .map(|id| (id.clone(), Answer::Terminated(known)))
                    .collect())
            }
        }
    }
}

fn shared(error: AwsError) -> (String, String) {
    match error {
        AwsError::Api { code, message, .. } => (code, message),
        other => (crate::error::REQUEST_FAILED.to_owned(), other.to_string()),
    }
}
