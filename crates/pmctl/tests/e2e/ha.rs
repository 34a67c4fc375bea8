//! Failover under load on a real highly available PostgreSQL (`scripts/ha.sh`: three etcd
//! members, three Patroni nodes, HAProxy): the leader is killed while the provider
//! simulator plays a steady scenario into `serve-api`, Patroni promotes a replica, and
//! `pmctl verify` proves that nothing acknowledged was lost and that what was refused
//! during the failover was retried and applied once. A probe beside the scenario sends a
//! webhook every 100 ms and records what each got, for the unavailability window.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::process::{
    api_key_in, eventually, free_port, order_json, run, send_webhook, text, write_file, Pmctl,
    SECRET,
};

/// A cluster of `scripts/ha.sh`, stopped (and its directory deleted) on drop.
struct Ha {
    dir: tempfile::TempDir,
    write_url: String,
}

fn ha_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ha.sh")
}

fn ha_sh(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(ha_script())
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .expect("run scripts/ha.sh")
}

impl Ha {
    fn start(sync: bool) -> Ha {
        let dir = tempfile::tempdir().expect("tmp");
        let mut args = vec!["start"];
        if sync {
            args.push("--sync");
        }
        let out = ha_sh(&args, dir.path());
        assert!(out.status.success(), "ha.sh start: {}", text(&out));
        let env = std::fs::read_to_string(dir.path().join("env")).expect("DIR/env");
        let write_url = env
            .lines()
            .find_map(|l| l.strip_prefix("PM_DATABASE_URL="))
            .expect("PM_DATABASE_URL in DIR/env")
            .to_owned();
        Ha { dir, write_url }
    }

    fn leader(&self) -> String {
        let out = ha_sh(&["leader"], self.dir.path());
        assert!(out.status.success(), "ha.sh leader: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn status(&self) -> String {
        text(&ha_sh(&["status"], self.dir.path()))
    }
}

impl Drop for Ha {
    fn drop(&mut self) {
        let _ = ha_sh(&["stop"], self.dir.path());
    }
}

/// A steady scenario of `orders` at `rate` webhooks/s: long enough that the failover falls
/// in its middle, with disputes, merchant actions and a little of every delivery fault.
fn steady(dir: &Path, name: &str, seed: u64, orders: u32, rate: f64) -> PathBuf {
    write_file(
        dir,
        &format!("{name}.toml"),
        &format!(
            r#"name = "{name}"
description = "steady load across a failover"
seed = {seed}

[traffic]
orders = {orders}
rate = {rate}

[orders]
updates_min = 0
updates_max = 3
success_share = 0.80
failed_share = 0.12
spread = 8

[disputes]
share = 0.2
outcomes = {{ won = 40, lost = 40, undecided = 20 }}
updated_share = 0.3
evidence_share = 0.5
submit_share = 0.8
reasons = {{ fraud = 1, duplicate = 1 }}

[money]
currencies = {{ USD = 1, EUR = 1 }}
min = "1.00"
max = "500.00"

[users]
count = 100
hot_users = 3
hot_share = 0.2

[faults]
duplicate = 0.05
duplicate_copies_max = 2
duplicate_far_share = 0.3
reorder = 0.05
reorder_window = 8
"#
        ),
    )
}

/// What the probe saw: each request's send time, how long it took and its status (0: no
/// HTTP answer at all).
struct Probe {
    seen: Vec<(Instant, Duration, u16, String)>,
}

impl Probe {
    /// From the first failed request to the first request after it that succeeded; zero
    /// when none failed (the failover then only shows as slow requests).
    fn window(&self) -> Option<Duration> {
        let Some(first_failed) = self.seen.iter().position(|r| !is_success(r.2)) else {
            return Some(Duration::ZERO);
        };
        let recovered = self.seen[first_failed..].iter().find(|r| is_success(r.2))?;
        Some(recovered.0 - self.seen[first_failed].0)
    }

    /// The slowest request: a failover's cost when requests wait instead of failing.
    fn slowest(&self) -> Duration {
        self.seen.iter().map(|r| r.1).max().unwrap_or_default()
    }
}

fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// Sends an order webhook with a fresh id every 100 ms until `stop`.
async fn probe(api: &Pmctl, tag: &str, stop: &AtomicBool) -> Probe {
    let mut seen = Vec::new();
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let order = format!("probe-{tag}-{n}");
        let sent = Instant::now();
        let body = order_json(&format!("evt-{order}"), &order, "created", 0);
        let status = tokio::time::timeout(
            Duration::from_secs(30),
            send_webhook(api, "/webhooks/payments/orders", &body),
        )
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
        seen.push((sent, sent.elapsed(), status, order));
        tokio::time::sleep(Duration::from_millis(100).saturating_sub(sent.elapsed())).await;
    }
    Probe { seen }
}

/// What a drill found.
struct Drill {
    /// From the probe's first failed request to its first successful one after that.
    window: Duration,
    /// The probe's slowest request.
    slowest: Duration,
    /// The probe's acknowledged webhooks missing from the new primary.
    lost: usize,
    /// Whether `pmctl verify` found the scenario applied exactly (its output otherwise).
    verified: Result<(), String>,
}

/// Plays a steady scenario while the leader is killed (`how`: `postgres` or `node`), and
/// checks what every failover must give whatever the replication: a new leader, failed
/// requests answered 503 (never another error, never a hang), writes back by themselves.
/// What was lost, if anything, is for the caller to judge — except behind Kafka
/// (`eventual`), where the test waits until every acknowledged webhook is applied and the
/// scenario verifies, and fails if that never comes.
async fn drill(
    ha: &Ha,
    (target, api): (&Pmctl, &Pmctl),
    eventual: bool,
    provider_port: u16,
    how: &str,
    seed: u64,
) -> Drill {
    let dir = tempfile::tempdir().expect("tmp");
    let scenario = steady(dir.path(), &format!("failover-{how}"), seed, 300, 40.0);
    let ledger = dir.path().join("ledger.json");
    let (scenario_arg, ledger_arg) = (scenario.display().to_string(), ledger.display().to_string());
    let (listen, api_url, target_url) = (
        format!("127.0.0.1:{provider_port}"),
        api.url(""),
        target.url(""),
    );
    let sim = tokio::process::Command::new(env!("CARGO_BIN_EXE_pmctl"))
        .args([
            "simulate-provider",
            "--listen",
            &listen,
            "--scenario",
            &scenario_arg,
            "--target",
            &target_url,
            "--api-url",
            &api_url,
            "--webhook-secret",
            SECRET,
            "--ledger",
            &ledger_arg,
            "--exit-when-done",
        ])
        .env_remove("PM_DATABASE_URL")
        .env("PM_API_KEY", &api.key)
        .env("PM_LOG", "warn")
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn simulate-provider");
    let stop = AtomicBool::new(false);
    let cluster = ha.dir.path().to_owned();
    let kill = how_static(how);
    let failover = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let killed = tokio::task::spawn_blocking({
            let cluster = cluster.clone();
            move || ha_sh(&["kill-leader", kill], &cluster)
        })
        .await
        .expect("kill-leader");
        assert!(
            killed.status.success(),
            "ha.sh kill-leader: {}",
            text(&killed)
        );
        let played = tokio::time::timeout(Duration::from_secs(180), sim.wait_with_output())
            .await
            .expect("the scenario finished")
            .expect("simulate-provider ran");
        stop.store(true, Ordering::Relaxed);
        (
            String::from_utf8_lossy(&killed.stdout).trim().to_owned(),
            played,
        )
    };
    let tag = format!("{how}-{seed}");
    let (probe, (killed, played)) = tokio::join!(probe(target, &tag, &stop), failover);
    assert!(
        played.status.success(),
        "simulate-provider across the failover: {}",
        String::from_utf8_lossy(&played.stderr)
    );

    // A new leader took over.
    assert_ne!(ha.leader(), killed, "{}", ha.status());

    // The probe: requests during the failover waited or failed, and those that failed
    // were answered 503 (the database unavailable, a retry is safe), never with another
    // error; the writes came back by themselves.
    let refused: Vec<u16> = probe
        .seen
        .iter()
        .map(|r| r.2)
        .filter(|s| !is_success(*s))
        .collect();
    assert!(
        refused.iter().all(|s| *s == 503),
        "{how}: failed requests must be 503, got {refused:?}"
    );
    let window = probe.window().expect("the writes came back");

    let acked: Vec<&str> = probe
        .seen
        .iter()
        .filter(|r| is_success(r.2))
        .map(|r| r.3.as_str())
        .collect();
    let pool = pm_storage::connect(&ha.write_url, &Default::default()).expect("pool");
    let stored = || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE order_id = ANY($1)")
            .bind(&acked)
            .fetch_one(&pool)
            .await
            .expect("probe orders");
        usize::try_from(n).expect("a count")
    };
    let verify = || {
        let out = run(
            &["verify", "--ledger", &ledger_arg, "--api-url", &api_url],
            &[("PM_API_KEY", &api.key), ("PM_LOG", "warn")],
        );
        if out.status.success() && text(&out).contains("nothing lost, nothing doubled") {
            Ok(())
        } else {
            Err(text(&out))
        }
    };
    if eventual {
        eventually("every acknowledged probe webhook applied", || async {
            stored().await == acked.len()
        })
        .await;
        eventually("the scenario verified", || async { verify().is_ok() }).await;
    }
    let lost = acked.len() - stored().await;
    pool.close().await;
    let verified = verify();
    Drill {
        window,
        slowest: probe.slowest(),
        lost,
        verified,
    }
}

fn how_static(how: &str) -> &'static str {
    match how {
        "postgres" => "postgres",
        "node" => "node",
        other => panic!("no drill {other}"),
    }
}

/// A serve-api on the cluster's write address (HAProxy → leader), with `args` and `env`.
async fn api_on(ha: &Ha, provider_port: u16, args: &[&str], env: &[(&str, &str)]) -> Pmctl {
    let out = run(&["migrate"], &[("PM_DATABASE_URL", &ha.write_url)]);
    assert!(out.status.success(), "migrate: {}", text(&out));
    let pool = pm_storage::connect(&ha.write_url, &Default::default()).expect("pool");
    let key = api_key_in(&pool).await;
    pool.close().await;
    let provider = format!("http://127.0.0.1:{provider_port}");
    let mut all = vec![
        ("PM_DATABASE_URL", ha.write_url.as_str()),
        ("PM_WEBHOOK_SECRETS", SECRET),
        ("PM_PROVIDER_URL", provider.as_str()),
    ];
    all.extend_from_slice(env);
    let mut api = Pmctl::start(&[&["serve-api"], args].concat(), &all).await;
    api.key = key;
    api.wait_for("/health/ready", 200).await;
    api
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_replication_loses_nothing_acknowledged_when_the_leader_dies() {
    let ha = Ha::start(true);
    let provider_port = free_port();
    let api = api_on(&ha, provider_port, &[], &[]).await;
    // The leader's PostgreSQL dies: its Patroni hands over at once. Then the whole leader
    // node dies: the others wait for its leader key to expire.
    for (how, seed) in [("postgres", 11), ("node", 12)] {
        let d = drill(&ha, (&api, &api), false, provider_port, how, seed).await;
        eprintln!(
            "failover window, synchronous replication, {how} killed: {:?} (slowest request \
             {:?})",
            d.window, d.slowest
        );
        assert_eq!(d.lost, 0, "{how}: acknowledged webhooks lost");
        if let Err(report) = d.verified {
            panic!("{how}: the scenario is not applied exactly once: {report}");
        }
    }
}

/// Asynchronous replication fails over the same way; what it does not promise is that the
/// last acknowledged commits reached the replica that is promoted, so losses are reported,
/// not ruled out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asynchronous_replication_fails_over_under_load() {
    let ha = Ha::start(false);
    let provider_port = free_port();
    let api = api_on(&ha, provider_port, &[], &[]).await;
    let d = drill(&ha, (&api, &api), false, provider_port, "postgres", 21).await;
    eprintln!(
        "failover window, asynchronous replication, postgres killed: {:?} (slowest request \
         {:?}); acknowledged webhooks lost: {}; verify: {}",
        d.window,
        d.slowest,
        d.lost,
        if d.verified.is_ok() {
            "exact"
        } else {
            "mismatches"
        }
    );
}

/// Kafka mode across a failover: ingest keeps accepting (Kafka is up), the API's consumers
/// meet the unavailable database as a transient error — they pause and retry the same
/// records instead of dead-lettering them — and once a new leader takes writes, everything
/// accepted is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_mode_pauses_and_resumes_across_a_failover() {
    let ha = Ha::start(true);
    let brokers = pm_kafka::testing::brokers();
    let prefix = pm_kafka::testing::unique("e2e-ha");
    let kafka = [
        ("PM_KAFKA_BROKERS", brokers.as_str()),
        ("PM_KAFKA_TOPIC_PREFIX", prefix.as_str()),
    ];
    let ingest = Pmctl::start(
        &["serve-ingest", "--sink", "kafka"],
        &[&kafka[..], &[("PM_WEBHOOK_SECRETS", SECRET)]].concat(),
    )
    .await;
    let provider_port = free_port();
    let api = api_on(&ha, provider_port, &["--mode", "kafka"], &kafka).await;
    let d = drill(&ha, (&ingest, &api), true, provider_port, "postgres", 31).await;
    eprintln!(
        "failover in kafka mode, synchronous replication, postgres killed: ingest refused for \
         {:?}",
        d.window
    );
    assert_eq!(
        d.window,
        Duration::ZERO,
        "ingest does not depend on the database"
    );
    assert_eq!(d.lost, 0);
    // Nothing was dead-lettered: the failover was a pause, not a poison record.
    let config = pm_kafka::KafkaConfig::new(&brokers, "e2e-ha");
    let topics = pm_kafka::Topics::with_prefix(&prefix);
    for topic in [&topics.orders, &topics.disputes] {
        let dead = pm_kafka::replay::list(
            &config,
            &pm_kafka::Topics::dlq(topic),
            &pm_kafka::replay::Filter::default(),
            1000,
        )
        .expect("list the DLQ");
        assert!(dead.is_empty(), "{topic}: {} dead letters", dead.len());
    }
}
