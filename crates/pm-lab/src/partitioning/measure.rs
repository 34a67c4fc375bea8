//! Running each query repeatedly on each layout and summarising the runs.

use serde_json::Value;
use sqlx::PgConnection;

use super::explain::{self, Explained};
use super::queries::{self, Params, QueryId};
use super::{Layout, LayoutResult, Progress, QueryResult, Ratios, Stage};
use crate::LabError;

/// `TIMING OFF`: per-node timing calls a clock twice per row, which inflates the sequential
/// scan of millions of rows far more than an index scan of thousands; the statement's total
/// time is still reported.
const EXPLAIN: &str = "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, FORMAT JSON)";

/// Measures every query; `runs` measured runs after one first (warm-up) run each.
pub(crate) async fn all(
    conn: &mut PgConnection,
    params: &Params,
    runs: u32,
    partitions_total: usize,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<Vec<QueryResult>, LabError> {
    let cursors = queries::cursors(conn, params).await?;
    let total = (QueryId::ALL.len() * Layout::ALL.len()) as u64 * u64::from(runs + 1);
    let mut done = 0;
    let mut results = Vec::new();
    for id in QueryId::ALL {
        // Rounds interleave the layouts, so a drift of the machine (another process, the
        // kernel's cache) hits all of them alike.
        let mut samples: Vec<Vec<Explained>> = vec![Vec::new(); Layout::ALL.len()];
        let mut plans: Vec<Value> = vec![Value::Null; Layout::ALL.len()];
        for _round in 0..=runs {
            for (i, layout) in Layout::ALL.into_iter().enumerate() {
                // Nothing measured yet: zero candidates, not unknown.
                let mut run = Explained {
                    events_rows: Some(0),
                    ..Explained::default()
                };
                for (n, sql) in queries::statements(id, layout, params, &cursors)
                    .into_iter()
                    .enumerate()
                {
                    let doc: Value = sqlx::query_scalar(&format!("{EXPLAIN} {sql}"))
                        .persistent(false)
                        .fetch_one(&mut *conn)
                        .await?;
                    run.absorb(explain::parse(&doc)?);
                    if n == 0 {
                        if let Some(slot) = plans.get_mut(i) {
                            *slot = doc;
                        }
                    }
                }
                if let Some(list) = samples.get_mut(i) {
                    list.push(run);
                }
                done += 1;
                progress(Progress {
                    stage: Stage::Queries,
                    done,
                    total,
                });
            }
        }
        let layouts = Layout::ALL
            .into_iter()
            .zip(samples)
            .zip(plans)
            .map(|((layout, runs), plan)| {
                summarise(
                    layout,
                    &runs,
                    plan,
                    if layout.is_partitioned() {
                        partitions_total
                    } else {
                        1
                    },
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        check_rows(id, &layouts)?;
        results.push(QueryResult {
            id,
            title: id.short().to_owned(),
            description: params.describe(id),
            statements_per_run: queries::statements(id, Layout::Plain, params, &cursors).len(),
            sql: queries::statements(id, Layout::Indexed, params, &cursors)
                .into_iter()
                .next()
                .unwrap_or_default(),
            ratios: Ratios::of(&layouts),
            layouts,
        });
    }
    Ok(results)
}

/// Every layout must return the same rows, or the comparison is void.
fn check_rows(id: QueryId, layouts: &[LayoutResult]) -> Result<(), LabError> {
    let first = layouts.first().map(|l| l.rows);
    if layouts.iter().all(|l| Some(l.rows) == first) {
        return Ok(());
    }
    Err(LabError::RowCountMismatch {
        query: id.short().to_owned(),
        counts: layouts
            .iter()
            .map(|l| format!("{} {}", l.layout.schema(), l.rows))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

fn summarise(
    layout: Layout,
    runs: &[Explained],
    plan: Value,
    partitions_total: usize,
) -> Result<LayoutResult, LabError> {
    let (first, measured) = runs
        .split_first()
        .ok_or_else(|| LabError::Invalid("no runs".into()))?;
    let measured = if measured.is_empty() {
        std::slice::from_ref(first)
    } else {
        measured
    };
    // A run that returns different rows than another on the same layout means the data
    // changed under the benchmark.
    if let Some(odd) = runs.iter().find(|r| r.rows != first.rows) {
        return Err(LabError::RowCountMismatch {
            query: format!("{} (between runs)", layout.schema()),
            counts: format!("{} vs {}", first.rows, odd.rows),
        });
    }
    let mut times: Vec<f64> = measured.iter().map(|r| r.execution_ms).collect();
    times.sort_by(f64::total_cmp);
    let mut pages: Vec<u64> = measured.iter().map(Explained::pages).collect();
    pages.sort_unstable();
    let mut reads: Vec<u64> = measured.iter().map(|r| r.shared_read).collect();
    reads.sort_unstable();
    let mut events_pages: Vec<u64> = measured.iter().map(|r| r.events_pages).collect();
    events_pages.sort_unstable();
    let last = measured.last().unwrap_or(first);
    let scanned: Vec<String> = last.scanned.iter().cloned().collect();
    Ok(LayoutResult {
        layout,
        rows: first.rows,
        candidate_rows: last.events_rows,
        first_ms: first.execution_ms,
        first_pages: first.pages(),
        median_ms: median_f64(&times),
        p95_ms: nearest_rank(&times, 0.95).unwrap_or(0.0),
        min_ms: times.first().copied().unwrap_or(0.0),
        max_ms: times.last().copied().unwrap_or(0.0),
        pages: median_u64(&pages),
        pages_read: median_u64(&reads),
        events_pages: median_u64(&events_pages),
        partitions_scanned: scanned.len(),
        partitions_total,
        pruned: layout.is_partitioned() && scanned.len() < partitions_total,
        scanned,
        plan_shape: last.shape.clone(),
        plan,
    })
}

/// The median; the mean of the middle two for an even count.
pub(crate) fn median_f64(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted.get(n / 2).copied().unwrap_or(0.0),
        _ => {
            let a = sorted.get(n / 2 - 1).copied().unwrap_or(0.0);
            let b = sorted.get(n / 2).copied().unwrap_or(0.0);
            (a + b) / 2.0
        }
    }
}

fn median_u64(sorted: &[u64]) -> u64 {
    let as_f: Vec<f64> = sorted.iter().map(|&v| v as f64).collect();
    median_f64(&as_f).round() as u64
}

/// The nearest-rank percentile (of 7 runs, p95 is the slowest).
pub(crate) fn nearest_rank(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median_f64(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median_f64(&[1.0, 2.0, 4.0, 9.0]), 3.0);
        assert_eq!(
            nearest_rank(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], 0.95),
            Some(7.0)
        );
        assert_eq!(nearest_rank(&[1.0, 2.0], 0.5), Some(1.0));
        assert_eq!(nearest_rank(&[], 0.5), None);
    }
}
