//! Time is UTC: parsed from RFC 3339 with any offset, stored with PostgreSQL's microsecond
//! precision, and written back as RFC 3339 with `Z`.

use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Utc};

/// Why a timestamp was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be an RFC 3339 timestamp such as 2026-01-31T12:00:00Z (got {0:?})")]
pub struct TimestampError(pub String);

/// Parses RFC 3339 and truncates to microseconds, the precision of `timestamptz`, so a
/// value compares equal before and after a round trip through the database.
pub fn parse_rfc3339(s: &str) -> Result<DateTime<Utc>, TimestampError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| truncate_micros(t.with_timezone(&Utc)))
        .map_err(|_| TimestampError(s.to_owned()))
}

/// Drops sub-microsecond digits.
pub fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(t)
}

/// The current time at database precision.
pub fn now() -> DateTime<Utc> {
    truncate_micros(Utc::now())
}

/// RFC 3339 in UTC with `Z`, with fractional seconds only when present.
pub fn format(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Serde adapter writing `DateTime<Utc>` as [`format`] does: `#[serde(with = "pm_domain::time::rfc3339")]`.
pub mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }

    /// The same for `Option<DateTime<Utc>>`, `null` when absent.
    pub mod option {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&super::super::format(t)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| super::super::parse_rfc3339(&s).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_utc_and_precision_is_microseconds() {
        let t = parse_rfc3339("2026-03-01T02:00:00.123456789+02:00").expect("valid");
        assert_eq!(format(&t), "2026-03-01T00:00:00.123456Z");
        assert_eq!(
            format(&parse_rfc3339("2026-03-01T00:00:00Z").expect("valid")),
            "2026-03-01T00:00:00Z"
        );
    }

    #[test]
    fn non_rfc3339_is_rejected() {
        for bad in [
            "2026-03-01",
            "2026-03-01 00:00:00",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }
}
