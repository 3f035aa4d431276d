//! Paces Amazon Connect calls to the account's quota (about 2 requests/s,
//! burst 5, shared with the contact centre's own tooling), so a sweep never
//! causes throttling for anyone else.

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

#[cfg(test)]
mod tests {
    use super::*;

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
