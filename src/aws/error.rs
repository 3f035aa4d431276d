//! How a failed AWS read is judged: a confirmed absence is a fact the rules
//! use; anything else (access denied, throttled after the SDK's retries,
//! timeouts) is a reason the check could not finish.

use std::error::Error;

use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};

use crate::text::clip;

const NOT_FOUND_CODES: &[&str] = &[
    "NoSuchEntity",
    "NotFoundException",
    "ResourceNotFoundException",
];
const MAX_REASON_CHARS: usize = 300;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    NotFound,
    Failed(String),
}

impl<E, R> From<SdkError<E, R>> for ReadError
where
    E: ProvideErrorMetadata + Error + 'static,
    R: std::fmt::Debug + 'static,
{
    fn from(err: SdkError<E, R>) -> Self {
        if let Some(code) = err.code() {
            if NOT_FOUND_CODES.contains(&code) {
                return ReadError::NotFound;
            }
            let message = err.message().unwrap_or("no message");
            return ReadError::Failed(clip(&format!("{code}: {message}"), MAX_REASON_CHARS));
        }
        ReadError::Failed(clip(&error_chain(&err), MAX_REASON_CHARS))
    }
}

impl ReadError {
    pub fn reason(&self) -> String {
        match self {
            ReadError::NotFound => "not found".to_owned(),
            ReadError::Failed(reason) => reason.clone(),
        }
    }
}

/// "dispatch failure: io error: tcp connect error: Connection refused":
/// each cause once, without the debug dump of the SDK's own formatter.
fn error_chain(err: &(dyn Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(current) = next {
        let text = current.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = current.source();
    }
    parts.join(": ")
}
