//! The files of `deploy/` and the runbook as the tests read them, and every PromQL expression
//! in the rules and dashboards together with where it comes from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The repository's root (this crate is `crates/pmctl`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `deploy/prometheus`: the scrape configuration and `rules/`.
pub fn prometheus_dir() -> PathBuf {
    root().join("deploy/prometheus")
}

pub fn rules_path() -> PathBuf {
    prometheus_dir().join("rules/payment-manager.yml")
}

pub fn rule_tests_path() -> PathBuf {
    prometheus_dir().join("tests/payment-manager.test.yml")
}

pub fn dashboards_dir() -> PathBuf {
    root().join("deploy/grafana/dashboards")
}

pub fn runbook_path() -> PathBuf {
    root().join("docs/runbook.md")
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn yaml<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    serde_yaml::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not what the tests expect: {e}", path.display()))
}

/// A Prometheus rule file.
#[derive(Debug, Deserialize)]
pub struct RuleFile {
    pub groups: Vec<RuleGroup>,
}

#[derive(Debug, Deserialize)]
pub struct RuleGroup {
    pub name: String,
    pub rules: Vec<Rule>,
}

/// An alerting or recording rule.
#[derive(Debug, Deserialize)]
pub struct Rule {
    pub alert: Option<String>,
    pub record: Option<String>,
    pub expr: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl RuleFile {
    /// `deploy/prometheus/rules/payment-manager.yml`.
    pub fn load() -> RuleFile {
        yaml(&rules_path())
    }

    /// The alerting rules, in file order.
    pub fn alerts(&self) -> impl Iterator<Item = (&str, &Rule)> {
        self.groups
            .iter()
            .flat_map(|g| &g.rules)
            .filter_map(|r| r.alert.as_deref().map(|a| (a, r)))
    }
}

/// A `promtool test rules` file (only what the tests look at).
#[derive(Debug, Deserialize)]
pub struct RuleTestFile {
    pub tests: Vec<RuleTest>,
}

#[derive(Debug, Deserialize)]
pub struct RuleTest {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub alert_rule_test: Vec<AlertCase>,
}

/// One `alert_rule_test` entry: at `eval_time`, `alertname` is expected to fire with
/// `exp_alerts`, or to be quiet when the list is empty.
#[derive(Debug, Deserialize)]
pub struct AlertCase {
    pub alertname: String,
    #[serde(default)]
    pub exp_alerts: Vec<serde_yaml::Value>,
}

impl RuleTestFile {
    /// `deploy/prometheus/tests/payment-manager.test.yml`.
    pub fn load() -> RuleTestFile {
        yaml(&rule_tests_path())
    }
}

/// A PromQL expression and where it was found (for failure messages).
#[derive(Debug, Clone)]
pub struct Expression {
    pub source: String,
    pub expr: String,
}

/// Every expression of the rule files and of the dashboards' panels (rows included).
pub fn expressions() -> Vec<Expression> {
    let mut out: Vec<Expression> = RuleFile::load()
        .groups
        .iter()
        .flat_map(|g| {
            g.rules.iter().map(move |r| Expression {
                source: format!(
                    "rules/payment-manager.yml: {}",
                    r.alert
                        .as_deref()
                        .or(r.record.as_deref())
                        .unwrap_or(g.name.as_str())
                ),
                expr: r.expr.clone(),
            })
        })
        .collect();
    for path in dashboards() {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let dashboard: serde_json::Value = serde_json::from_str(&read(&path))
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let panels = dashboard["panels"].as_array().cloned().unwrap_or_default();
        assert!(!panels.is_empty(), "{} has no panels", path.display());
        panel_expressions(&name, &panels, &mut out);
    }
    out
}

/// The dashboards, sorted by name; there must be some.
pub fn dashboards() -> Vec<PathBuf> {
    let dir = dashboards_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no dashboards in {}", dir.display());
    paths
}

fn panel_expressions(dashboard: &str, panels: &[serde_json::Value], out: &mut Vec<Expression>) {
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push(Expression {
                    source: format!("dashboards/{dashboard}: {title}"),
                    expr: expr.to_owned(),
                });
            }
        }
        if let Some(nested) = panel["panels"].as_array() {
            panel_expressions(dashboard, nested, out);
        }
    }
}

/// The `## ` headings of the runbook's alert sections: those before its `# Procedures` part
/// (failover, backup and restore), which belong to no alert.
pub fn runbook_sections() -> Vec<String> {
    read(&runbook_path())
        .lines()
        .take_while(|l| l.trim() != "# Procedures")
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_owned())
        .collect()
}
