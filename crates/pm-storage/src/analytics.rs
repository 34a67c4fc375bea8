//! The analytics projection: read models in the `analytics` schema, built from the domain
//! events of `domain-events` (migration `…_analytics.sql`), and the reads over them.
//!
//! The topic delivers at least once — a relay that crashed before marking its events
//! publishes them again, and a consumer that crashed before committing its offset reads
//! them again — so the effect is made exactly once here: [`apply`] inserts the event's
//! `analytics.inbox` row first (`ON CONFLICT DO NOTHING`) and changes the read models only
//! when that row is new, all in one transaction. A duplicate finds the row and changes
//! nothing; a failure rolls the row back with the rest, so the event is applied when it
//! comes again. Events of a type or version this build does not know are recorded as
//! skipped, so a replay skips them again; a later build that knows them projects them when
//! it reads them (a replay from the topic's start), once, and marks their row projected.

use chrono::{DateTime, NaiveDate, Utc};
use pm_domain::domain_event::incoming::{
    Content, DisputeDecided, EventData, IncomingEvent, OrderCaptureFailed, OrderCaptured,
};
use pm_domain::money::Money;
use pm_domain::Currency;
use sqlx::{PgConnection, PgPool};

use crate::statement;
use crate::StorageError;

/// What [`apply`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// New: the read models took it.
    Projected,
    /// Seen before (a redelivery or a replay): nothing changed.
    Duplicate,
    /// New, but of a type or schema version the projection does not know: recorded, so a
    /// replay skips it too, and otherwise ignored.
    Skipped,
}

impl Applied {
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Projected => "projected",
            Applied::Duplicate => "duplicate",
            Applied::Skipped => "skipped",
        }
    }
}

/// Applies one event in a transaction of its own: its inbox row and its effect on the read
/// models commit together, or neither does.
pub async fn apply(pool: &PgPool, event: &IncomingEvent) -> Result<Applied, StorageError> {
    let mut tx = crate::db::begin(pool).await?;
    let applied = apply_on(&mut tx, event).await?;
    tx.commit().await?;
    Ok(applied)
}

/// [`apply`] inside the caller's transaction.
pub async fn apply_on(
    conn: &mut PgConnection,
    event: &IncomingEvent,
) -> Result<Applied, StorageError> {
    let outcome = match event.content() {
        Content::Known(_) => Applied::Projected,
        Content::Unsupported { .. } => Applied::Skipped,
    };
    // A row that exists means the event was handled before — unless it was skipped by a
    // build that did not know it and this one does: then it is taken over (under the row's
    // lock, so two consumers cannot both take it) and projected now.
    let statement = sqlx::query(
        "INSERT INTO analytics.inbox AS i (event_id, event_type, schema_version, aggregate_type,
                                           aggregate_id, sequence, outcome, processed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, now())
         ON CONFLICT (event_id) DO UPDATE
             SET event_type = EXCLUDED.event_type, schema_version = EXCLUDED.schema_version,
                 aggregate_type = EXCLUDED.aggregate_type, outcome = EXCLUDED.outcome,
                 processed_at = EXCLUDED.processed_at
             WHERE i.outcome = 'skipped' AND EXCLUDED.outcome = 'projected'",
    )
    .bind(event.event_id())
    .bind(event.event_type_name())
    .bind(event.schema_version())
    .bind(event.aggregate_type())
    .bind(event.aggregate_id())
    .bind(event.sequence())
    .bind(outcome.as_str())
    .execute(&mut *conn);
    if statement::run("INSERT", "analytics.inbox", statement)
        .await?
        .rows_affected()
        == 0
    {
        return Ok(Applied::Duplicate);
    }
    if let Content::Known(data) = event.content() {
        project(conn, data, event.occurred_at()).await?;
    }
    Ok(outcome)
}

/// The UTC day of a time.
fn day(t: DateTime<Utc>) -> NaiveDate {
    t.date_naive()
}

async fn project(
    conn: &mut PgConnection,
    data: &EventData,
    occurred_at: DateTime<Utc>,
) -> Result<(), StorageError> {
    match data {
        EventData::OrderCreated(_) => {
            let statement = sqlx::query(
                "INSERT INTO analytics.orders_daily AS o (day, orders_created) VALUES ($1, 1)
                 ON CONFLICT (day) DO UPDATE SET orders_created = o.orders_created + 1",
            )
            .bind(day(occurred_at))
            .execute(conn);
            statement::run("INSERT", "analytics.orders_daily", statement).await?;
        }
        EventData::OrderCaptured(OrderCaptured { money, .. }) => {
            capture(conn, day(occurred_at), money, true).await?;
        }
        EventData::OrderCaptureFailed(OrderCaptureFailed { money, .. }) => {
            capture(conn, day(occurred_at), money, false).await?;
        }
        EventData::DisputeWon(d) => decision(conn, d, "won", occurred_at).await?,
        EventData::DisputeLost(d) => decision(conn, d, "lost", occurred_at).await?,
        // Events no read model here is about: recorded in the inbox only.
        EventData::DisputeOpened(_) | EventData::Other(..) => {}
    }
    Ok(())
}

async fn capture(
    conn: &mut PgConnection,
    day: NaiveDate,
    money: &Money,
    captured: bool,
) -> Result<(), StorageError> {
    let minor = money.minor_units();
    let currency = money.currency();
    let (captured, captured_minor, failed, failed_minor) = if captured {
        (1_i64, minor, 0_i64, 0_i64)
    } else {
        (0, 0, 1, minor)
    };
    let statement = sqlx::query(
        "INSERT INTO analytics.captures_daily AS c
             (day, currency, captured, captured_minor, failed, failed_minor)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (day, currency) DO UPDATE SET
             captured = c.captured + EXCLUDED.captured,
             captured_minor = c.captured_minor + EXCLUDED.captured_minor,
             failed = c.failed + EXCLUDED.failed,
             failed_minor = c.failed_minor + EXCLUDED.failed_minor",
    )
    .bind(day)
    .bind(currency.code())
    .bind(captured)
    .bind(captured_minor)
    .bind(failed)
    .bind(failed_minor)
    .execute(conn);
    statement::run("INSERT", "analytics.captures_daily", statement).await?;
    Ok(())
}

/// A dispute's decision: its row (or, for a repeated decision, an earlier `opened_at`), and
/// its reason's outcome count when the row is new — so each dispute counts once.
async fn decision(
    conn: &mut PgConnection,
    d: &DisputeDecided,
    outcome: &'static str,
    occurred_at: DateTime<Utc>,
) -> Result<(), StorageError> {
    // The provider's closing time; the event's own time only if it had none.
    let decided_at = d.closed_at.unwrap_or(occurred_at);
    let statement = sqlx::query(
        "WITH decision AS (
             INSERT INTO analytics.dispute_decisions AS d
                 (dispute_id, reason, outcome, opened_at, decided_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (dispute_id) DO UPDATE SET opened_at = LEAST(d.opened_at, EXCLUDED.opened_at)
             RETURNING (xmax = 0) AS inserted
         )
         INSERT INTO analytics.dispute_outcomes AS o (day, reason, won, lost)
         SELECT $6, $2, CASE WHEN $3 = 'won' THEN 1 ELSE 0 END, CASE WHEN $3 = 'lost' THEN 1 ELSE 0 END
         FROM decision WHERE inserted
         ON CONFLICT (day, reason) DO UPDATE SET won = o.won + EXCLUDED.won, lost = o.lost + EXCLUDED.lost",
    )
    .bind(d.dispute_id.as_uuid())
    .bind(&d.reason)
    .bind(outcome)
    .bind(d.opened_at)
    .bind(decided_at)
    .bind(day(decided_at))
    .execute(conn);
    statement::run("INSERT", "analytics.dispute_decisions", statement).await?;
    Ok(())
}

/// UTC days `[from, to)`; an open end is unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Days {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

/// Orders created on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderDay {
    pub day: NaiveDate,
    pub orders_created: i64,
}

/// Captures of one currency on one day, in its minor units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureDay {
    pub day: NaiveDate,
    pub currency: Currency,
    pub captured: i64,
    pub captured_minor: i64,
    pub failed: i64,
    pub failed_minor: i64,
}

/// Decided disputes of one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonOutcomes {
    pub reason: String,
    pub won: i64,
    pub lost: i64,
}

impl ReasonOutcomes {
    /// Won of decided. A reason is listed only once a dispute of it was decided, so there
    /// is always at least one.
    pub fn win_rate(&self) -> f64 {
        self.won as f64 / (self.won + self.lost).max(1) as f64
    }
}

/// Time from a dispute's opening to its decision, over the decided disputes, in seconds;
/// `None` when there are none.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionTimes {
    pub count: i64,
    pub mean_seconds: Option<f64>,
    pub p50_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
}

/// What the inbox holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxCounts {
    pub projected: i64,
    pub skipped: i64,
}

/// Orders created per day, oldest first.
pub async fn order_days(pool: &PgPool, days: Days) -> Result<Vec<OrderDay>, StorageError> {
    let statement = sqlx::query_as::<_, (NaiveDate, i64)>(
        "SELECT day, orders_created FROM analytics.orders_daily
         WHERE ($1::date IS NULL OR day >= $1) AND ($2::date IS NULL OR day < $2)
         ORDER BY day",
    )
    .bind(days.from)
    .bind(days.to)
    .fetch_all(pool);
    let rows = statement::run("SELECT", "analytics.orders_daily", statement).await?;
    Ok(rows
        .into_iter()
        .map(|(day, orders_created)| OrderDay {
            day,
            orders_created,
        })
        .collect())
}

/// Captures per day and currency, oldest first, currencies in code order.
pub async fn capture_days(pool: &PgPool, days: Days) -> Result<Vec<CaptureDay>, StorageError> {
    let statement = sqlx::query_as::<_, (NaiveDate, String, i64, i64, i64, i64)>(
        "SELECT day, currency::text, captured, captured_minor, failed, failed_minor
         FROM analytics.captures_daily
         WHERE ($1::date IS NULL OR day >= $1) AND ($2::date IS NULL OR day < $2)
         ORDER BY day, currency",
    )
    .bind(days.from)
    .bind(days.to)
    .fetch_all(pool);
    let rows = statement::run("SELECT", "analytics.captures_daily", statement).await?;
    rows.into_iter()
        .map(
            |(day, currency, captured, captured_minor, failed, failed_minor)| {
                Ok(CaptureDay {
                    day,
                    currency: Currency::parse(&currency)
                        .map_err(|_| StorageError::corrupt("captures_daily.currency", &currency))?,
                    captured,
                    captured_minor,
                    failed,
                    failed_minor,
                })
            },
        )
        .collect()
}

/// Decisions per reason over the days of the decisions, most decided first.
pub async fn dispute_outcomes(
    pool: &PgPool,
    days: Days,
) -> Result<Vec<ReasonOutcomes>, StorageError> {
    let statement = sqlx::query_as::<_, (String, i64, i64)>(
        "SELECT reason, sum(won)::bigint, sum(lost)::bigint FROM analytics.dispute_outcomes
         WHERE ($1::date IS NULL OR day >= $1) AND ($2::date IS NULL OR day < $2)
         GROUP BY reason
         ORDER BY sum(won) + sum(lost) DESC, reason",
    )
    .bind(days.from)
    .bind(days.to)
    .fetch_all(pool);
    let rows = statement::run("SELECT", "analytics.dispute_outcomes", statement).await?;
    Ok(rows
        .into_iter()
        .map(|(reason, won, lost)| ReasonOutcomes { reason, won, lost })
        .collect())
}

/// Time to decision of the disputes decided on the given days.
pub async fn decision_times(pool: &PgPool, days: Days) -> Result<DecisionTimes, StorageError> {
    let statement = sqlx::query_as::<_, (i64, Option<f64>, Option<f64>, Option<f64>)>(
        "WITH t AS (
             SELECT extract(epoch FROM decided_at - opened_at)::float8 AS seconds
             FROM analytics.dispute_decisions
             WHERE ($1::date IS NULL OR decided_at >= $1::date::timestamptz)
               AND ($2::date IS NULL OR decided_at < $2::date::timestamptz)
         )
         SELECT count(*), avg(seconds),
                percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds),
                percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds)
         FROM t",
    )
    .bind(days.from)
    .bind(days.to)
    .fetch_one(pool);
    let (count, mean_seconds, p50_seconds, p90_seconds) =
        statement::run("SELECT", "analytics.dispute_decisions", statement).await?;
    Ok(DecisionTimes {
        count,
        mean_seconds,
        p50_seconds,
        p90_seconds,
    })
}

/// How many events the inbox holds, by outcome.
pub async fn inbox_counts(pool: &PgPool) -> Result<InboxCounts, StorageError> {
    let statement = sqlx::query_as::<_, (i64, i64)>(
        "SELECT count(*) FILTER (WHERE outcome = 'projected'),
                count(*) FILTER (WHERE outcome = 'skipped')
         FROM analytics.inbox",
    )
    .fetch_one(pool);
    let (projected, skipped) = statement::run("SELECT", "analytics.inbox", statement).await?;
    Ok(InboxCounts { projected, skipped })
}
