//! The result files: `loadtest-<UTC timestamp>.json`, `.md` and `.svg` in the output
//! folder.

use std::path::{Path, PathBuf};

use super::{markdown, svg_chart, RunReport, REPORT_FORMAT};
use crate::loadtest::error::LoadtestError;

/// The files written for a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The JSON result.
    pub json: PathBuf,
    /// The Markdown report.
    pub markdown: PathBuf,
    /// The chart it links.
    pub svg: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LoadtestError + '_ {
    move |source| LoadtestError::File {
        path: path.to_owned(),
        source,
    }
}

/// `2026-01-02T03:04:05Z` → `20260102T030405Z`.
fn stamp(rfc3339: &str) -> String {
    rfc3339
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect()
}

/// Writes the three files of `report` into `dir` (created when missing). A second run in
/// the same second gets a `-2`, `-3`, … suffix rather than overwriting the first.
pub fn write_reports(dir: &Path, report: &RunReport) -> Result<Written, LoadtestError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let base = format!("loadtest-{}", stamp(&report.started_at));
    let mut name = base.clone();
    let mut n = 1;
    while dir.join(format!("{name}.json")).exists() {
        n += 1;
        name = format!("{base}-{n}");
    }
    let written = Written {
        json: dir.join(format!("{name}.json")),
        markdown: dir.join(format!("{name}.md")),
        svg: dir.join(format!("{name}.svg")),
    };
    let json = serde_json::to_vec_pretty(report).map_err(|e| LoadtestError::Format {
        path: written.json.clone(),
        message: e.to_string(),
    })?;
    std::fs::write(&written.json, json).map_err(io(&written.json))?;
    let svg = svg_chart(&report.steps, report.settings.slo_p99_ms)?;
    std::fs::write(&written.svg, svg).map_err(io(&written.svg))?;
    let md = markdown(report, &format!("{name}.svg"));
    std::fs::write(&written.markdown, md).map_err(io(&written.markdown))?;
    Ok(written)
}

/// Reads a result file written by [`write_reports`].
pub fn read_report(path: &Path) -> Result<RunReport, LoadtestError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let report: RunReport = serde_json::from_slice(&bytes).map_err(|e| LoadtestError::Format {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    if report.format != REPORT_FORMAT {
        return Err(LoadtestError::Format {
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
