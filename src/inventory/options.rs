//! How hard and how long a pass may read: concurrency, the deadline that
//! cuts reads off, and progress for people watching a long sweep.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use futures_util::{StreamExt, stream};
use tokio::time::Instant;

use crate::aws::ReadError;
use crate::model::{KeyIndex, Observed, Unverified};

#[derive(Debug, Clone)]
pub struct Options {
    /// Instances read at the same time.
    pub concurrency: usize,
    /// No new read is started after this, and reads still running are cut
    /// off; what is left is reported as `CHECK_INCOMPLETE`.
    pub deadline: Option<Instant>,
    /// The account the trigger came from, to name what could not be read
    /// before any ARN was seen.
    pub account: Option<String>,
    /// Told (instances read, of total) as a sweep goes.
    pub progress: Option<Progress>,
    /// Reads instances in an order shuffled by this seed. A sweep too large
    /// for one invocation's deadline then reaches different instances each
    /// time (the Lambda seeds it with the hour), instead of never reaching
    /// the same tail. `None` keeps the API's order.
    pub order_seed: Option<u64>,
    /// Which keys instances use, from the ledger: a KMS event about a key
    /// a complete index says nobody uses ends after one `DescribeKey`.
    pub key_index: Option<KeyIndex>,
    /// A sweep read in parts: this part's instances (by id order).
    pub page: Option<Page>,
}

/// One part of a sweep: at most `limit` instances, those after `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub after: Option<String>,
    pub limit: usize,
}

/// A callback for long sweeps: `(instances read, instances in total)`.
#[derive(Clone)]
pub struct Progress(pub Arc<dyn Fn(usize, usize) + Send + Sync>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: 4,
            deadline: None,
            account: None,
            progress: None,
            order_seed: None,
            key_index: None,
            page: None,
        }
    }
}

impl Options {
    /// Runs one read unless the deadline has passed, and cuts it off when
    /// the deadline comes, so a slow read cannot eat the time left to alert.
    pub(super) async fn read<T>(
        &self,
        read: impl Future<Output = Result<T, ReadError>>,
    ) -> Observed<T> {
        let Some(deadline) = self.deadline else {
            return observed(read.await);
        };
        if Instant::now() >= deadline {
            return Observed::Unverified(Unverified::Deadline);
        }
        match tokio::time::timeout_at(deadline, read).await {
            Ok(result) => observed(result),
            Err(_) => Observed::Unverified(Unverified::Deadline),
        }
    }

    /// Reads every item once, `concurrency` at a time, into a map keyed by
    /// the item.
    pub(super) async fn read_all<T, F, Fut>(
        &self,
        items: BTreeSet<String>,
        read: F,
    ) -> BTreeMap<String, Observed<T>>
    where
        F: Fn(String) -> Fut + Copy,
        Fut: Future<Output = Result<T, ReadError>>,
    {
        stream::iter(items)
            .map(|item| async move {
                let value = self.read(read(item.clone())).await;
                (item, value)
            })
            .buffer_unordered(self.width())
            .collect()
            .await
    }

    pub(super) fn width(&self) -> usize {
        self.concurrency.max(1)
    }
}

fn observed<T>(result: Result<T, ReadError>) -> Observed<T> {
    match result {
        Ok(value) => Observed::Found(value),
        Err(ReadError::NotFound) => Observed::Absent,
        Err(ReadError::Failed(reason)) => Observed::Unverified(Unverified::Failed(reason)),
    }
}
