//! The SVG chart of a run: latency percentiles against the offered rate (log scale), and
//! the achieved rate against the offered rate (the diagonal is "keeps up").

use plotters::prelude::*;

use super::StepReport;
use crate::LabError;

const SIZE: (u32, u32) = (1200, 520);

type Pick = fn(&StepReport) -> u64;

const PERCENTILES: [(&str, RGBColor, Pick); 4] = [
    ("p50", BLUE, |s| s.latency.p50_us),
    ("p90", GREEN, |s| s.latency.p90_us),
    ("p99", RED, |s| s.latency.p99_us),
    ("p99.9", MAGENTA, |s| s.latency.p999_us),
];

/// Axis labels without needless decimals: `2000`, `0.5`, `12.5`.
fn label(v: &f64) -> String {
    if *v >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn chart_error<E: std::fmt::Display>(e: E) -> LabError {
    LabError::Chart(e.to_string())
}

/// Draws the chart of `steps`; `slo_ms` is drawn as a horizontal line.
pub fn svg_chart(steps: &[StepReport], slo_ms: f64) -> Result<String, LabError> {
    let mut steps: Vec<&StepReport> = steps.iter().collect();
    steps.sort_by(|a, b| a.offered_rate.total_cmp(&b.offered_rate));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let (left, right) = root.split_horizontally(SIZE.0 / 2);
        latency_chart(&left, &steps, slo_ms)?;
        rate_chart(&right, &steps)?;
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

/// The x range: the offered rates with some room (a single step gets ±50 %).
fn x_range(steps: &[&StepReport]) -> std::ops::Range<f64> {
    let lo = steps.first().map_or(0.0, |s| s.offered_rate);
    let hi = steps.last().map_or(1.0, |s| s.offered_rate);
    let pad = if hi > lo {
        (hi - lo) * 0.08
    } else {
        hi.max(1.0) * 0.5
    };
    (lo - pad).max(0.0)..hi + pad
}

fn latency_chart(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    steps: &[&StepReport],
    slo_ms: f64,
) -> Result<(), LabError> {
    let to_ms = |us: u64| (us as f64 / 1000.0).max(0.001);
    let values = steps
        .iter()
        .flat_map(|s| PERCENTILES.iter().map(move |(_, _, pick)| to_ms(pick(s))));
    let (lo, hi) = values.fold((slo_ms, slo_ms), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let y = (lo / 2.0).max(0.001)..hi * 2.0;
    let x = x_range(steps);
    let mut chart = ChartBuilder::on(area)
        .caption("Latency from the intended send time", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x.clone(), y.log_scale())
        .map_err(chart_error)?;
    chart
        .configure_mesh()
        .x_desc("offered rate (requests/s)")
        .y_desc("latency (ms, log scale)")
        .x_label_formatter(&label)
        .y_label_formatter(&label)
        .draw()
        .map_err(chart_error)?;
    chart
        .draw_series(LineSeries::new(
            vec![(x.start, slo_ms), (x.end, slo_ms)],
            BLACK.mix(0.5).stroke_width(1),
        ))
        .map_err(chart_error)?
        .label(format!("SLO p99 {slo_ms} ms"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.5)));
    for (name, color, pick) in PERCENTILES {
        let points: Vec<(f64, f64)> = steps
            .iter()
            .map(|s| (s.offered_rate, to_ms(pick(s))))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(chart_error)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(chart_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(chart_error)
}

fn rate_chart(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    steps: &[&StepReport],
) -> Result<(), LabError> {
    let x = x_range(steps);
    let top = steps
        .iter()
        .map(|s| s.achieved_rate.max(s.offered_rate))
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption("Achieved against offered rate", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x.clone(), 0.0..top)
        .map_err(chart_error)?;
    chart
        .configure_mesh()
        .x_desc("offered rate (requests/s)")
        .y_desc("achieved rate (requests/s)")
        .x_label_formatter(&label)
        .y_label_formatter(&label)
        .draw()
        .map_err(chart_error)?;
    chart
        .draw_series(LineSeries::new(
            vec![(x.start, x.start), (x.end, x.end)],
            BLACK.mix(0.4).stroke_width(1),
        ))
        .map_err(chart_error)?
        .label("offered = achieved")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.4)));
    let points: Vec<(f64, f64)> = steps
        .iter()
        .map(|s| (s.offered_rate, s.achieved_rate))
        .collect();
    chart
        .draw_series(LineSeries::new(points.clone(), BLUE.stroke_width(2)))
        .map_err(chart_error)?
        .label("achieved")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE.stroke_width(2)));
    chart
        .draw_series(points.into_iter().map(|p| Circle::new(p, 3, BLUE.filled())))
        .map_err(chart_error)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(chart_error)
}
