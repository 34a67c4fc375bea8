//! Every `pm_…` and `process_…` metric the rules and dashboards name is one serve-api or
//! serve-ingest exports: a renamed metric must not leave an alert silently empty.

use std::collections::{BTreeMap, BTreeSet};

use super::stack::Stack;
use super::{deploy, promql};

#[tokio::test]
async fn every_metric_the_rules_and_dashboards_name_is_exported() {
    let stack = Stack::start().await;
    let mut exported = promql::exported_names(&stack.scrape_api().await);
    exported.extend(promql::exported_names(&stack.scrape_ingest().await));

    // name → where it is used
    let mut named: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in deploy::expressions() {
        for name in promql::metric_names(&e.expr) {
            named.entry(name).or_default().insert(e.source.clone());
        }
    }
    assert!(
        !named.is_empty(),
        "no metric of ours in the rules and dashboards"
    );
    let missing = promql::missing(named.keys(), &exported);
    let report: Vec<String> = missing
        .iter()
        .map(|m| {
            let used: Vec<&str> = named[m].iter().map(String::as_str).collect();
            format!("{m}\n      used in: {}", used.join("; "))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} metrics named in deploy/ are exported by neither serve-api nor serve-ingest: {}\n  {}",
        missing.len(),
        missing.iter().cloned().collect::<Vec<_>>().join(", "),
        report.join("\n  ")
    );
}
