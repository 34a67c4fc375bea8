//! The result files: `loadtest-<UTC timestamp>.json`, `.md` and `.svg` in the output
//! folder.

use std::path::Path;

use super::{markdown, svg_chart, RunReport, REPORT_FORMAT};
use crate::LabError;

pub use crate::report::Written;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LabError + '_ {
    move |source| LabError::io("read", path, source)
}

/// `2026-01-02T03:04:05Z` → `20260102T030405Z`.
fn stamp(rfc3339: &str) -> String {
    rfc3339
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect()
}

/// Writes the three files of `report` into `dir` with the lab's one writer
/// ([`crate::report::write_files`]).
pub fn write_reports(dir: &Path, report: &RunReport) -> Result<Written, LabError> {
    let json = serde_json::to_string_pretty(report).map_err(|e| LabError::Format {
        path: dir.to_owned(),
        message: e.to_string(),
    })?;
    let svg = svg_chart(&report.steps, report.settings.slo_p99_ms)?;
    crate::report::write_files(
        dir,
        "loadtest",
        &stamp(&report.started_at),
        &json,
        |svg_name| markdown(report, svg_name),
        &svg,
    )
    .map_err(LabError::from)
}

/// Reads a result file written by [`write_reports`].
pub fn read_report(path: &Path) -> Result<RunReport, LabError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let report: RunReport = serde_json::from_slice(&bytes).map_err(|e| LabError::Format {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    if report.format != REPORT_FORMAT {
        return Err(LabError::Format {
            path: path.to_owned(),
            message: format!(
                "format {} (this version reads {REPORT_FORMAT})",
                report.format
            ),
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_compact() {
        assert_eq!(stamp("2026-01-02T03:04:05Z"), "20260102T030405Z");
    }
}
