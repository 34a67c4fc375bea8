//! Which metrics a PromQL expression names, which a `/metrics` exposition exports, and
//! which of ours (`pm_…`, `process_…`) are named but not exported.
//!
//! Not a PromQL parser (promtool checks that the expressions parse): a tokenizer that skips
//! string literals, numbers and durations, and collects identifiers. Label names, functions
//! and keywords are identifiers too, but none of them starts with our prefixes.

use std::collections::BTreeSet;

/// The prefixes of the metrics our services export; only these are checked.
pub const OURS: [&str; 2] = ["pm_", "process_"];

/// Grafana's interval macros, replaced by a plain duration so that promtool can parse the
/// expression.
pub fn expand_grafana_macros(expr: &str) -> String {
    ["$__rate_interval", "$__interval", "$__range"]
        .iter()
        .fold(expr.to_owned(), |e, m| e.replace(m, "5m"))
}

/// The metric names in `expr` that start with one of [`OURS`].
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            // A string literal (a label value, a regex): skip to its closing quote;
            // backticks are raw, the others know backslash escapes.
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if c != '`' && chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c.is_ascii_digit() || c == '$' {
            // A number or a duration (`0.99`, `5m`, `1e3`), or a Grafana variable: never a
            // metric, and its letters must not start an identifier.
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "._".contains(chars[i])) {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if OURS.iter().any(|p| word.starts_with(p)) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Every series name a scrape of `exposition` (Prometheus text format or OpenMetrics) can
/// yield: the names of its samples, and for each `# TYPE` the names its type implies (an
/// OpenMetrics counter `x` has samples `x_total`; a histogram `x_bucket`, `x_sum`,
/// `x_count`), so that a family without samples yet still counts as exported.
pub fn exported_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total", "_created", ""],
                "histogram" | "gaugehistogram" => &["_bucket", "_sum", "_count", "_created"],
                "summary" => &["", "_sum", "_count", "_created"],
                "info" => &["_info"],
                _ => &[""],
            };
            for s in suffixes {
                // A Prometheus-format counter is typed with its `_total` already.
                if !(kind == "counter" && *s == "_total" && name.ends_with("_total")) {
                    names.insert(format!("{name}{s}"));
                }
            }
        } else if !line.is_empty() && !line.starts_with('#') {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

/// The names in `named` that start with one of [`OURS`] and are not in `exported`.
pub fn missing<'a>(
    named: impl IntoIterator<Item = &'a String>,
    exported: &BTreeSet<String>,
) -> BTreeSet<String> {
    named
        .into_iter()
        .filter(|n| OURS.iter().any(|p| n.starts_with(p)) && !exported.contains(*n))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn names_ours_and_skips_labels_strings_numbers_and_functions() {
        let expr = r#"histogram_quantile(0.99, sum by (job, route, le) (
            rate(pm_http_request_duration_seconds_bucket{route=~"/pm_x/.+", job='pm_y'}[$__rate_interval])))
            / on (job) group_left process_max_fds > 5m unless up{job="pm-api"}"#;
        assert_eq!(
            metric_names(expr),
            set(&["pm_http_request_duration_seconds_bucket", "process_max_fds"])
        );
    }

    #[test]
    fn skips_escaped_quotes_raw_strings_comments_and_other_prefixes() {
        let expr =
            "foo_pm_bar + pm_a{l=\"x\\\"pm_b\"} + pm_c{l=`pm_d\\`} # pm_e\n + node_pm_f + pm_g";
        assert_eq!(metric_names(expr), set(&["pm_a", "pm_c", "pm_g"]));
    }

    #[test]
    fn a_duration_or_number_never_starts_a_name() {
        assert_eq!(
            metric_names("rate(pm_x_total[1h5m]) > 1e3"),
            set(&["pm_x_total"])
        );
    }

    #[test]
    fn grafana_macros_become_durations() {
        assert_eq!(
            expand_grafana_macros("rate(x[$__rate_interval]) + increase(y[$__range])"),
            "rate(x[5m]) + increase(y[5m])"
        );
    }

    #[test]
    fn openmetrics_families_yield_their_sample_names_even_without_samples() {
        let text = "# HELP pm_http_requests HTTP requests.\n\
                    # TYPE pm_http_requests counter\n\
                    pm_http_requests_total{method=\"GET\",route=\"/x\",status=\"200\"} 3\n\
                    # TYPE pm_latency_seconds histogram\n\
                    # TYPE pm_lag gauge\n\
                    # TYPE process_cpu_seconds counter\n\
                    process_cpu_seconds_total 1.5\n\
                    pm_build_info{version=\"1\"} 1\n\
                    # EOF\n";
        let names = exported_names(text);
        for n in [
            "pm_http_requests_total",
            "pm_latency_seconds_bucket",
            "pm_latency_seconds_sum",
            "pm_latency_seconds_count",
            "pm_lag",
            "process_cpu_seconds_total",
            "pm_build_info",
        ] {
            assert!(names.contains(n), "{n} not in {names:?}");
        }
        assert!(!names.contains("pm_latency_seconds"), "{names:?}");
        assert!(!names.contains("pm_lag_total"), "{names:?}");
    }

    #[test]
    fn a_prometheus_format_counter_keeps_its_own_total() {
        let names = exported_names("# TYPE pm_x_total counter\npm_x_total 1\n");
        assert!(names.contains("pm_x_total") && !names.contains("pm_x_total_total"));
    }

    #[test]
    fn missing_lists_only_our_names_not_exported() {
        let exported = set(&["pm_a_total", "process_open_fds"]);
        let named = set(&[
            "pm_a_total",
            "pm_b",
            "process_open_fds",
            "process_max_fds",
            "up",
        ]);
        assert_eq!(
            missing(&named, &exported),
            set(&["pm_b", "process_max_fds"])
        );
    }
}
