//! A real Prometheus (Debian's `/usr/bin/prometheus`) scrapes serve-api and serve-ingest with
//! deploy/prometheus's configuration — only the targets and intervals changed — ingests our
//! exposition and loads the alert rules.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::deploy::{self, RuleFile};
use super::stack::Stack;
use crate::process::{free_port, path};

/// A Prometheus server on a free loopback port, with its data in a temporary directory;
/// killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Prometheus {
    /// Writes deploy/prometheus's configuration into a temporary directory — the targets
    /// replaced by `targets` (job → address), scraping and evaluating every second — with
    /// the rules beside it and `api_key`, and starts Prometheus on it.
    fn start(targets: &[(&str, String)], api_key: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = config_for(targets);
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("write the config");
        std::fs::write(dir.path().join("api-key"), format!("{api_key}\n")).expect("api-key");
        let rules = dir.path().join("rules");
        std::fs::create_dir(&rules).expect("rules/");
        std::fs::copy(deploy::rules_path(), rules.join("payment-manager.yml")).expect("rules");

        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("a log file");
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                path(&dir.path().join("prometheus.yml"))
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                path(&dir.path().join("data"))
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start prometheus ({e}): install Debian's prometheus package \
                     (scripts/install-deps.sh does)"
                )
            });
        Prometheus {
            child,
            port,
            dir,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What Prometheus logged, for failure messages.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET path` of the HTTP API, its `data`; `None` until it answers with success.
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Option<Value> {
        let response = self
            .http
            .get(self.url(path))
            .query(query)
            .send()
            .await
            .ok()?;
        let body: Value = response.json().await.ok()?;
        (body["status"] == "success").then(|| body["data"].clone())
    }

    /// An instant query's samples as (labels, value).
    async fn query(&self, promql: &str) -> Vec<(Value, f64)> {
        let Some(data) = self.api("/api/v1/query", &[("query", promql)]).await else {
            return Vec::new();
        };
        data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let value = s["value"][1].as_str()?.parse().ok()?;
                Some((s["metric"].clone(), value))
            })
            .collect()
    }

    /// Polls `check` (which describes what it saw) until it holds or 90 s passed; then fails
    /// with the last observation, the scrape targets' state and Prometheus's log.
    async fn until<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let seen = match check().await {
                Ok(()) => return,
                Err(seen) => seen,
            };
            if Instant::now() > deadline {
                let targets = self.api("/api/v1/targets", &[]).await;
                panic!(
                    "timed out waiting for {what}; last seen: {seen}\ntargets: {}\nprometheus log:\n{}",
                    targets.map(|t| t.to_string()).unwrap_or_default(),
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// deploy/prometheus/prometheus.yml with each job's targets replaced (every job of the file
/// must be given one, and only those) and one-second intervals.
fn config_for(targets: &[(&str, String)]) -> String {
    let source = deploy::prometheus_dir().join("prometheus.yml");
    let mut config: serde_yaml::Value =
        serde_yaml::from_str(&deploy::read(&source)).expect("prometheus.yml is YAML");
    config["global"]["scrape_interval"] = "1s".into();
    config["global"]["evaluation_interval"] = "1s".into();
    let jobs = config["scrape_configs"]
        .as_sequence_mut()
        .expect("prometheus.yml has scrape_configs");
    let mut seen = BTreeSet::new();
    for job in jobs {
        let name = job["job_name"].as_str().expect("a job_name").to_owned();
        let target = targets.iter().find(|(j, _)| *j == name).unwrap_or_else(|| {
            panic!("prometheus.yml scrapes {name:?}, which the test does not run")
        });
        job["static_configs"] = serde_yaml::from_str(&format!("[{{targets: [\"{}\"]}}]", target.1))
            .expect("static_configs");
        seen.insert(name);
    }
    for (job, _) in targets {
        assert!(seen.contains(*job), "prometheus.yml has no job {job:?}");
    }
    serde_yaml::to_string(&config).expect("the config as YAML")
}

fn job(sample: &(Value, f64)) -> &str {
    sample.0["job"].as_str().unwrap_or("")
}

#[tokio::test]
async fn a_real_prometheus_scrapes_both_services_and_loads_the_rules() {
    let stack = Stack::start().await;
    let prometheus = Prometheus::start(
        &[
            ("pm-api", format!("127.0.0.1:{}", stack.api.port)),
            ("pm-ingest", format!("127.0.0.1:{}", stack.ingest.port)),
        ],
        &stack.read_key,
    );

    prometheus
        .until("up == 1 for pm-api and pm-ingest", || async {
            let up = prometheus.query("up").await;
            let healthy: BTreeSet<&str> = up.iter().filter(|s| s.1 == 1.0).map(job).collect();
            if healthy.contains("pm-api") && healthy.contains("pm-ingest") {
                Ok(())
            } else {
                Err(format!("{up:?}"))
            }
        })
        .await;

    prometheus
        .until("pm_webhooks_processed_total > 0 from pm-api", || async {
            let processed = prometheus.query("pm_webhooks_processed_total").await;
            if processed.iter().any(|s| job(s) == "pm-api" && s.1 > 0.0) {
                Ok(())
            } else {
                Err(format!("{processed:?}"))
            }
        })
        .await;
    let accepted = prometheus
        .query(r#"pm_ingest_webhooks_total{result="accepted"}"#)
        .await;
    assert!(
        accepted.iter().any(|s| job(s) == "pm-ingest" && s.1 > 0.0),
        "ingest's accepted webhook not in Prometheus: {accepted:?}"
    );

    let alerts: BTreeSet<String> = RuleFile::load()
        .alerts()
        .map(|(a, _)| a.to_owned())
        .collect();
    prometheus
        .until(
            "every alert rule loaded and evaluated without error",
            || async {
                let Some(data) = prometheus.api("/api/v1/rules", &[]).await else {
                    return Err("no answer from /api/v1/rules".into());
                };
                let rules: Vec<&Value> = data["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|g| g["rules"].as_array().into_iter().flatten())
                    .collect();
                let loaded: BTreeSet<String> = rules
                    .iter()
                    .filter(|r| r["type"] == "alerting")
                    .filter_map(|r| r["name"].as_str().map(str::to_owned))
                    .collect();
                let unhealthy: Vec<String> = rules
                    .iter()
                    .filter(|r| r["health"] != "ok")
                    .map(|r| format!("{} {} {}", r["name"], r["health"], r["lastError"]))
                    .collect();
                if loaded == alerts && unhealthy.is_empty() {
                    Ok(())
                } else {
                    Err(format!("loaded {loaded:?}, not yet healthy: {unhealthy:?}"))
                }
            },
        )
        .await;
}
