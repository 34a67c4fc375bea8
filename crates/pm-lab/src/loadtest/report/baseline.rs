//! Reference rates of this machine, from the newest report of `pmctl bench baseline`
//! (`bench-results/baseline-*.json`, a [`BaselineReport`]): how fast a bare HTTP server
//! answers and how many single-row PostgreSQL insert-and-commit transactions per second the
//! database takes. A load test's achieved rate means more as a fraction of those.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::baseline::BaselineReport;
use crate::LabError;

/// The reference rates of a baseline report, as a load test's result records them.
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
    /// Reads the two rates from a baseline report.
    pub fn read(path: &Path) -> Result<Self, LabError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| LabError::io("read", path, source))?;
        let report: BaselineReport = serde_json::from_str(&text).map_err(|e| LabError::Format {
            path: path.to_owned(),
            message: format!(
                "not a baseline report of this version ({e}); run `pmctl bench baseline` again"
            ),
        })?;
        let positive = |r: f64| Some(r).filter(|r| r.is_finite() && *r > 0.0);
        Ok(Baseline {
            file: path.display().to_string(),
            bare_http_rate: positive(report.http.max_sustainable_rps),
            pg_insert_commit_rate: report.postgres.and_then(|pg| positive(pg.commits_per_sec)),
        })
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
    fn the_newest_baseline_report_is_found_and_anything_else_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "baseline-20260101T000000Z.json",
            "baseline-20260301T000000Z.json",
            "loadtest-20260401T000000Z.json",
        ] {
            std::fs::write(dir.path().join(name), "{}").unwrap();
        }
        assert_eq!(
            find_baseline(dir.path()),
            Some(dir.path().join("baseline-20260301T000000Z.json"))
        );
        assert_eq!(find_baseline(&dir.path().join("missing")), None);
        // A file of another shape says what to do instead of guessing at its numbers.
        let old = dir.path().join("baseline-old.json");
        std::fs::write(
            &old,
            r#"{"http": {"max_sustainable_rps": 1500.0, "steps": []}}"#,
        )
        .unwrap();
        let err = Baseline::read(&old).unwrap_err().to_string();
        assert!(err.contains("pmctl bench baseline"), "{err}");
        let b = Baseline {
            file: String::new(),
            bare_http_rate: Some(40_000.0),
            pg_insert_commit_rate: None,
        };
        assert_eq!(b.shares(4_000.0), (Some(0.1), None));
    }
}
