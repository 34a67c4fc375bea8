//! Reading `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` output: time, pages, rows, and which
//! partitions were scanned.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::LabError;

/// The events table's name; partitions are named `dispute_events_p…` and `dispute_events_default`.
const EVENTS_TABLE: &str = "dispute_events";

/// What one statement cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Explained {
    pub(crate) execution_ms: f64,
    /// Shared buffers found in PostgreSQL's cache, over the whole plan (a node's counts
    /// include its children's, so the top node's are the statement's).
    pub(crate) shared_hit: u64,
    /// Shared buffers read from the kernel (its page cache or the disk).
    pub(crate) shared_read: u64,
    /// The part of hit + read spent in scans of `dispute_events` (or its partitions); the
    /// rest is the joined disputes and the like.
    pub(crate) events_pages: u64,
    /// Rows the statement returned.
    pub(crate) rows: u64,
    /// Rows the scans of `dispute_events` produced (the join's candidates); `None` when a
    /// scan ran in a loop (the inner side of a nested loop): PostgreSQL before 18 rounds
    /// rows per loop to an integer, so rows × loops is not a count.
    pub(crate) events_rows: Option<u64>,
    /// Names of the `dispute_events` relations (the table or its partitions) scanned.
    pub(crate) scanned: BTreeSet<String>,
    /// A compact outline of the plan, e.g. `Hash Join(5× Bitmap Heap Scan on dispute_events_p*, …)`.
    pub(crate) shape: String,
}

impl Explained {
    /// Pages touched: shared hit + read.
    pub(crate) fn pages(&self) -> u64 {
        self.shared_hit + self.shared_read
    }

    /// Adds another statement's costs (the pages of a paginated walk add up).
    pub(crate) fn absorb(&mut self, other: Explained) {
        self.execution_ms += other.execution_ms;
        self.shared_hit += other.shared_hit;
        self.shared_read += other.shared_read;
        self.events_pages += other.events_pages;
        self.rows += other.rows;
        self.events_rows = self.events_rows.zip(other.events_rows).map(|(a, b)| a + b);
        self.scanned.extend(other.scanned);
        if self.shape.is_empty() {
            self.shape = other.shape;
        }
    }
}

/// Parses the JSON document of one `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`.
pub(crate) fn parse(doc: &Value) -> Result<Explained, LabError> {
    let top = doc
        .get(0)
        .ok_or_else(|| LabError::Explain("not a one-element array".into()))?;
    let plan = top
        .get("Plan")
        .ok_or_else(|| LabError::Explain("no \"Plan\"".into()))?;
    let execution_ms = top
        .get("Execution Time")
        .and_then(Value::as_f64)
        .ok_or_else(|| LabError::Explain("no \"Execution Time\" (was ANALYZE on?)".into()))?;
    let mut out = Explained {
        execution_ms,
        shared_hit: count(plan, "Shared Hit Blocks"),
        shared_read: count(plan, "Shared Read Blocks"),
        rows: rows(plan),
        events_rows: Some(0),
        shape: shape(plan),
        ..Explained::default()
    };
    walk_events(plan, &mut out);
    Ok(out)
}

fn count(node: &Value, key: &str) -> u64 {
    node.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// Rows produced by a node over all its loops. JSON gives per-loop averages as numbers
/// that may be fractional in newer versions.
fn rows(node: &Value) -> u64 {
    let per_loop = node
        .get("Actual Rows")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let loops = node
        .get("Actual Loops")
        .and_then(Value::as_f64)
        .unwrap_or(1.0);
    (per_loop * loops).round() as u64
}

fn children(node: &Value) -> impl Iterator<Item = &Value> {
    node.get("Plans")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn events_relation(node: &Value) -> Option<&str> {
    node.get("Relation Name")
        .and_then(Value::as_str)
        .filter(|name| name.starts_with(EVENTS_TABLE))
}

/// Adds the scans of the events table: their pages (a scan node's counts include its bitmap
/// index children), their rows and their relation names.
fn walk_events(node: &Value, out: &mut Explained) {
    if let Some(relation) = events_relation(node) {
        out.events_pages += count(node, "Shared Hit Blocks") + count(node, "Shared Read Blocks");
        let looped = node
            .get("Actual Loops")
            .and_then(Value::as_f64)
            .unwrap_or(1.0)
            > 1.0;
        out.events_rows = out.events_rows.filter(|_| !looped).map(|n| n + rows(node));
        out.scanned.insert(relation.to_owned());
        return;
    }
    for child in children(node) {
        walk_events(child, out);
    }
}

/// The plan as `Node(child, child)`, partitions' names collapsed to `dispute_events_p*` and
/// runs of identical children counted (`5× …`), so that 31 partition scans read as one.
fn shape(node: &Value) -> String {
    let mut label = node
        .get("Node Type")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned();
    if let Some(relation) = node.get("Relation Name").and_then(Value::as_str) {
        let relation = if relation.starts_with("dispute_events_p") {
            "dispute_events_p*"
        } else {
            relation
        };
        label.push_str(" on ");
        label.push_str(relation);
    }
    if let Some(removed) = node
        .get("Subplans Removed")
        .and_then(Value::as_u64)
        .filter(|&n| n > 0)
    {
        label.push_str(&format!(" [{removed} pruned at run time]"));
    }
    let kids: Vec<String> = children(node).map(shape).collect();
    if kids.is_empty() {
        return label;
    }
    let mut grouped: Vec<(usize, String)> = Vec::new();
    for kid in kids {
        match grouped.last_mut() {
            Some((n, last)) if *last == kid => *n += 1,
            _ => grouped.push((1, kid)),
        }
    }
    let inner = grouped
        .into_iter()
        .map(|(n, s)| if n > 1 { format!("{n}× {s}") } else { s })
        .collect::<Vec<_>>()
        .join(", ");
    format!("{label}({inner})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!([{
            "Plan": {
                "Node Type": "Hash Join", "Actual Rows": 21.0, "Actual Loops": 1,
                "Shared Hit Blocks": 120, "Shared Read Blocks": 30,
                "Plans": [
                    {"Node Type": "Append", "Actual Rows": 600, "Actual Loops": 1,
                     "Shared Hit Blocks": 90, "Shared Read Blocks": 10,
                     "Plans": [
                        {"Node Type": "Bitmap Heap Scan", "Relation Name": "dispute_events_p20261101",
                         "Actual Rows": 300, "Actual Loops": 1, "Shared Hit Blocks": 45, "Shared Read Blocks": 5,
                         "Plans": [{"Node Type": "Bitmap Index Scan", "Index Name": "x",
                                    "Shared Hit Blocks": 3, "Shared Read Blocks": 0}]},
                        {"Node Type": "Bitmap Heap Scan", "Relation Name": "dispute_events_p20261102",
                         "Actual Rows": 300, "Actual Loops": 1, "Shared Hit Blocks": 45, "Shared Read Blocks": 5,
                         "Plans": [{"Node Type": "Bitmap Index Scan", "Index Name": "y",
                                    "Shared Hit Blocks": 3, "Shared Read Blocks": 0}]}
                     ]},
                    {"Node Type": "Hash", "Plans": [
                        {"Node Type": "Seq Scan", "Relation Name": "disputes", "Actual Rows": 71, "Actual Loops": 1,
                         "Shared Hit Blocks": 30, "Shared Read Blocks": 20}]}
                ]
            },
            "Planning Time": 0.5,
            "Execution Time": 12.25
        }])
    }

    #[test]
    fn totals_come_from_the_top_node_and_events_from_the_scans() {
        let e = parse(&sample()).expect("parses");
        assert_eq!(e.execution_ms, 12.25);
        assert_eq!(e.pages(), 150);
        assert_eq!(e.events_pages, 100);
        assert_eq!(e.rows, 21);
        assert_eq!(e.events_rows, Some(600));
        assert_eq!(
            e.scanned.iter().map(String::as_str).collect::<Vec<_>>(),
            ["dispute_events_p20261101", "dispute_events_p20261102"]
        );
        assert_eq!(
            e.shape,
            "Hash Join(Append(2× Bitmap Heap Scan on dispute_events_p*(Bitmap Index Scan)), \
             Hash(Seq Scan on disputes))"
        );
    }

    #[test]
    fn walks_add_up() {
        let mut total = parse(&sample()).expect("parses");
        total.absorb(parse(&sample()).expect("parses"));
        assert_eq!(total.pages(), 300);
        assert_eq!(total.rows, 42);
        assert_eq!(total.scanned.len(), 2);
    }

    #[test]
    fn output_without_analyze_is_refused() {
        assert!(parse(&json!([{"Plan": {"Node Type": "Result"}}])).is_err());
        assert!(parse(&json!({})).is_err());
    }
}
