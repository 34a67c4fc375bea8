//! Keyset pagination on `(created_at, id)`.
//!
//! A cursor names the last item of a page; the next page starts strictly after it in the
//! requested direction. Unlike offsets, this is stable under concurrent inserts: nothing is
//! skipped or repeated. Cursors are opaque to clients (base64url) and carry their sort
//! direction so one cannot be replayed against the other order.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::MAX_ID_LEN;

/// Items per page when the client does not say.
pub const DEFAULT_LIMIT: u32 = 50;
/// Most items per page a client may ask for.
pub const MAX_LIMIT: u32 = 1000;

/// Sort direction of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    Asc,
    Desc,
}

impl std::str::FromStr for Sort {
    type Err = PageError;
    fn from_str(s: &str) -> Result<Self, PageError> {
        match s {
            "asc" => Ok(Sort::Asc),
            "desc" => Ok(Sort::Desc),
            _ => Err(PageError::Sort(s.to_owned())),
        }
    }
}

/// The position after which the next page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: String,
    pub sort: Sort,
}

/// A bad page request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("limit must be between 1 and {MAX_LIMIT} (got {0})")]
    Limit(i64),
    #[error("cursor is not one this API issued")]
    Cursor,
    #[error("cursor was issued for sort={0}; repeat the request with the same sort")]
    CursorSort(&'static str),
    #[error("sort must be asc or desc (got {0:?})")]
    Sort(String),
}

impl Cursor {
    pub fn encode(&self) -> String {
        let dir = match self.sort {
            Sort::Asc => 'a',
            Sort::Desc => 'd',
        };
        let raw = format!("{dir}{}|{}", self.created_at.timestamp_micros(), self.id);
        URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn decode(s: &str) -> Result<Self, PageError> {
        let raw = URL_SAFE_NO_PAD.decode(s).map_err(|_| PageError::Cursor)?;
        let raw = String::from_utf8(raw).map_err(|_| PageError::Cursor)?;
        let sort = match raw.chars().next() {
            Some('a') => Sort::Asc,
            Some('d') => Sort::Desc,
            _ => return Err(PageError::Cursor),
        };
        let (micros, id) = raw[1..].split_once('|').ok_or(PageError::Cursor)?;
        let micros: i64 = micros.parse().map_err(|_| PageError::Cursor)?;
        let created_at = DateTime::from_timestamp_micros(micros).ok_or(PageError::Cursor)?;
        // A cursor we issued names a stored row: a time PostgreSQL can hold (we never store
        // one outside years 1..=9999) and an id that passed our id checks. Anything else was
        // made up or edited, and must not reach the query.
        if !(1..=9999).contains(&created_at.year())
            || id.is_empty()
            || id.chars().count() > MAX_ID_LEN
            || id.chars().any(char::is_control)
        {
            return Err(PageError::Cursor);
        }
        Ok(Cursor {
            created_at,
            id: id.to_owned(),
            sort,
        })
    }
}

/// A validated page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub sort: Sort,
    pub after: Option<Cursor>,
}

impl PageRequest {
    /// Validates the raw query values: `limit` (default 50, 1..=1000), `sort`, `cursor`.
    pub fn new(limit: Option<i64>, sort: Sort, cursor: Option<&str>) -> Result<Self, PageError> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(l) if (1..=i64::from(MAX_LIMIT)).contains(&l) => l as u32,
            Some(l) => return Err(PageError::Limit(l)),
        };
        let after = cursor.map(Cursor::decode).transpose()?;
        if let Some(c) = &after {
            if c.sort != sort {
                return Err(PageError::CursorSort(if c.sort == Sort::Asc {
                    "asc"
                } else {
                    "desc"
                }));
            }
        }
        Ok(Self { limit, sort, after })
    }
}

/// One page of items with the cursor of the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched in order: the extra row only
    /// tells that another page exists.
    pub fn from_rows(
        mut rows: Vec<T>,
        req: &PageRequest,
        key: impl Fn(&T) -> (DateTime<Utc>, String),
    ) -> Self {
        let has_more = rows.len() > req.limit as usize;
        rows.truncate(req.limit as usize);
        let next_cursor = if has_more {
            rows.last().map(|last| {
                let (created_at, id) = key(last);
                Cursor {
                    created_at,
                    id,
                    sort: req.sort,
                }
                .encode()
            })
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }

    pub fn has_more(&self) -> bool {
        self.next_cursor.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn limits_are_bounded() {
        assert_eq!(
            PageRequest::new(None, Sort::Asc, None).map(|p| p.limit),
            Ok(50)
        );
        assert_eq!(
            PageRequest::new(Some(1000), Sort::Asc, None).map(|p| p.limit),
            Ok(1000)
        );
        assert_eq!(
            PageRequest::new(Some(0), Sort::Asc, None),
            Err(PageError::Limit(0))
        );
        assert_eq!(
            PageRequest::new(Some(1001), Sort::Asc, None),
            Err(PageError::Limit(1001))
        );
    }

    #[test]
    fn cursors_refuse_garbage_and_the_other_direction() {
        assert_eq!(Cursor::decode("!!"), Err(PageError::Cursor));
        assert_eq!(
            Cursor::decode(&URL_SAFE_NO_PAD.encode("x1|a")),
            Err(PageError::Cursor)
        );
        let c = Cursor {
            created_at: DateTime::from_timestamp_micros(5).expect("t"),
            id: "a".into(),
            sort: Sort::Desc,
        };
        assert_eq!(
            PageRequest::new(None, Sort::Asc, Some(&c.encode())),
            Err(PageError::CursorSort("desc"))
        );
    }

    #[test]
    fn cursors_that_could_not_name_a_stored_row_are_refused() {
        let made_up = |raw: &str| Cursor::decode(&URL_SAFE_NO_PAD.encode(raw));
        // Year 10000 and year 0 are beyond what we store (PostgreSQL would refuse the first
        // near its own limit, far beyond chrono's).
        assert_eq!(made_up("a253402300800000000|x"), Err(PageError::Cursor));
        assert_eq!(made_up("a-62135596800000001|x"), Err(PageError::Cursor));
        assert_eq!(made_up("a-9000000000000000000|x"), Err(PageError::Cursor));
        assert_eq!(made_up("a5|"), Err(PageError::Cursor));
        assert_eq!(made_up("a5|id\u{0}"), Err(PageError::Cursor));
        assert_eq!(
            made_up(&format!("a5|{}", "x".repeat(256))),
            Err(PageError::Cursor)
        );
        assert!(made_up("a5|ok").is_ok());
    }

    #[test]
    fn pages_know_when_more_follow() {
        let req = PageRequest::new(Some(2), Sort::Asc, None).expect("valid");
        let key = |i: &i64| {
            (
                DateTime::from_timestamp_micros(*i).expect("t"),
                i.to_string(),
            )
        };
        let page = Page::from_rows(vec![1, 2, 3], &req, key);
        assert_eq!(page.items, [1, 2]);
        let next = Cursor::decode(page.next_cursor.as_deref().expect("more")).expect("valid");
        assert_eq!(next.id, "2");
        let last = Page::from_rows(vec![3], &req, key);
        assert!(!last.has_more());
    }

    proptest! {
        #[test]
        fn cursors_round_trip(micros in -62_135_596_800_000_000i64..253_402_300_800_000_000i64, id in "[^\\p{Cc}]{1,40}", asc in any::<bool>()) {
            let created_at = DateTime::from_timestamp_micros(micros).expect("in range");
            let c = Cursor { created_at, id, sort: if asc { Sort::Asc } else { Sort::Desc } };
            prop_assert_eq!(Cursor::decode(&c.encode()), Ok(c));
        }
    }
}
