//! The measured queries. Values are written into the SQL as literals, as the original
//! experiment did in psql: with bind parameters PostgreSQL may switch to a generic plan after
//! a few executions, and a generic plan prunes partitions only at run time — a different
//! experiment.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use super::schema::DATA_SCHEMA;
use super::Layout;
use crate::LabError;

/// The queries, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryId {
    /// The original: `evidence_added` events of `lost` + `fraud` disputes in a 5-day window.
    Window5d,
    /// The same over one day.
    Window1d,
    /// The same over 30 days (nearly everything: what partitioning costs when it cannot prune).
    Window30d,
    /// One dispute's full history (no time filter: every partition is searched).
    DisputeHistory,
    /// Keyset pagination through one day, page by page, following the cursor.
    DayPagination,
}

impl QueryId {
    /// Every query, in report order.
    pub const ALL: [QueryId; 5] = [
        QueryId::Window5d,
        QueryId::Window1d,
        QueryId::Window30d,
        QueryId::DisputeHistory,
        QueryId::DayPagination,
    ];

    /// A short name for tables and charts.
    pub fn short(self) -> &'static str {
        match self {
            QueryId::Window5d => "5-day window",
            QueryId::Window1d => "1-day window",
            QueryId::Window30d => "30-day window",
            QueryId::DisputeHistory => "dispute history",
            QueryId::DayPagination => "day pagination",
        }
    }
}

/// Where the windows and the other parameters fall in the generated period.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub(crate) period_start: DateTime<Utc>,
    pub(crate) days: u32,
    pub(crate) page_size: u32,
    /// The dispute whose history is read.
    pub(crate) dispute_id: String,
}

impl Params {
    /// A window of `len` whole days centred in the period (clamped to the period), so the
    /// partitioned layout can prune to exactly `len` partitions.
    pub(crate) fn window(&self, len: u32) -> (DateTime<Utc>, DateTime<Utc>) {
        let len = len.min(self.days);
        let first = (self.days - len) / 2;
        let from = self.period_start + Duration::days(i64::from(first));
        (from, from + Duration::days(i64::from(len)))
    }

    /// The day the pagination walks through: the middle one.
    pub(crate) fn pagination_day(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        self.window(1)
    }

    /// What the query reads, for the report.
    pub(crate) fn describe(&self, id: QueryId) -> String {
        let day = |t: DateTime<Utc>| t.format("%Y-%m-%d").to_string();
        let span =
            |(from, to): (DateTime<Utc>, DateTime<Utc>)| format!("[{}, {})", day(from), day(to));
        match id {
            QueryId::Window5d => format!("kind = 'evidence_added', created_at in {}, disputes lost + fraud", span(self.window(5))),
            QueryId::Window1d => format!("kind = 'evidence_added', created_at in {}, disputes lost + fraud", span(self.window(1))),
            QueryId::Window30d => format!("kind = 'evidence_added', created_at in {}, disputes lost + fraud", span(self.window(30))),
            QueryId::DisputeHistory => format!("dispute_id = {} ORDER BY created_at", self.dispute_id),
            QueryId::DayPagination => format!(
                "created_at in {}, ORDER BY created_at, event_id LIMIT {}, every page following the cursor",
                span(self.pagination_day()),
                self.page_size
            ),
        }
    }
}

fn literal(t: DateTime<Utc>) -> String {
    format!("'{}'::timestamptz", t.format("%Y-%m-%d %H:%M:%S%.6f+00"))
}

/// The original query over `window`.
fn window_sql(layout: Layout, (from, to): (DateTime<Utc>, DateTime<Utc>)) -> String {
    format!(
        "SELECT e.event_id, e.dispute_id, e.created_at, d.amount, d.currency
         FROM {events} e
         JOIN {DATA_SCHEMA}.disputes d ON d.dispute_id = e.dispute_id
         WHERE e.kind = 'evidence_added'
           AND e.created_at >= {from} AND e.created_at < {to}
           AND d.status = 'lost' AND d.reason = 'fraud'",
        events = layout.table(),
        from = literal(from),
        to = literal(to),
    )
}

/// One page of the walk through a day; `cursor` is the last `(created_at, event_id)` of the
/// previous page, as text.
fn page_sql(
    layout: Layout,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    cursor: Option<&(String, String)>,
    page_size: u32,
) -> String {
    let after = cursor.map_or(String::new(), |(t, id)| {
        format!("AND (created_at, event_id) > ('{t}'::timestamptz, '{id}'::uuid)")
    });
    format!(
        "SELECT event_id, dispute_id, kind, provider_event_id, data, created_at
         FROM {events}
         WHERE created_at >= {from} AND created_at < {to} {after}
         ORDER BY created_at, event_id
         LIMIT {page_size}",
        events = layout.table(),
        from = literal(from),
        to = literal(to),
    )
}

/// The statements one run of `id` executes on `layout`: one, or one per page.
pub(crate) fn statements(
    id: QueryId,
    layout: Layout,
    params: &Params,
    cursors: &[(String, String)],
) -> Vec<String> {
    match id {
        QueryId::Window5d => vec![window_sql(layout, params.window(5))],
        QueryId::Window1d => vec![window_sql(layout, params.window(1))],
        QueryId::Window30d => vec![window_sql(layout, params.window(30))],
        QueryId::DisputeHistory => vec![format!(
            "SELECT event_id, kind, provider_event_id, data, created_at
             FROM {events} WHERE dispute_id = '{id}'::uuid ORDER BY created_at",
            events = layout.table(),
            id = params.dispute_id,
        )],
        QueryId::DayPagination => {
            let day = params.pagination_day();
            std::iter::once(None)
                .chain(cursors.iter().map(Some))
                .map(|cursor| page_sql(layout, day, cursor, params.page_size))
                .collect()
        }
    }
}

/// The cursors a client would receive walking through the pagination day: the last row of
/// every full page. Computed once, unmeasured (the layouts hold the same rows, so they are
/// the same for all).
pub(crate) async fn cursors(
    conn: &mut PgConnection,
    params: &Params,
) -> Result<Vec<(String, String)>, LabError> {
    let (from, to) = params.pagination_day();
    let rows = sqlx::query_as(&format!(
        "SELECT created_at::text, event_id::text FROM (
             SELECT created_at, event_id, row_number() OVER (ORDER BY created_at, event_id) AS rn
             FROM {events} WHERE created_at >= {from} AND created_at < {to}) x
         WHERE rn % {size} = 0 ORDER BY rn",
        events = Layout::Indexed.table(),
        from = literal(from),
        to = literal(to),
        size = params.page_size,
    ))
    .persistent(false)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn params(days: u32) -> Params {
        Params {
            period_start: Utc
                .with_ymd_and_hms(2026, 10, 25, 0, 0, 0)
                .single()
                .expect("valid"),
            days,
            page_size: 1000,
            dispute_id: "00000000-0000-0000-0000-000000000001".into(),
        }
    }

    #[test]
    fn windows_are_whole_days_centred_in_the_period() {
        let p = params(31);
        let (from, to) = p.window(5);
        assert_eq!(from.to_rfc3339(), "2026-11-07T00:00:00+00:00");
        assert_eq!(to - from, Duration::days(5));
        assert_eq!(p.window(30).0, p.period_start);
        let small = params(6);
        assert_eq!(
            small.window(30),
            (small.period_start, small.period_start + Duration::days(6))
        );
    }

    #[test]
    fn pagination_follows_every_cursor() {
        let cursors = vec![(
            "2026-11-09 00:01:00+00".to_owned(),
            "00000000-0000-0000-0000-000000000002".to_owned(),
        )];
        let sql = statements(QueryId::DayPagination, Layout::Plain, &params(31), &cursors);
        assert_eq!(sql.len(), 2);
        assert!(!sql[0].contains("(created_at, event_id) >"));
        assert!(sql[1].contains("'2026-11-09 00:01:00+00'::timestamptz"));
        assert!(sql[1].contains("bench_plain.dispute_events"));
    }
}
