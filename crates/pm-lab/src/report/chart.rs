//! SVG charts (plotters' SVG backend: no fonts or system libraries needed; text is left to
//! the viewer).

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::partitioning::{Layout, PartitioningReport};
use crate::LabError;

const WIDTH: u32 = 1200;
const PANEL_HEIGHT: u32 = 440;

fn color(layout: Layout) -> RGBColor {
    match layout {
        Layout::Plain => RGBColor(0x9e, 0x9e, 0x9e),
        Layout::Indexed => RGBColor(0x1f, 0x77, 0xb4),
        Layout::Partitioned => RGBColor(0x2c, 0xa0, 0x2c),
        Layout::Clustered => RGBColor(0xd6, 0x27, 0x28),
    }
}

fn chart_error(e: impl std::fmt::Display) -> LabError {
    LabError::Chart(e.to_string())
}

/// A log axis from a power of ten below the smallest value to one above the largest.
fn log_bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (0.1, 10.0);
    }
    (
        10f64.powf(lo.log10().floor()).max(1e-3),
        // Headroom above the tallest bar for its label and the legend.
        10f64.powf(hi.log10().ceil() + 1.0),
    )
}

/// Grouped bars: one group per query, one bar per layout: median time above, pages below.
pub(crate) fn partitioning(report: &PartitioningReport) -> Result<String, LabError> {
    let groups: Vec<String> = report.queries.iter().map(|q| q.title.clone()).collect();
    let series = |value: fn(&crate::partitioning::LayoutResult) -> f64| {
        Layout::ALL
            .into_iter()
            .map(|layout| Series {
                label: layout.label().to_owned(),
                color: color(layout),
                values: report
                    .queries
                    .iter()
                    .map(|q| q.layout(layout).map(value))
                    .collect(),
            })
            .collect::<Vec<_>>()
    };
    two_panels(
        &format!(
            "dispute_events: {} rows over {} days, per layout",
            super::fmt_count(report.setup.rows),
            report.setup.days
        ),
        (
            "median execution time, ms (log scale)",
            &groups,
            series(|l| l.median_ms),
        ),
        (
            "pages touched, shared hit + read (log scale)",
            &groups,
            series(|l| l.pages as f64),
        ),
    )
}

/// A titled chart of two panels of grouped bars, each a caption, its groups and its series.
fn two_panels(
    title: &str,
    (top_caption, top_groups, top_series): (&str, &[String], Vec<Series>),
    (bottom_caption, bottom_groups, bottom_series): (&str, &[String], Vec<Series>),
) -> Result<String, LabError> {
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (WIDTH, 2 * PANEL_HEIGHT + 50)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let root = root
            .titled(title, ("sans-serif", 22))
            .map_err(chart_error)?;
        let (top, bottom) = root.split_vertically(PANEL_HEIGHT);
        grouped_bars(&top, top_caption, top_groups, &top_series)?;
        grouped_bars(&bottom, bottom_caption, bottom_groups, &bottom_series)?;
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

/// One bar per group: a legend entry.
pub(crate) struct Series {
    pub(crate) label: String,
    pub(crate) color: RGBColor,
    /// One value per group (`None`: no bar).
    pub(crate) values: Vec<Option<f64>>,
}

/// Grouped bars on a log scale, each labelled with its value: one group per name in
/// `groups`, one bar per series in each.
pub(crate) fn grouped_bars(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    caption: &str,
    groups: &[String],
    series: &[Series],
) -> Result<(), LabError> {
    let n = groups.len().max(1) as f64;
    let (lo, hi) = log_bounds(
        series
            .iter()
            .flat_map(|s| s.values.iter().flatten().copied()),
    );
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5f64..(n - 0.5), (lo..hi).log_scale())
        .map_err(chart_error)?;
    let label_of = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            groups.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups.len())
        .x_label_formatter(&label_of)
        .y_label_formatter(&|y| format!("{y}"))
        .draw()
        .map_err(chart_error)?;
    let width = 0.8 / series.len().max(1) as f64;
    for (si, s) in series.iter().enumerate() {
        let fill = s.color;
        let points: Vec<(f64, f64)> = s
            .values
            .iter()
            .enumerate()
            .filter_map(|(gi, v)| {
                let x0 = gi as f64 - 0.4 + si as f64 * width;
                v.map(|v| (x0, v.max(lo)))
            })
            .collect();
        chart
            .draw_series(points.iter().map(|&(x0, v)| {
                Rectangle::new([(x0 + 0.01, lo), (x0 + width - 0.01, v)], fill.filled())
            }))
            .map_err(chart_error)?
            .label(s.label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], fill.filled()));
        chart
            .draw_series(points.iter().map(|&(x0, v)| {
                Text::new(
                    short_number(v),
                    (x0 + 0.02, v * 1.15),
                    ("sans-serif", 11).into_font(),
                )
            }))
            .map_err(chart_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperMiddle)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(chart_error)?;
    Ok(())
}

/// The layouts comparison: page time above, complete-walk time below, one group per window.
pub(crate) fn layouts(report: &crate::layouts::LayoutsReport) -> Result<String, LabError> {
    use pm_storage::layout::Layout as Storage;
    let groups: Vec<String> = report
        .walk
        .windows_days
        .iter()
        .map(|d| format!("last {d} day(s)"))
        .collect();
    let series = |value: fn(&crate::walks::WalkResult) -> f64| {
        report
            .layouts
            .iter()
            .map(|l| Series {
                label: l.layout.to_string(),
                color: match l.layout {
                    Storage::Partitioned => color(Layout::Partitioned),
                    Storage::Unpartitioned => color(Layout::Indexed),
                },
                values: report
                    .walk
                    .windows_days
                    .iter()
                    .map(|d| {
                        l.walks
                            .iter()
                            .find(|w| w.window_days == *d)
                            .map(value)
                            .filter(|v| *v > 0.0)
                    })
                    .collect(),
            })
            .collect::<Vec<_>>()
    };
    two_panels(
        &format!(
            "GET /disputes/events walks, {} users, per layout",
            report.walk.users
        ),
        (
            "page time, mean ms (log scale)",
            &groups,
            series(|w| w.pages.mean_us / 1000.0),
        ),
        (
            "complete walk, mean ms (log scale)",
            &groups,
            series(|w| w.walks.mean_us / 1000.0),
        ),
    )
}

/// `65`, `3.8k`, `0.42`: fits above a bar.
/// A bar series: its legend, its colour and the value it takes of each item.
type Measure<T> = (&'static str, Layout, fn(&T) -> f64);

/// One series per measure, one value per item (no bar where it is not above zero).
fn series_of<T>(items: &[T], measures: &[Measure<T>]) -> Vec<Series> {
    measures
        .iter()
        .map(|(label, layout, value)| Series {
            label: (*label).to_owned(),
            color: color(*layout),
            values: items
                .iter()
                .map(|item| Some(value(item)).filter(|v| *v > 0.0))
                .collect(),
        })
        .collect()
}

/// Streaming replicas: each standby's staleness above, the read walks per number of
/// replicas below.
pub(crate) fn replication(
    report: &crate::replication::ReplicationReport,
) -> Result<String, LabError> {
    fn ms(us: u64) -> f64 {
        us as f64 / 1000.0
    }
    let standbys = &report.load.standbys;
    let staleness = series_of(
        standbys,
        &[
            ("p50", Layout::Indexed, |s| ms(s.visible_after.p50_us)),
            ("p99", Layout::Partitioned, |s| ms(s.visible_after.p99_us)),
            ("max", Layout::Clustered, |s| ms(s.visible_after.max_us)),
        ],
    );
    let walks = series_of(
        &report.reads,
        &[
            ("pages/s", Layout::Indexed, |r| r.walk.pages_per_second),
            ("page p99, ms", Layout::Clustered, |r| {
                ms(r.walk.pages.p99_us)
            }),
        ],
    );
    let reads: Vec<String> = report
        .reads
        .iter()
        .map(|r| format!("{} replica(s)", r.replicas))
        .collect();
    two_panels(
        "Streaming replicas: staleness under load, reads routed to them",
        (
            "visible on the standby after the primary's ack, ms (log scale)",
            &standbys
                .iter()
                .map(|s| s.standby.clone())
                .collect::<Vec<_>>(),
            staleness,
        ),
        (
            "GET /disputes/events walks by replicas configured (log scale)",
            &reads,
            walks,
        ),
    )
}

fn short_number(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 1_000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_bounds_cover_the_values() {
        let (lo, hi) = log_bounds([0.5, 782.0].into_iter());
        assert!(lo <= 0.5 && hi >= 782.0);
        assert_eq!(log_bounds(std::iter::empty()), (0.1, 10.0));
        assert_eq!(short_number(3_812.0), "3.8k");
        assert_eq!(short_number(119_034.0), "119k");
    }
}
