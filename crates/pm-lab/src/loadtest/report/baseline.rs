//! Reference rates of this machine, written by `pmctl bench baseline`
//! (`bench-results/baseline-*.json`): how fast a bare HTTP server answers
//! (`bare_http_rate`) and how many single-row PostgreSQL insert-and-commit transactions
//! per second the database takes (`pg_insert_commit_rate`). A load test's achieved rate
//! means more as a fraction of those.
//!
//! Only the two numbers are read, wherever they are in the file (at the top or nested), so
//! the baseline's format may grow without breaking this. The file `pmctl bench baseline`
//! writes today names them `http.max_sustainable_rps` and `postgres.commits_per_sec`; those
//! are read when the two names are absent.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::loadtest::error::LoadtestError;

/// The reference rates found in a baseline file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// The file.
    pub file: String,
    /// Requests per second of a bare HTTP server on this machine.
    pub bare_http_rate: Option<f64>,
    /// Insert-and-commit transactions per second of the database.
    pub pg_insert_commit_rate: Option<f64>,
}

impl Baseline {
    /// Reads the two rates from a baseline file.
    pub fn read(path: &Path) -> Result<Self, LoadtestError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadtestError::File {
            path: path.to_owned(),
            source,
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|e| LoadtestError::Format {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let b = Baseline {
            file: path.display().to_string(),
            bare_http_rate: number(&value, "bare_http_rate")
                .or_else(|| at(&value, "/http/max_sustainable_rps")),
            pg_insert_commit_rate: number(&value, "pg_insert_commit_rate")
                .or_else(|| at(&value, "/postgres/commits_per_sec")),
        };
        if b.bare_http_rate.is_none() && b.pg_insert_commit_rate.is_none() {
            return Err(LoadtestError::Format {
                path: path.to_owned(),
                message: "neither bare_http_rate nor pg_insert_commit_rate is in it".to_owned(),
            });
        }
        Ok(b)
    }

    /// `rate` as a share of each reference (`None` where the reference is missing).
    pub fn shares(&self, rate: f64) -> (Option<f64>, Option<f64>) {
        let share = |r: Option<f64>| r.filter(|r| *r > 0.0).map(|r| rate / r);
        (
            share(self.bare_http_rate),
            share(self.pg_insert_commit_rate),
        )
    }
}

/// The positive number at a JSON pointer.
fn at(v: &Value, pointer: &str) -> Option<f64> {
    v.pointer(pointer)
        .and_then(Value::as_f64)
        .filter(|n| n.is_finite() && *n > 0.0)
}

/// The first positive number under `key`, searched depth-first.
fn number(v: &Value, key: &str) -> Option<f64> {
    match v {
        Value::Object(map) => map
            .get(key)
            .and_then(Value::as_f64)
            .filter(|n| n.is_finite() && *n > 0.0)
            .or_else(|| map.values().find_map(|v| number(v, key))),
        Value::Array(items) => items.iter().find_map(|v| number(v, key)),
        _ => None,
    }
}

/// The newest `baseline-*.json` in `dir` (names carry a UTC timestamp, so the greatest
/// name is the newest).
pub fn find_baseline(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("baseline-") && n.ends_with(".json"))
        })
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_found_at_any_depth_and_the_newest_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("baseline-20260101T000000Z.json"),
            r#"{"bare_http_rate": 10000}"#,
        )
        .unwrap();
        let newest = dir.path().join("baseline-20260301T000000Z.json");
        std::fs::write(
            &newest,
            r#"{"results": {"bare_http_rate": 40000.5, "pg": {"pg_insert_commit_rate": 8000}}}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("loadtest-20260401T000000Z.json"), "{}").unwrap();
        assert_eq!(find_baseline(dir.path()), Some(newest.clone()));
        let b = Baseline::read(&newest).unwrap();
        assert_eq!(b.bare_http_rate, Some(40000.5));
        assert_eq!(b.pg_insert_commit_rate, Some(8000.0));
        let (http, pg) = b.shares(4000.05);
        assert!((http.unwrap() - 0.1).abs() < 1e-9);
        assert!((pg.unwrap() - 0.5).abs() < 1e-2);
        // The shape `pmctl bench baseline` writes.
        let bench = dir.path().join("baseline-bench.json");
        std::fs::write(
            &bench,
            r#"{"http": {"max_sustainable_rps": 1500.0, "steps": []},
                "postgres": {"commits_per_sec": 14299.8}}"#,
        )
        .unwrap();
        let b = Baseline::read(&bench).unwrap();
        assert_eq!(b.bare_http_rate, Some(1500.0));
        assert_eq!(b.pg_insert_commit_rate, Some(14299.8));
        let empty = dir.path().join("baseline-x.json");
        std::fs::write(&empty, r#"{"other": 1}"#).unwrap();
        assert!(Baseline::read(&empty).is_err());
        assert_eq!(find_baseline(&dir.path().join("missing")), None);
    }
}
