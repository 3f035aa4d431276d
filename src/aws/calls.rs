//! Counts the HTTP requests each client sends (what AWS quotas count, retries
//! included) and the ones AWS answered with throttling, for the pass's
//! metrics. An SDK interceptor, so every call is counted at one place.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// The services the guard calls, in metric order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Connect,
    CustomerProfiles,
    Iam,
    Kms,
    Kinesis,
    Firehose,
    Sns,
    DynamoDb,
    Sqs,
    Sts,
    SecurityHub,
}

impl Service {
    pub const ALL: [Service; 11] = [
        Service::Connect,
        Service::CustomerProfiles,
        Service::Iam,
        Service::Kms,
        Service::Kinesis,
        Service::Firehose,
        Service::Sns,
        Service::DynamoDb,
        Service::Sqs,
        Service::Sts,
        Service::SecurityHub,
    ];

    /// The metric that counts this service's requests.
    pub fn metric(self) -> &'static str {
        match self {
            Service::Connect => "ConnectCalls",
            Service::CustomerProfiles => "CustomerProfilesCalls",
            Service::Iam => "IamCalls",
            Service::Kms => "KmsCalls",
            Service::Kinesis => "KinesisCalls",
            Service::Firehose => "FirehoseCalls",
            Service::Sns => "SnsCalls",
            Service::DynamoDb => "DynamoDbCalls",
            Service::Sqs => "SqsCalls",
            Service::Sts => "StsCalls",
            Service::SecurityHub => "SecurityHubCalls",
        }
    }
}

/// Running totals for the process; a pass reports the difference between
/// two [`CallCounts::totals`].
#[derive(Debug, Default)]
pub struct CallCounts {
    requests: [AtomicU64; Service::ALL.len()],
    throttled: AtomicU64,
}

/// Requests per service (in [`Service::ALL`] order) and throttled answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallTotals {
    pub requests: [u64; Service::ALL.len()],
    pub throttled: u64,
}

impl CallCounts {
    pub fn totals(&self) -> CallTotals {
        CallTotals {
            requests: std::array::from_fn(|i| self.requests[i].load(Ordering::Relaxed)),
            throttled: self.throttled.load(Ordering::Relaxed),
        }
    }

    /// The interceptor that counts `service`'s requests here.
    pub fn interceptor(self: &Arc<Self>, service: Service) -> CountCalls {
        CountCalls {
            service,
            counts: Arc::clone(self),
        }
    }
}

impl CallTotals {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &CallTotals) -> CallTotals {
        CallTotals {
            requests: std::array::from_fn(|i| self.requests[i] - earlier.requests[i]),
            throttled: self.throttled - earlier.throttled,
        }
    }

    pub fn of(&self, service: Service) -> u64 {
        self.requests[service as usize]
    }
}

#[derive(Debug)]
pub struct CountCalls {
    service: Service,
    counts: Arc<CallCounts>,
}

impl Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "CountCalls"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.counts.requests[self.service as usize].fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response();
        let error_type = response.headers().get("x-amzn-errortype").unwrap_or("");
        let body = response.body().bytes().unwrap_or_default();
        if is_throttling(response.status().as_u16(), error_type, body) {
            self.counts.throttled.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Whether AWS answered "slow down": HTTP 429, or a 400 whose error code
/// (the JSON protocols' `x-amzn-ErrorType` header or `__type`, the query
/// protocol's `<Code>`) is one of the throttling codes the SDK retries.
pub fn is_throttling(status: u16, error_type: &str, body: &[u8]) -> bool {
    const CODES: [&str; 5] = [
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceeded",
        "SlowDown",
    ];
    if status == 429 {
        return true;
    }
    if status != 400 {
        return false;
    }
    let head = &body[..body.len().min(512)];
    let body = String::from_utf8_lossy(head);
    CODES
        .iter()
        .any(|code| error_type.contains(code) || body.contains(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_is_recognised_in_each_protocol() {
        assert!(is_throttling(429, "", b""));
        assert!(is_throttling(
            400,
            "ThrottlingException:http://internal",
            b""
        ));
        assert!(is_throttling(
            400,
            "",
            b"<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>"
        ));
        assert!(is_throttling(
            400,
            "",
            br#"{"__type":"com.amazon#TooManyRequestsException"}"#
        ));
    }

    #[test]
    fn other_errors_are_not_throttling() {
        assert!(!is_throttling(400, "ValidationException", b"{}"));
        assert!(!is_throttling(403, "AccessDeniedException", b""));
        assert!(!is_throttling(500, "", b"Throttling"));
        assert!(!is_throttling(200, "", b""));
    }

    #[test]
    fn totals_since_subtract_per_service() {
        let counts = CallCounts::default();
        let before = counts.totals();
        counts.requests[Service::Kms as usize].fetch_add(3, Ordering::Relaxed);
        counts.throttled.fetch_add(1, Ordering::Relaxed);
        let delta = counts.totals().since(&before);
        assert_eq!(delta.of(Service::Kms), 3);
        assert_eq!(delta.of(Service::Connect), 0);
        assert_eq!(delta.throttled, 1);
    }
}
