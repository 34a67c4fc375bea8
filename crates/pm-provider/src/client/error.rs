//! What can go wrong in a provider call, classified by what the caller may conclude.

/// Why a provider call did not produce a parsed answer.
///
/// The distinction that matters to callers is [`ProviderError::is_definitive`]: after a
/// `Rejected` the provider certainly did not act, while after `Unavailable` or
/// `InvalidResponse` it may have — the caller must keep the operation pending (or retry it
/// later with the same idempotency key) rather than record it as failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// The provider answered 4xx other than 409 and 429 (those are retried and end as
    /// `Unavailable`). Never retried: the same request would get the same answer.
    #[error("provider rejected the request (HTTP {status}, {code}): {message}")]
    Rejected {
        /// The HTTP status (400, 422, ...).
        status: u16,
        /// The provider's error code, or `unknown` when the body was not the documented
        /// error shape.
        code: String,
        /// The provider's message, or the start of the body when it was not the error shape.
        message: String,
        /// The provider's details about the rejection, when it sent any.
        constraints: Option<serde_json::Value>,
    },
    /// Every attempt failed with a 5xx, a timeout or a connection error. The provider may or
    /// may not have acted on one of them.
    #[error("provider unavailable after {attempts} attempt(s): {last_error}")]
    Unavailable {
        /// How many requests were tried.
        attempts: u32,
        /// What went wrong with the last one.
        last_error: String,
    },
    /// The provider answered 2xx (or an unexpected 1xx/3xx) with a body we could not read.
    /// Not retried; the provider has probably acted, but we do not know the result.
    #[error("provider sent an unexpected response: {0}")]
    InvalidResponse(String),
    /// The request could not be built (e.g. a header value with control characters), so
    /// nothing was sent.
    #[error("provider request not sent: {0}")]
    InvalidRequest(String),
}

impl ProviderError {
    /// The `code` of a [`ProviderError::Rejected`] whose body was not the documented error
    /// shape.
    pub const UNKNOWN_CODE: &'static str = "unknown";

    /// Whether the outcome is known: `true` when the provider certainly did not act (it
    /// rejected the request, or nothing was sent); `false` when it may have acted and the
    /// result is unknown.
    pub fn is_definitive(&self) -> bool {
        match self {
            // 409 (still processing this key) and 429 (slow down) say nothing about whether
            // the provider acted; the transport retries them, and should one ever reach a
            // caller it must not be taken as a refusal.
            ProviderError::Rejected { status, .. } => !matches!(status, 409 | 429),
            ProviderError::InvalidRequest(_) => true,
            ProviderError::Unavailable { .. } | ProviderError::InvalidResponse(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rejections_and_unsent_requests_are_definitive() {
        let rejected = ProviderError::Rejected {
            status: 422,
            code: "file_not_ready".into(),
            message: "not ready".into(),
            constraints: None,
        };
        assert!(rejected.is_definitive());
        for status in [409, 429] {
            let busy = ProviderError::Rejected {
                status,
                code: "busy".into(),
                message: "later".into(),
                constraints: None,
            };
            assert!(!busy.is_definitive(), "{status}");
        }
        assert!(ProviderError::InvalidRequest("bad header".into()).is_definitive());
        let unavailable = ProviderError::Unavailable {
            attempts: 3,
            last_error: "HTTP 503".into(),
        };
        assert!(!unavailable.is_definitive());
        assert!(!ProviderError::InvalidResponse("garbage".into()).is_definitive());
    }
}
