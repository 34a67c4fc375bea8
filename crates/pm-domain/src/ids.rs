//! Typed identifiers: one type per entity, validated when constructed, so a `UserId` can
//! never be passed where an `OrderId` is expected and no id is ever blank or oversized.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest provider-supplied identifier we accept (orders, events, idempotency keys).
pub const MAX_ID_LEN: usize = 255;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_ID_LEN} characters (got {0})")]
    TooLong(usize),
    #[error("must not contain control characters or surrounding whitespace")]
    BadCharacters,
    #[error("must be visible ASCII characters only (no spaces), at most {MAX_ID_LEN}")]
    NotVisibleAscii,
    #[error("must be a UUID (e.g. 0b6f5c3e-8d1a-4c7e-9a51-2f0e1b2c3d4e)")]
    NotUuid,
}

fn check_text_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    let chars = s.chars().count();
    if chars > MAX_ID_LEN {
        return Err(IdError::TooLong(chars));
    }
    if s.chars().any(char::is_control) || s.trim() != s {
        return Err(IdError::BadCharacters);
    }
    Ok(())
}

/// A key we send on as an HTTP header value: visible ASCII only, or it could never leave
/// (and a retry could never succeed).
fn check_header_id(s: &str) -> Result<(), IdError> {
    check_text_id(s)?;
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(IdError::NotVisibleAscii);
    }
    Ok(())
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        text_id!($(#[$doc])* $name, check_text_id);
    };
    ($(#[$doc:meta])* $name:ident, $check:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                $check(&s)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

text_id!(
    /// The provider's order identifier; the merchant's orders are keyed by it.
    OrderId
);
text_id!(
    /// The provider's unique id of one webhook event; the key of webhook deduplication.
    ProviderEventId
);
text_id!(
    /// A client-chosen key that makes a manual operation (capture) safe to retry. It is sent
    /// to the provider as the `Idempotency-Key` header, so it is visible ASCII only.
    IdempotencyKey,
    check_header_id
);

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            pub fn parse(s: &str) -> Result<Self, IdError> {
                Uuid::try_parse(s).map(Self).map_err(|_| IdError::NotUuid)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }
    };
}

uuid_id!(
    /// The merchant's customer; the Kafka message key and the future shard key.
    UserId
);
uuid_id!(
    /// A dispute, assigned by us (UUIDv7, so ids sort by creation time).
    DisputeId
);
uuid_id!(
    /// One row of an event table, or one webhook accepted by ingest (UUIDv7).
    EventId
);

impl DisputeId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }
}

impl EventId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_ids_reject_blank_long_and_control_characters() {
        assert_eq!(OrderId::parse(""), Err(IdError::Empty));
        assert_eq!(OrderId::parse("x".repeat(256)), Err(IdError::TooLong(256)));
        assert!(OrderId::parse("x".repeat(255)).is_ok());
        assert_eq!(OrderId::parse("a\nb"), Err(IdError::BadCharacters));
        assert_eq!(OrderId::parse(" ord"), Err(IdError::BadCharacters));
        assert_eq!(
            OrderId::parse("ord_1/2").map(String::from),
            Ok("ord_1/2".to_owned())
        );
    }

    #[test]
    fn uuid_ids_parse_only_uuids() {
        assert!(UserId::parse("0b6f5c3e-8d1a-4c7e-9a51-2f0e1b2c3d4e").is_ok());
        assert_eq!(UserId::parse("not-a-uuid"), Err(IdError::NotUuid));
    }

    #[test]
    fn text_ids_deserialize_with_validation() {
        assert!(serde_json::from_str::<OrderId>("\"\"").is_err());
        let id: OrderId = serde_json::from_str("\"ord-1\"").expect("valid id");
        assert_eq!(id.as_str(), "ord-1");
    }
}
