//! Loading refuses bad files with errors that name the field; the README documents every
//! field.

use pm_scenario::config::{AmountRange, AmountText, ArrivalKind};
use pm_scenario::{Scenario, ScenarioError};

use crate::support::{config, scenarios_dir};

const MINIMAL: &str = "name = \"t\"\nseed = 1\n[traffic]\norders = 10\nrate = 100.0\n";

fn fields(text: &str) -> Vec<String> {
    match Scenario::from_toml(text) {
        Err(ScenarioError::Invalid(p)) => p.into_iter().map(|p| p.field).collect(),
        other => panic!("expected invalid values, got {other:?}"),
    }
}

#[test]
fn a_minimal_file_uses_the_defaults() {
    let s = Scenario::from_toml(MINIMAL).expect("valid");
    assert_eq!(s.id_prefix(), "t-1");
    assert_eq!(s.config().orders, Default::default());
    assert_eq!(s.generate().ledger.orders.len(), 10);
}

#[test]
fn unknown_fields_and_wrong_types_are_refused_by_name() {
    for (text, needle) in [
        (
            format!("{MINIMAL}[faults]\nduplicates = 0.1\n"),
            "duplicates",
        ),
        (format!("colour = \"red\"\n{MINIMAL}"), "colour"),
        (
            format!("{MINIMAL}[money]\nmin = 1.5\n"),
            "floats are not exact",
        ),
        (
            format!("{MINIMAL}[disputes]\noutcomes = {{ won = 1, drawn = 2 }}\n"),
            "drawn",
        ),
        (MINIMAL.replace("rate = 100.0", "rate = \"fast\""), "rate"),
        (
            MINIMAL.replace("orders = 10\n", "orders = 10\narrival = \"poisson\"\n"),
            "poisson",
        ),
    ] {
        match Scenario::from_toml(&text) {
            Err(e @ ScenarioError::Syntax(_)) => {
                assert!(e.to_string().contains(needle), "{needle}: {e}")
            }
            other => panic!("{needle}: expected a syntax error, got {other:?}"),
        }
    }
}

#[test]
fn every_invalid_value_is_reported_with_its_field() {
    let text = r#"
name = "bad name!"
seed = 1
start_time = "yesterday"
[traffic]
orders = 10
duration_secs = 5
rate = 0.0
burst_size = 3
[orders]
updates_min = 4
updates_max = 2
success_share = 0.8
failed_share = 0.3
[disputes]
share = 1.5
outcomes = { won = 0 }
reasons = { " " = 1 }
[money]
currencies = { usd = 1, JPY = 1 }
ranges = { JPY = { min = "0.5", max = "0.9" }, EUR = { min = "1", max = "2" } }
[users]
count = 10
hot_users = 20
hot_share = 0.5
[faults]
duplicate = -0.1
reorder = 0.7
late = 0.6
reorder_window = 0
"#;
    let got = fields(text);
    for want in [
        "name",
        "start_time",
        "traffic.duration_secs",
        "traffic.rate",
        "traffic.burst_size",
        "orders.updates_min",
        "orders.failed_share",
        "disputes.share",
        "disputes.outcomes",
        "disputes.reasons. ",
        "money.currencies.usd",
        "money.ranges.JPY.max",
        "money.ranges.EUR",
        "users.hot_users",
        "faults.duplicate",
        "faults.late",
        "faults.reorder_window",
    ] {
        assert!(got.iter().any(|f| f == want), "{want} missing from {got:?}");
    }
    let message = Scenario::from_toml(text).unwrap_err().to_string();
    assert!(
        message.contains("traffic.rate: must be greater than 0"),
        "{message}"
    );
}

#[test]
fn bursts_need_their_parameters_and_timed_runs_a_bound() {
    let bursts = MINIMAL.replace("rate = 100.0", "rate = 0.0\narrival = \"bursts\"");
    assert_eq!(
        fields(&bursts),
        ["traffic.burst_size", "traffic.burst_every_ms"]
    );
    let ok = format!("{bursts}burst_size = 10\nburst_every_ms = 100\n");
    let s = Scenario::from_toml(&ok).expect("valid");
    assert_eq!(s.config().traffic.arrival, ArrivalKind::Bursts);
    let huge = MINIMAL
        .replace("orders = 10", "duration_secs = 86400")
        .replace("100.0", "1000.0");
    assert_eq!(fields(&huge), ["traffic.duration_secs"]);
    let neither = MINIMAL.replace("orders = 10\n", "");
    assert_eq!(fields(&neither), ["traffic.orders"]);
}

#[test]
fn start_time_may_be_a_bare_toml_datetime_and_amounts_integers() {
    let text = format!(
        "{}start_time = 2026-03-01T12:00:00Z\n{}",
        "name = \"t\"\nseed = 1\n",
        "[traffic]\norders = 1\nrate = 1.0\n[money]\ncurrencies = { JPY = 1 }\nmin = 100\nmax = 100\n"
    );
    let s = Scenario::from_toml(&text).expect("valid");
    assert_eq!(
        pm_domain::time::format(&s.start_time()),
        "2026-03-01T12:00:00Z"
    );
    let plan = s.generate();
    assert!(plan.ledger.orders[0].created_at >= s.start_time());
}

#[test]
fn a_config_built_in_code_is_checked_too() {
    let mut c = config(5, 1);
    c.money.ranges.insert(
        "USD".to_owned(),
        AmountRange {
            min: AmountText::parse("10.005").expect("decimal"),
            max: AmountText::parse("10.009").expect("decimal"),
        },
    );
    let err = Scenario::new(c).unwrap_err();
    assert_eq!(err.problems()[0].field, "money.ranges.USD.max", "{err}");
}

/// Every field of a fully written-out file appears in `scenarios/README.md`.
#[test]
fn the_readme_documents_every_field() {
    let mut c = config(5, 1);
    c.description = Some("d".to_owned());
    c.id_prefix = Some("p".to_owned());
    c.traffic.duration_secs = Some(1);
    c.traffic.burst_size = Some(1);
    c.traffic.burst_every_ms = Some(1);
    c.money.ranges.insert(
        "USD".to_owned(),
        AmountRange {
            min: AmountText::parse("1").expect("decimal"),
            max: AmountText::parse("2").expect("decimal"),
        },
    );
    let value = toml::Value::try_from(&c).expect("serializes");
    let readme = std::fs::read_to_string(scenarios_dir().join("README.md")).expect("README");
    let mut missing = Vec::new();
    walk(&value, "", &mut |path| {
        if !readme.contains(&format!("`{path}`")) {
            missing.push(path.to_owned());
        }
    });
    assert!(missing.is_empty(), "undocumented fields: {missing:?}");
}

fn walk(value: &toml::Value, prefix: &str, f: &mut dyn FnMut(&str)) {
    if let toml::Value::Table(t) = value {
        for (k, v) in t {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            // Map-valued fields list codes or reasons, not fields; sections are documented
            // through their fields.
            let map = matches!(
                path.as_str(),
                "money.currencies" | "money.ranges" | "disputes.reasons"
            );
            if map || !v.is_table() {
                f(&path);
            }
            if !map {
                walk(v, &path, f);
            }
        }
    }
}
