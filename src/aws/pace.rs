//! Paces Amazon Connect calls to the account's quotas, one token bucket per
//! API: Amazon Connect throttles each API on its own quota (about 2
//! requests/s, burst 5, per account and Region, shared with the contact
//! centre's own tooling), so a sweep never causes throttling for anyone else.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::{Instant, sleep_until};

#[derive(Debug)]
pub struct Pace {
    per_second: f64,
    burst: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

impl Pace {
    pub fn new(per_second: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Pace {
            per_second,
            burst,
            state: Mutex::new(Bucket {
                tokens: burst,
                refilled_at: Instant::now(),
            }),
        }
    }

    /// Waits for the next slot. Callers that arrive together are queued by
    /// reserving slots in order (the bucket may go below zero).
    pub async fn wait(&self) {
        let ready_at = {
            let mut bucket = self.state.lock().await;
            let now = Instant::now();
            let earned = now.duration_since(bucket.refilled_at).as_secs_f64() * self.per_second;
            bucket.tokens = (bucket.tokens + earned).min(self.burst);
            bucket.refilled_at = now;
            bucket.tokens -= 1.0;
            if bucket.tokens >= 0.0 {
                return;
            }
            now + Duration::from_secs_f64(-bucket.tokens / self.per_second)
        };
        sleep_until(ready_at).await;
    }
}

/// The Amazon Connect APIs the guard calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectApi {
    ListInstances,
    DescribeInstance,
    ListInstanceStorageConfigs,
}

impl ConnectApi {
    pub const ALL: [ConnectApi; 3] = [
        ConnectApi::ListInstances,
        ConnectApi::DescribeInstance,
        ConnectApi::ListInstanceStorageConfigs,
    ];

    /// The API's name, as Service Quotas and `CONNECT_API_RPS` spell it.
    pub fn name(self) -> &'static str {
        match self {
            ConnectApi::ListInstances => "ListInstances",
            ConnectApi::DescribeInstance => "DescribeInstance",
            ConnectApi::ListInstanceStorageConfigs => "ListInstanceStorageConfigs",
        }
    }

    pub fn named(name: &str) -> Option<ConnectApi> {
        ConnectApi::ALL
            .into_iter()
            .find(|api| api.name().eq_ignore_ascii_case(name))
    }
}

/// Requests per second the guard allows itself on each Connect API
/// (`CONNECT_API_RPS`), indexed by [`ConnectApi`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectRates([f64; 3]);

impl ConnectRates {
    /// The same rate for every API.
    pub fn all(per_second: f64) -> Self {
        ConnectRates([per_second; 3])
    }

    pub fn get(&self, api: ConnectApi) -> f64 {
        self.0[api as usize]
    }

    pub fn set(&mut self, api: ConnectApi, per_second: f64) {
        self.0[api as usize] = per_second;
    }
}

/// One bucket per Connect API.
#[derive(Debug)]
pub struct ConnectPace([Pace; 3]);

impl ConnectPace {
    pub fn new(rates: &ConnectRates, burst: u32) -> Self {
        ConnectPace(ConnectApi::ALL.map(|api| Pace::new(rates.get(api), burst)))
    }

    /// Waits for `api`'s next slot.
    pub async fn wait(&self, api: ConnectApi) {
        self.0[api as usize].wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_api_has_its_own_bucket() {
        let mut rates = ConnectRates::all(1000.0);
        rates.set(ConnectApi::ListInstanceStorageConfigs, 10.0);
        let pace = ConnectPace::new(&rates, 1);
        let start = Instant::now();
        pace.wait(ConnectApi::ListInstanceStorageConfigs).await;
        pace.wait(ConnectApi::ListInstanceStorageConfigs).await;
        let slow = start.elapsed();
        for _ in 0..10 {
            pace.wait(ConnectApi::DescribeInstance).await;
        }
        assert!(slow >= Duration::from_millis(95), "10/s: {slow:?}");
        assert!(
            start.elapsed() - slow < Duration::from_millis(50),
            "DescribeInstance waited for another API's bucket"
        );
        assert_eq!(
            ConnectApi::named("describeinstance"),
            Some(ConnectApi::DescribeInstance)
        );
        assert_eq!(ConnectApi::named("DeleteInstance"), None);
    }

    #[tokio::test]
    async fn allows_a_burst_then_the_rate() {
        let pace = Pace::new(50.0, 5);
        let start = Instant::now();
        for _ in 0..5 {
            pace.wait().await;
        }
        assert!(
            start.elapsed() < Duration::from_millis(20),
            "the burst is free"
        );
        for _ in 0..4 {
            pace.wait().await;
        }
        let elapsed = start.elapsed();
        // 4 more at 50/s take 80 ms; the upper bound only guards against a stall.
        assert!(
            elapsed >= Duration::from_millis(78),
            "too fast: {elapsed:?}"
        );
        assert!(elapsed < Duration::from_secs(2), "stalled: {elapsed:?}");
    }
}
