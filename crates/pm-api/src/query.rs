//! Query-string parsing with errors that name the parameter. Unknown parameters are
//! refused, so a typo (`?stauts=won`) is an error rather than a silently unfiltered list.

use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use pm_domain::pagination::{PageError, PageRequest, Sort};
use pm_http::Problem;

/// Most ids one list request may filter on: the filter is one `= ANY(…)` over an index, and
/// a caller with more pages through the list instead.
pub(crate) const MAX_IDS: usize = 100;

/// The parameters of one request, consumed as they are read.
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn new(raw: Option<&str>) -> Self {
        Params(
            form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// Parameters already decoded (the admin UI's filter forms).
    pub(crate) fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Params(pairs)
    }

    fn bad(name: &str, message: impl std::fmt::Display) -> Problem {
        let mut p = Problem::bad_request(format!("query parameter `{name}`: {message}"));
        p.kind = "/problems/invalid-query".to_owned();
        p
    }

    /// Every value of a repeatable parameter.
    pub(crate) fn all<T: FromStr>(&mut self, name: &str) -> Result<Vec<T>, Problem>
    where
        T::Err: std::fmt::Display,
    {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.0)
            .into_iter()
            .partition(|(k, _)| k == name);
        self.0 = rest;
        mine.into_iter()
            .map(|(_, v)| v.parse::<T>().map_err(|e| Self::bad(name, e)))
            .collect()
    }

    /// At most one value.
    pub(crate) fn one<T: FromStr>(&mut self, name: &str) -> Result<Option<T>, Problem>
    where
        T::Err: std::fmt::Display,
    {
        let mut values = self.all::<T>(name)?;
        match values.len() {
            0 | 1 => Ok(values.pop()),
            _ => Err(Self::bad(name, "may be given only once")),
        }
    }

    /// At most one non-empty value without control characters (NUL included: PostgreSQL
    /// text cannot hold it, and nothing we filter on contains one).
    pub(crate) fn text(&mut self, name: &str) -> Result<Option<String>, Problem> {
        let value = self.one::<String>(name)?;
        match value {
            Some(v) if v.is_empty() => Err(Self::bad(name, "must not be empty")),
            Some(v) if v.chars().any(char::is_control) => {
                Err(Self::bad(name, "must not contain control characters"))
            }
            v => Ok(v),
        }
    }

    /// At most one UTC day, `YYYY-MM-DD`, in years 1–9999.
    pub(crate) fn day(&mut self, name: &str) -> Result<Option<NaiveDate>, Problem> {
        self.text(name)?
            .map(|v| {
                NaiveDate::parse_from_str(&v, "%Y-%m-%d")
                    .ok()
                    // `%Y` also takes signs and more digits; a day is written one way.
                    .filter(|d| (1..=9999).contains(&d.year()) && d.to_string() == v)
                    .ok_or_else(|| {
                        Self::bad(
                            name,
                            format!("must be a day such as 2026-01-31 (got {v:?})"),
                        )
                    })
            })
            .transpose()
    }

    pub(crate) fn time(&mut self, name: &str) -> Result<Option<DateTime<Utc>>, Problem> {
        self.text(name)?
            .map(|v| pm_domain::time::parse_rfc3339(&v).map_err(|e| Self::bad(name, e)))
            .transpose()
    }

    /// Ids to filter on, given as a repeatable `single` parameter (`order_id=a&order_id=b`)
    /// and/or a comma-separated `plural` one (`order_ids=a,b`, the original API's
    /// spelling); each parsed with `parse`, duplicates dropped, at most [`MAX_IDS`].
    pub(crate) fn ids<T: PartialEq, E: std::fmt::Display>(
        &mut self,
        single: &str,
        plural: &str,
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> Result<Vec<T>, Problem> {
        let mut raw: Vec<(&str, String)> = self
            .all::<String>(single)?
            .into_iter()
            .map(|id| (single, id))
            .collect();
        for list in self.all::<String>(plural)? {
            raw.extend(list.split(',').map(|id| (plural, id.to_owned())));
        }
        let mut ids = Vec::with_capacity(raw.len());
        for (name, id) in raw {
            if id.is_empty() {
                return Err(Self::bad(name, "an id must not be empty"));
            }
            if id.chars().any(char::is_control) {
                return Err(Self::bad(name, "must not contain control characters"));
            }
            let id = parse(&id).map_err(|e| Self::bad(name, e))?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        if ids.len() > MAX_IDS {
            return Err(Self::bad(
                single,
                format!("at most {MAX_IDS} ids at once (got {})", ids.len()),
            ));
        }
        Ok(ids)
    }

    /// At most one number, within `range`.
    pub(crate) fn number_in<T>(
        &mut self,
        name: &str,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<Option<T>, Problem>
    where
        T: FromStr + PartialOrd + std::fmt::Display,
        T::Err: std::fmt::Display,
    {
        match self.one::<T>(name)? {
            Some(v) if !range.contains(&v) => Err(Self::bad(
                name,
                format!(
                    "must be from {} to {} (got {v})",
                    range.start(),
                    range.end()
                ),
            )),
            v => Ok(v),
        }
    }

    pub(crate) fn flag(&mut self, name: &str) -> Result<Option<bool>, Problem> {
        self.text(name)?
            .map(|v| match v.as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(Self::bad(
                    name,
                    format!("must be true or false (got {v:?})"),
                )),
            })
            .transpose()
    }

    /// `limit`, `sort` and `cursor`.
    pub(crate) fn page(&mut self, default_sort: Sort) -> Result<PageRequest, Problem> {
        let limit = self.one::<i64>("limit")?;
        let sort = self.one::<Sort>("sort")?.unwrap_or(default_sort);
        let cursor = self.text("cursor")?;
        PageRequest::new(limit, sort, cursor.as_deref()).map_err(|e| {
            let name = match e {
                PageError::Limit(_) => "limit",
                PageError::Sort(_) => "sort",
                PageError::Cursor | PageError::CursorSort(_) => "cursor",
            };
            Self::bad(name, e)
        })
    }

    /// Refuses whatever was not read.
    pub(crate) fn finish(self) -> Result<(), Problem> {
        match self.0.first() {
            None => Ok(()),
            Some((k, _)) => Err(Self::bad(k, "is not a parameter of this route")),
        }
    }
}

/// Checks that `from < to` when both are given (times, or days).
pub(crate) fn check_window<T: PartialOrd>(
    from: Option<T>,
    to: Option<T>,
    names: (&str, &str),
) -> Result<(), Problem> {
    match (from, to) {
        (Some(f), Some(t)) if f >= t => Err(Problem::bad_request(format!(
            "`{}` must be earlier than `{}`",
            names.0, names.1
        ))),
        _ => Ok(()),
    }
}
