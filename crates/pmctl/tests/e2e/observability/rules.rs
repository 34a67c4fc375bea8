//! The alert rules and dashboards as files: promtool accepts them, every alert is unit-tested
//! both ways and documented, and every expression parses.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::deploy::{self, RuleFile, RuleTestFile};
use super::{promql, promtool};
use crate::process::path;

/// The severities the rules use, and what they ask of the on-call engineer (docs/alerts.md).
const SEVERITIES: [&str; 2] = ["critical", "warning"];

/// The configuration as an operator deploys it: the config and `rules/` in a directory,
/// with the API key file beside them.
fn deployed_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let from = deploy::prometheus_dir();
    std::fs::copy(
        from.join("prometheus.yml"),
        dir.path().join("prometheus.yml"),
    )
    .expect("copy prometheus.yml");
    std::fs::create_dir(dir.path().join("rules")).expect("rules/");
    for entry in std::fs::read_dir(from.join("rules")).expect("list rules/") {
        let file = entry.expect("an entry").path();
        std::fs::copy(
            &file,
            dir.path()
                .join("rules")
                .join(file.file_name().expect("a name")),
        )
        .expect("copy a rule file");
    }
    std::fs::write(dir.path().join("api-key"), "pmk_not_a_real_key\n").expect("api-key");
    dir
}

#[test]
fn promtool_accepts_the_config_and_the_rules() {
    let dir = deployed_copy();
    // `check config` also checks every rule file the config's rule_files match.
    promtool::succeeds(&["check", "config", path(&dir.path().join("prometheus.yml"))]);
    promtool::succeeds(&["check", "rules", path(&deploy::rules_path())]);
}

#[test]
fn promtool_rule_tests_pass() {
    promtool::succeeds(&["test", "rules", path(&deploy::rule_tests_path())]);
}

#[test]
fn every_alert_has_a_firing_and_a_quiet_test() {
    let rules = RuleFile::load();
    let tests = RuleTestFile::load();
    // alert → (firing cases, quiet cases)
    let mut cases: BTreeMap<&str, (usize, usize)> =
        rules.alerts().map(|(name, _)| (name, (0, 0))).collect();
    assert!(
        !cases.is_empty(),
        "no alerts in {}",
        deploy::rules_path().display()
    );
    let mut problems = Vec::new();
    for test in &tests.tests {
        for case in &test.alert_rule_test {
            match cases.get_mut(case.alertname.as_str()) {
                Some((firing, _)) if !case.exp_alerts.is_empty() => *firing += 1,
                Some((_, quiet)) => *quiet += 1,
                None => problems.push(format!(
                    "test {:?} checks {:?}, which is no alert of the rules",
                    test.name, case.alertname
                )),
            }
        }
    }
    for (alert, (firing, quiet)) in &cases {
        if *firing == 0 {
            problems.push(format!("{alert}: no test where it fires"));
        }
        if *quiet == 0 {
            problems.push(format!("{alert}: no test where it stays quiet"));
        }
    }
    assert!(
        problems.is_empty(),
        "{}:\n  {}",
        deploy::rule_tests_path().display(),
        problems.join("\n  ")
    );
}

/// GitHub's anchor of a Markdown heading (the runbook's headings are plain words).
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn every_alert_has_a_severity_its_annotations_and_a_runbook_section() {
    let rules = RuleFile::load();
    let sections = deploy::runbook_sections();
    let mut problems = Vec::new();
    for (alert, rule) in rules.alerts() {
        match rule.labels.get("severity") {
            Some(s) if SEVERITIES.contains(&s.as_str()) => {}
            other => problems.push(format!(
                "{alert}: severity {other:?}, not one of {SEVERITIES:?}"
            )),
        }
        for key in ["summary", "description", "runbook_url"] {
            if rule
                .annotations
                .get(key)
                .is_none_or(|v| v.trim().is_empty())
            {
                problems.push(format!("{alert}: no {key} annotation"));
            }
        }
        if !sections.iter().any(|s| s == alert) {
            problems.push(format!(
                "{alert}: no `## {alert}` section in docs/runbook.md"
            ));
        }
        let expected = format!("docs/runbook.md#{}", anchor(alert));
        if let Some(url) = rule.annotations.get("runbook_url") {
            if !url.ends_with(&expected) {
                problems.push(format!(
                    "{alert}: runbook_url {url} does not end with {expected}"
                ));
            }
        }
    }
    for section in &sections {
        if !rules.alerts().any(|(a, _)| a == section) {
            problems.push(format!("docs/runbook.md: section {section:?} is no alert"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_promql_expression_parses() {
    let expressions = deploy::expressions();
    // One recording rule per expression: `promtool check rules` parses each and names the
    // failing one by its record name, which indexes the list in the message.
    let mut file = String::from("groups:\n  - name: expressions\n    rules:\n");
    let mut index = String::new();
    for (i, e) in expressions.iter().enumerate() {
        let expr = promql::expand_grafana_macros(&e.expr);
        let quoted = serde_json::to_string(&expr).expect("a JSON string is a YAML string");
        let _ = writeln!(
            file,
            "      - record: check:expr_{i}\n        expr: {quoted}"
        );
        let _ = writeln!(index, "  check:expr_{i} = {}: {}", e.source, expr.trim());
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file_path = dir.path().join("expressions.yml");
    std::fs::write(&file_path, file).expect("write the expressions");
    let out = promtool::run(&["check", "rules", path(&file_path)]);
    assert!(
        out.status.success(),
        "an expression does not parse:\n{}\nthe expressions:\n{index}",
        promtool::text(&out)
    );
}
