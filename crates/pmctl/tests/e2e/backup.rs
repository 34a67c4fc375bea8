//! Backups and point-in-time recovery with pgBackRest (`scripts/backup.sh`) on a real cluster
//! that archives its WAL: a full backup, a scenario played through `serve-api`, an incremental
//! backup, a moment noted, a second scenario; then a restore to that moment into a new data
//! directory, started as a cluster of its own with a `serve-api` in front. `pmctl verify`
//! finds the first scenario's ledger there and none of the second's, the tables hold exactly
//! what they held at that moment, and pg_partman's configuration and partitions came back
//! with them (maintenance runs cleanly).

use std::path::Path;
use std::process::{Command, Output};

use pm_embedded_pg::{EmbeddedCluster, EmbeddedOptions};
use pm_scenario::Ledger;
use sqlx::PgPool;

use crate::process::{api_key_in, eventually, free_port, path, run, text, Pmctl, SECRET};

/// Tables whose rows must be at the restored moment exactly as they were.
const TABLES: [&str; 7] = [
    "orders",
    "disputes",
    "dispute_evidence",
    "order_events",
    "dispute_events",
    "processed_webhooks",
    "outbox",
];

const QUIET: (&str, &str) = ("PM_LOG", "warn,librdkafka=off,rdkafka=off");

fn backup_sh(args: &[&str], config_dir: &Path) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/backup.sh");
    let started = std::time::Instant::now();
    let out = Command::new(script)
        .args(args)
        .arg("--config-dir")
        .arg(config_dir)
        .output()
        .expect("run scripts/backup.sh");
    assert!(
        out.status.success(),
        "backup.sh {}: {}",
        args.join(" "),
        text(&out)
    );
    eprintln!("backup.sh {}: {:?}", args.join(" "), started.elapsed());
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Plays the quickstart scenario with `seed` (its ids are `quickstart-<seed>-…`) into `api`,
/// writing the ledger to `ledger`.
fn play(api: &Pmctl, provider_port: u16, seed: u64, ledger: &Path) {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/quickstart.toml");
    let (listen, api_url, seed) = (
        format!("127.0.0.1:{provider_port}"),
        api.url(""),
        seed.to_string(),
    );
    let played = run(
        &[
            "simulate-provider",
            "--listen",
            &listen,
            "--scenario",
            path(&scenario),
            "--seed",
            &seed,
            "--target",
            &api_url,
            "--api-url",
            &api_url,
            "--webhook-secret",
            SECRET,
            "--ledger",
            path(ledger),
            "--speed",
            "4",
            "--exit-when-done",
        ],
        &[("PM_API_KEY", &api.key), QUIET],
    );
    assert!(played.status.success(), "seed {seed}: {}", text(&played));
}

fn verify(api: &Pmctl, ledger: &Path) -> Output {
    run(
        &[
            "verify",
            "--ledger",
            path(ledger),
            "--api-url",
            &api.url(""),
            "--json",
        ],
        &[("PM_API_KEY", &api.key), QUIET],
    )
}

fn ledger(file: &Path) -> Ledger {
    Ledger::from_json(&std::fs::read(file).expect("read a ledger")).expect("a ledger")
}

async fn serve_api(url: &str, key: &str, provider_port: u16) -> Pmctl {
    let provider = format!("http://127.0.0.1:{provider_port}");
    let mut api = Pmctl::start(
        &["serve-api"],
        &[
            ("PM_DATABASE_URL", url),
            ("PM_WEBHOOK_SECRETS", SECRET),
            ("PM_PROVIDER_URL", &provider),
        ],
    )
    .await;
    api.key = key.to_owned();
    api.wait_for("/health/ready", 200).await;
    api
}

/// What the database holds, for comparing two moments: per table its row count and a digest
/// of all its rows; pg_partman's configuration; the partitions of its tables.
#[derive(Debug, PartialEq, Eq)]
struct State {
    tables: Vec<(String, i64, String)>,
    part_config: Vec<String>,
    partitions: Vec<String>,
}

/// The state as of one snapshot, and the moment of it as a recovery target: `now()` is the
/// transaction's start, after every commit so far and before the next one.
async fn state(pool: &PgPool) -> (State, String) {
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await
        .expect("repeatable read");
    let moment: String = sqlx::query_scalar(
        "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
    )
    .fetch_one(&mut *tx)
    .await
    .expect("now");
    let mut tables = Vec::new();
    for table in TABLES {
        let (rows, digest): (i64, String) = sqlx::query_as(&format!(
            "SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') \
             FROM {table} t"
        ))
        .fetch_one(&mut *tx)
        .await
        .unwrap_or_else(|e| panic!("digest of {table}: {e}"));
        tables.push((table.to_owned(), rows, digest));
    }
    let part_config = sqlx::query_scalar(
        "SELECT concat_ws(' ', parent_table, control, partition_interval, premake, \
                infinite_time_partitions) \
         FROM partman.part_config ORDER BY parent_table",
    )
    .fetch_all(&mut *tx)
    .await
    .expect("partman.part_config");
    let partitions = sqlx::query_scalar(
        "SELECT i.inhparent::regclass::text || ' ' || i.inhrelid::regclass::text \
         FROM pg_inherits i \
         JOIN partman.part_config c ON c.parent_table::regclass = i.inhparent \
         ORDER BY 1",
    )
    .fetch_all(&mut *tx)
    .await
    .expect("partitions");
    tx.commit().await.expect("commit");
    let state = State {
        tables,
        part_config,
        partitions,
    };
    (state, moment)
}

fn rows(state: &State, table: &str) -> i64 {
    state
        .tables
        .iter()
        .find(|(name, ..)| name == table)
        .map(|(_, rows, _)| *rows)
        .expect("a table of the state")
}

#[tokio::test]
async fn a_restore_to_a_moment_holds_exactly_what_was_committed_by_then() {
    // The server user (`postgres` when we are root) must reach every directory below; a
    // temporary directory is open to it, and canonical, as pgBackRest compares the data
    // directory's path with the server's own.
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = std::fs::canonicalize(tmp.path()).expect("a canonical path");
    let (config_dir, repo) = (dir.join("backup"), dir.join("repo"));
    let restored_dir = dir.join("restored");

    // As an operator would: configure, start the server with the settings that prints, and
    // only then create the stanza (which asks the running server).
    let (data_dir, port) = (dir.join("data"), free_port());
    let configured = backup_sh(
        &[
            "configure",
            "--pgdata",
            path(&data_dir),
            "--repo",
            path(&repo),
            "--pg-port",
            &port.to_string(),
            // The embedded cluster keeps its socket in its data directory.
            "--pg-socket-dir",
            path(&data_dir),
        ],
        &config_dir,
    );
    let settings: Vec<(String, String)> = stdout(&configured)
        .lines()
        .map(|line| {
            let (name, value) = line.split_once('=').expect("name=value");
            (name.to_owned(), value.to_owned())
        })
        .collect();
    let archive_command = stdout(&backup_sh(&["archive-command"], &config_dir));
    assert!(
        settings.contains(&("archive_command".to_owned(), archive_command)),
        "{settings:?}"
    );
    let cluster = EmbeddedCluster::start(EmbeddedOptions {
        data_dir: Some(data_dir),
        port: Some(port),
        settings,
        ..EmbeddedOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("a cluster that archives did not start: {e}"));
    backup_sh(&["stanza-create"], &config_dir);

    let url = cluster.admin_url();
    let migrated = run(&["migrate"], &[("PM_DATABASE_URL", &url), QUIET]);
    assert!(migrated.status.success(), "{}", text(&migrated));
    let pool = pm_storage::connect(&url, &Default::default()).expect("pool");
    let key = api_key_in(&pool).await;
    backup_sh(&["backup", "full"], &config_dir);

    // A, an incremental backup, the moment, then B.
    let provider_port = free_port();
    let api = serve_api(&url, &key, provider_port).await;
    let (ledger_a, ledger_b) = (dir.join("ledger-a.json"), dir.join("ledger-b.json"));
    play(&api, provider_port, 1, &ledger_a);
    backup_sh(&["backup", "incr"], &config_dir);
    let info: serde_json::Value =
        serde_json::from_str(&stdout(&backup_sh(&["info", "--json"], &config_dir)))
            .expect("info as JSON");
    let types: Vec<&str> = info[0]["backup"]
        .as_array()
        .expect("the backups")
        .iter()
        .filter_map(|b| b["type"].as_str())
        .collect();
    assert_eq!(types, ["full", "incr"], "{info}");
    let incremental = &info[0]["backup"][1];
    let label = incremental["label"].as_str().expect("a label");
    // pgBackRest picks the newest backup that ended before the target in whole seconds; a
    // moment in the second the incremental backup ended would restore the full one (and
    // replay more WAL: slower, not wrong). This test wants the incremental one restored.
    let stopped = incremental["timestamp"]["stop"]
        .as_i64()
        .expect("its stop time");
    eventually(
        "the database clock past the backup's last second",
        || async {
            sqlx::query_scalar::<_, f64>("SELECT extract(epoch FROM now())::float8")
                .fetch_one(&pool)
                .await
                .is_ok_and(|now| now.floor() as i64 > stopped)
        },
    )
    .await;
    let (at_moment, moment) = state(&pool).await;
    play(&api, provider_port, 2, &ledger_b);
    let (a, b) = (ledger(&ledger_a), ledger(&ledger_b));
    assert_ne!(a.id_prefix, b.id_prefix, "two runs with ids of their own");
    for ledger in [&ledger_a, &ledger_b] {
        let verified = verify(&api, ledger);
        assert!(verified.status.success(), "{}", text(&verified));
    }
    let (after_b, _) = state(&pool).await;
    assert_eq!(
        rows(&after_b, "orders"),
        (a.orders.len() + b.orders.len()) as i64,
        "the original holds both runs"
    );
    assert_eq!(rows(&at_moment, "orders"), a.orders.len() as i64);
    assert_eq!(rows(&at_moment, "disputes"), a.disputes.len() as i64);
    assert_eq!(
        at_moment.part_config.len(),
        3,
        "pg_partman keeps the two event tables and the outbox: {:?}",
        at_moment.part_config
    );
    assert!(!at_moment.partitions.is_empty());
    // The WAL segment holding B's commits reaches the archive: recovery stops at the first
    // commit after the moment, so it must find one.
    backup_sh(&["check"], &config_dir);
    drop(api);

    let started = std::time::Instant::now();
    let restore = backup_sh(&["restore", &moment, path(&restored_dir)], &config_dir);
    assert!(
        text(&restore).contains(&format!("restore backup set {label}")),
        "the newest backup before the moment is the incremental one: {}",
        text(&restore)
    );
    let restored = EmbeddedCluster::start(EmbeddedOptions {
        data_dir: Some(restored_dir.clone()),
        ..EmbeddedOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("the restored cluster did not start: {e}"));
    eprintln!(
        "restored to {moment} and promoted in {:?}",
        started.elapsed()
    );
    assert!(
        std::fs::read_to_string(restored.log_path())
            .expect("the restored server's log")
            .contains("recovery stopping before commit"),
        "recovery stopped at the moment, not at the end of the WAL:\n{}",
        restored.log_tail()
    );

    let restored_url = restored.admin_url();
    let restored_pool = pm_storage::connect(&restored_url, &Default::default()).expect("pool");
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&restored_pool)
        .await
        .expect("ask the restored server");
    assert!(!in_recovery, "promoted by the time the cluster started");
    let (now_restored, _) = state(&restored_pool).await;
    assert_eq!(
        now_restored, at_moment,
        "the restored database holds exactly what was committed at {moment}"
    );

    let api = serve_api(&restored_url, &key, provider_port).await;
    let verified = verify(&api, &ledger_a);
    assert!(
        verified.status.success(),
        "the first run, whole: {}",
        text(&verified)
    );
    let not_there = verify(&api, &ledger_b);
    assert_eq!(
        not_there.status.code(),
        Some(3),
        "the second run is a mismatch: {}",
        text(&not_there)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&not_there.stdout).expect("verify's JSON report");
    let rows_of_b = report["orders"].as_array().expect("order rows");
    assert!(
        rows_of_b.iter().all(|row| row["actual"] == "missing"),
        "none of B's orders: {report}"
    );
    assert_eq!(
        rows_of_b
            .iter()
            .filter_map(|row| row["count"].as_u64())
            .sum::<u64>(),
        b.orders.len() as u64,
        "{report}"
    );
    assert_eq!(
        report["missing"].as_array().map(Vec::len),
        Some(report["events_expected"].as_u64().expect("events expected") as usize),
        "none of B's events: {report}"
    );

    let maintained = run(
        &["partition-maintain", "--json"],
        &[("PM_DATABASE_URL", &restored_url), QUIET],
    );
    assert!(
        maintained.status.success(),
        "partition-maintain on the restored database: {}",
        text(&maintained)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&maintained.stdout).expect("maintenance report");
    let tables: Vec<&str> = report["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .filter_map(|t| t["table"].as_str())
        .collect();
    for table in [
        "public.order_events",
        "public.dispute_events",
        "public.outbox",
    ] {
        assert!(tables.contains(&table), "{table} maintained: {report}");
    }
    for table in report["tables"].as_array().expect("tables") {
        assert!(
            table["partitions"].as_u64() >= Some(1)
                && table["default_rows"] == 0
                && table["dropped"] == serde_json::json!([]),
            "partitions in place, nothing in the default partition: {report}"
        );
    }
    let (maintained_state, _) = state(&restored_pool).await;
    assert_eq!(
        maintained_state.part_config, at_moment.part_config,
        "pg_partman's configuration is kept"
    );

    drop(api);
    restored_pool.close().await;
    pool.close().await;
    restored.stop().await.expect("stop the restored cluster");
    cluster.stop().await.expect("stop the original");
}
