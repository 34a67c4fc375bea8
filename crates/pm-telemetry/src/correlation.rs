//! Correlation ids: one id per request, taken from `X-Correlation-ID` when the caller sent
//! a sensible one and generated otherwise, echoed in the response, attached to every log
//! line of the request, and forwarded on outgoing calls and Kafka messages.

use std::fmt;

/// The header carrying the id.
pub const HEADER: &str = "x-correlation-id";

/// Longest id accepted from a caller.
const MAX_LEN: usize = 128;

/// A request's correlation id.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CorrelationId(String);

impl CorrelationId {
    /// A fresh id (a UUID).
    pub fn generate() -> Self {
        CorrelationId(uuid::Uuid::new_v4().to_string())
    }

    /// Accepts a caller's id only if it is short and made of URL-safe characters, so it can
    /// be logged and forwarded without escaping or log injection.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        ok.then(|| CorrelationId(s.to_owned()))
    }

    /// The caller's id if acceptable, else a fresh one.
    pub fn from_header(value: Option<&str>) -> Self {
        value.and_then(Self::parse).unwrap_or_else(Self::generate)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CorrelationId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensible_ids_are_kept_and_others_replaced() {
        assert_eq!(
            CorrelationId::from_header(Some("req-123_a.b:c")).as_str(),
            "req-123_a.b:c"
        );
        for bad in ["", "has space", "new\nline", &"x".repeat(129)] {
            let id = CorrelationId::from_header(Some(bad));
            assert_ne!(id.as_str(), bad);
            assert!(uuid::Uuid::parse_str(id.as_str()).is_ok());
        }
    }
}
