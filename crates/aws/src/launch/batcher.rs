//! Concurrent identical CreateFleet requests merged into one call, as Karpenter's batcher does:
//! a burst of NodeClaims for one NodePool asks EC2 once for N instances instead of N times,
//! which is both faster and kinder to the API rate limits.
//!
//! A request waits until no identical one arrived for [`BatchWindow::idle`], at most
//! [`BatchWindow::max_wait`] after the first, or until [`BatchWindow::max_items`] are waiting. The
//! call asks for as many instances as requests; each request gets one of the instances, and those
//! left without one get the fleet's errors.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::{sync::oneshot, time::Instant};

use super::fleet::{self, FleetFailure, FleetRequest, LaunchedInstance};
use crate::error::AwsError;

/// How long requests wait for identical ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchWindow {
    pub idle: Duration,
    pub max_wait: Duration,
    pub max_items: usize,
}

impl Default for BatchWindow {
    /// Karpenter's CreateFleet batcher: 35 ms idle, 1 s at most, 1000 requests.
    fn default() -> Self {
        Self {
            idle: Duration::from_millis(35),
            max_wait: Duration::from_secs(1),
            max_items: 1000,
        }
    }
}

/// What one request gets back: its instance, if the fleet had one for it, and the fleet's
/// per-pool failures (shared by the whole batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetAnswer {
    pub launched: Option<LaunchedInstance>,
    pub failures: Vec<FleetFailure>,
}

/// An API error of the merged call, handed to every request of the batch.
#[derive(Debug, Clone)]
struct SharedError {
    code: String,
    message: String,
}

type Reply = Result<FleetAnswer, SharedError>;

#[derive(Debug)]
struct Batch {
    request: FleetRequest,
    waiters: Vec<oneshot::Sender<Reply>>,
    first: Instant,
    last: Instant,
}

/// The batcher; clones share pending batches.
#[derive(Debug, Clone)]
pub struct FleetBatcher {
    ec2: aws_sdk_ec2::Client,
    window: BatchWindow,
    pending: Arc<Mutex<HashMap<FleetRequest, Batch>>>,
}

impl FleetBatcher {
    pub fn new(ec2: aws_sdk_ec2::Client, window: BatchWindow) -> Self {
        Self {
            ec2,
            window,
            pending: Arc::default(),
        }
    }

    /// Launches one instance for `request`, merged with identical requests in flight.
    pub async fn launch(&self, request: FleetRequest) -> Result<FleetAnswer, AwsError> {
        let (sender, receiver) = oneshot::channel();
        let now = Instant::now();
        let start_flusher = {
            let mut pending = self.pending();
            if let Some(batch) = pending.get_mut(&request) {
                batch.waiters.push(sender);
                batch.last = now;
                false
            } else {
                pending.insert(
                    request.clone(),
                    Batch {
                        request: request.clone(),
                        waiters: vec![sender],
                        first: now,
                        last: now,
                    },
                );
                true
            }
        };
        if start_flusher {
            tokio::spawn(self.clone().flush_when_due(request));
        }
        match receiver.await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(shared)) => Err(AwsError::Api {
                operation: "CreateFleet",
                code: shared.code,
                message: shared.message,
            }),
            Err(_) => Err(AwsError::Api {
                operation: "CreateFleet",
                code: crate::error::REQUEST_FAILED.to_owned(),
                message: "the batch was dropped before it was sent (the runtime is shutting down)".to_owned(),
            }),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<FleetRequest, Batch>> {
        // Batches are inserted or removed whole: a panic elsewhere cannot leave one half-written.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the batch for `key` is due, then sends it.
    async fn flush_when_due(self, key: FleetRequest) {
        loop {
            let due = {
                let pending = self.pending();
                let Some(batch) = pending.get(&key) else { return };
                if batch.waiters.len() >= self.window.max_items {
                    Instant::now()
                } else {
                    (batch.last + self.window.idle).min(batch.first + self.window.max_wait)
                }
            };
            if due <= Instant::now() {
                break;
            }
            tokio::time::sleep_until(due).await;
        }
        let Some(batch) = self.pending().remove(&key) else {
            return;
        };
        self.send(batch).await;
    }

    async fn send(&self, batch: Batch) {
        let count = i32::try_from(batch.waiters.len()).unwrap_or(i32::MAX);
        let result = fleet::build(&self.ec2, &batch.request, count).send().await;
        let output = match result {
            Ok(output) => output,
            Err(error) => {
                let error = AwsError::api("CreateFleet", &error);
                let shared = match error {
                    AwsError::Api { code, message, .. } => SharedError { code, message },
                    other => SharedError {
                        code: crate::error::REQUEST_FAILED.to_owned(),
                        message: other.to_string(),
                    },
                };
                for waiter in batch.waiters {
                    let _ = waiter.send(Err(shared.clone()));
                }
                return;
            }
        };
        let zone_of_subnet = |subnet: &str| batch.request.zone_of_subnet(subnet);
        let (launched, failures) = fleet::read_output(&output, batch.request.capacity_type, &zone_of_subnet);
        let mut launched = launched.into_iter();
        for waiter in batch.waiters {
            // A waiter that went away (its launch was cancelled) leaves its instance to the
            // garbage collector, which finds it by the fleet's tags.
            let _ = waiter.send(Ok(FleetAnswer {
                launched: launched.next(),
                failures: failures.clone(),
            }));
        }
    }
}
