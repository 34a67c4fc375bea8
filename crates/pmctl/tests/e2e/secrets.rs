//! Secrets: from files and systemd credentials, webhook secrets rotated with SIGHUP, and
//! the sentinel scan — every subcommand run with recognisable secrets, and nothing it
//! prints or writes may contain one.

use std::process::{Command, Output, Stdio};

use pm_storage::testing::TestDatabase;

use crate::process::{
    eventually, order_json, path, send_webhook_signed, write_file, Pmctl, SECRET,
};

/// Signs `body` with `secret` and POSTs it to the orders webhook of `target`.
async fn webhook(target: &Pmctl, secret: &str, body: &str) -> u16 {
    send_webhook_signed(target, "/webhooks/payments/orders", body, secret)
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn webhook_secrets_rotate_on_sighup_and_the_token_comes_from_a_systemd_credential() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    write_file(&credentials, "internal-token", "token-from-credential\n");
    let secrets = write_file(
        dir.path(),
        "webhook-secrets",
        "# the provider's current secret\nold-secret\n",
    );
    let db = TestDatabase::new().await;
    let env = [
        ("PM_DATABASE_URL", db.url.as_str()),
        ("PM_WEBHOOK_SECRETS_FILE", path(&secrets)),
        ("CREDENTIALS_DIRECTORY", path(&credentials)),
    ];
    let api = Pmctl::start(&["serve-api"], &env).await;

    let body = |n: u32| order_json(&format!("rot-e{n}"), &format!("rot-o{n}"), "success", 0);
    assert_eq!(webhook(&api, "old-secret", &body(1)).await, 202);
    assert_eq!(webhook(&api, "new-secret", &body(2)).await, 401);

    // Rotation: both, then the new one alone — no restart.
    write_file(dir.path(), "webhook-secrets", "old-secret\nnew-secret\n");
    api.hangup();
    eventually("the new secret is accepted", || async {
        webhook(&api, "new-secret", &body(2)).await == 202
    })
    .await;
    assert_eq!(webhook(&api, "old-secret", &body(3)).await, 202);
    write_file(dir.path(), "webhook-secrets", "new-secret\n");
    api.hangup();
    eventually("the old secret is refused", || async {
        webhook(&api, "old-secret", &body(4)).await == 401
    })
    .await;
    // A file emptied by mistake keeps the running secrets.
    write_file(dir.path(), "webhook-secrets", "\n");
    api.hangup();
    api.wait_for_log("webhook secrets NOT reloaded").await;
    assert_eq!(webhook(&api, "new-secret", &body(5)).await, 202);

    // The service token came from the credential.
    let envelope = format!(
        r#"{{"event_id":"00000000-0000-4000-8000-0000000000aa","type":"order","received_at":"2026-01-01T00:00:00Z","payload":{}}}"#,
        body(20)
    );
    let internal = |token: &'static str| {
        let (url, envelope) = (api.url("/internal/updates/orders"), envelope.clone());
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(envelope)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(internal("token-from-the-flag").await, 401);
    assert_eq!(internal("token-from-credential").await, 202);
}

/// Recognisable values for every kind of secret.
const SENTINELS: [&str; 6] = [
    "SENTINELdbpass7f3a",
    "SENTINELwebhook9c1e",
    "SENTINELtoken52bd",
    "SENTINELapikey0e77",
    "SENTINELkafka4a90",
    "SENTINELurlpass31c5",
];

struct Scan {
    dir: tempfile::TempDir,
    outputs: Vec<(String, String)>,
}

impl Scan {
    /// Runs `pmctl args` in the scan's directory (where reports are written), with debug
    /// logging so that everything a log line could carry is there to be found.
    fn run(&mut self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_pmctl"))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("DATABASE_URL")
            .env("PM_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("run pmctl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.outputs.push((args.join(" "), text));
        out
    }

    fn ok(&mut self, args: &[&str], env: &[(&str, &str)]) {
        let out = self.run(args, env);
        let (cmd, text) = self.outputs.last().unwrap();
        assert!(out.status.success(), "pmctl {cmd} failed:\n{text}");
    }

    /// Every output and every file under the directory, checked for every sentinel.
    fn assert_clean(&self) {
        let mut files = Vec::new();
        let mut stack = vec![self.dir.path().to_owned()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    files.push(path);
                }
            }
        }
        let mut looked_at = 0;
        for file in &files {
            // The secret files themselves are where the sentinels are meant to be.
            if file.starts_with(self.dir.path().join("secrets")) {
                continue;
            }
            let bytes = std::fs::read(file).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            for s in SENTINELS {
                assert!(!text.contains(s), "{s} written to {}", file.display());
            }
            looked_at += 1;
        }
        for (cmd, text) in &self.outputs {
            for s in SENTINELS {
                assert!(!text.contains(s), "pmctl {cmd} printed {s}:\n{text}");
            }
        }
        // The scan looked at something: the reports and the server logs.
        assert!(looked_at >= 3, "only {looked_at} files written: {files:?}");
    }
}

#[tokio::test]
async fn no_subcommand_prints_logs_or_writes_a_secret() {
    let db = TestDatabase::new().await;
    let brokers = tokio::task::spawn_blocking(pm_kafka::testing::brokers)
        .await
        .unwrap();
    let mut scan = Scan {
        dir: tempfile::tempdir().unwrap(),
        outputs: Vec::new(),
    };
    let secrets = scan.dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let [db_password, webhook_secret, token, api_key, kafka_password, url_password] = SENTINELS;
    let password_file = write_file(&secrets, "db-password", db_password);
    let token_file = write_file(&secrets, "token", token);
    let kafka_password_file = write_file(&secrets, "kafka-password", kafka_password);
    // The throw-away cluster trusts local connections, so any password connects; what
    // matters is where the password goes.
    let mut with_password = reqwest::Url::parse(&db.url).unwrap();
    with_password.set_password(Some(url_password)).unwrap();
    let url = with_password.to_string();
    let common = [
        ("PM_DATABASE_URL", url.as_str()),
        ("PM_DATABASE_PASSWORD_FILE", path(&password_file)),
        ("PM_WEBHOOK_SECRETS", webhook_secret),
        ("PM_INTERNAL_TOKEN_FILE", path(&token_file)),
    ];

    scan.ok(&["migrate"], &common);
    scan.ok(&["partition-maintain"], &common);
    scan.ok(
        &["api-keys", "create", "--name", "scan", "--scope", "read"],
        &common,
    );
    scan.ok(&["api-keys", "list"], &common);
    scan.ok(&["audit"], &common);
    scan.ok(&["reconcile-captures"], &common);
    // The password in the URL, as a flag, into a report.
    scan.ok(
        &[
            "bench",
            "partitioning",
            "--database-url",
            &url,
            "--rows",
            "2000",
            "--days",
            "5",
            "--disputes",
            "300",
            "--runs",
            "1",
        ],
        &[],
    );
    // A database that refuses: the error names no password.
    let refused = format!("postgres://pm:{url_password}@127.0.0.1:1/payments");
    assert!(!scan
        .run(&["migrate", "--database-url", &refused], &[])
        .status
        .success());
    // A key the API does not know, into verify's error.
    let api = {
        let log = std::fs::File::create(scan.dir.path().join("serve-api.log")).unwrap();
        let port = crate::process::free_port();
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_pmctl"))
            .args(["serve-api", "--listen", &listen])
            .current_dir(scan.dir.path())
            .env_remove("DATABASE_URL")
            .env("PM_LOG", "debug")
            .envs(common.iter().copied())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        (child, format!("http://{listen}"))
    };
    let (mut api_child, api_url) = api;
    eventually("serve-api is up", || async {
        reqwest::get(format!("{api_url}/health/live"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    // Requests that fail on every secret: a wrong key, a forged signature, a wrong token.
    let client = reqwest::Client::new();
    let forged = pm_domain::signature::header_value(SECRET.as_bytes(), 0, b"{}");
    for request in [
        client.get(format!("{api_url}/orders")).bearer_auth(api_key),
        client
            .post(format!("{api_url}/webhooks/payments/orders"))
            .header(pm_domain::signature::HEADER, forged)
            .header("content-type", "application/json")
            .body("{}"),
        client
            .post(format!("{api_url}/internal/updates/orders"))
            .bearer_auth(webhook_secret)
            .header("content-type", "application/json")
            .body("{}"),
    ] {
        let status = request.send().await.unwrap().status();
        assert!(status.is_client_error(), "{status}");
    }
    let empty = pm_scenario::Ledger {
        format: pm_scenario::ledger::LEDGER_FORMAT,
        scenario: "scan".into(),
        seed: 0,
        id_prefix: "scan".into(),
        orders: Vec::new(),
        disputes: Vec::new(),
        counts: pm_scenario::Counts::default(),
        rejected_event_ids: Default::default(),
    };
    let ledger = write_file(
        scan.dir.path(),
        "ledger.json",
        &serde_json::to_string(&empty).unwrap(),
    );
    scan.run(
        &["verify", "--api-url", &api_url, "--ledger", path(&ledger)],
        &[("PM_API_KEY", api_key)],
    );
    // Kafka secrets, as a property and from a file (a plaintext listener ignores them).
    scan.run(
        &[
            "replay-dlq",
            "list",
            "--kafka-brokers",
            &brokers,
            "--kafka-topic-prefix",
            "scan.",
            "--kafka-config",
            &format!("ssl.key.password={kafka_password}"),
            "--kafka-sasl-password-file",
            path(&kafka_password_file),
        ],
        &common,
    );
    scan.run(
        &[
            "loadtest",
            "--target",
            &api_url,
            "--api-url",
            &api_url,
            "--rate",
            "20",
            "--duration",
            "1s",
            "--warmup",
            "0s",
        ],
        &[
            ("PM_WEBHOOK_SECRETS", webhook_secret),
            ("PM_API_KEY", api_key),
            ("PM_KAFKA_BROKERS", brokers.as_str()),
        ],
    );
    // The report names the cluster the services would use, and its release, read from the
    // broker process of this machine.
    let reports = scan.dir.path().join("bench-results");
    let report = std::fs::read_dir(&reports)
        .expect("bench-results")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("loadtest-"))
                && p.extension().is_some_and(|e| e == "json")
        })
        .expect("a load-test report");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    assert_eq!(
        report["kafka"]["brokers"],
        brokers.as_str(),
        "{}",
        report["kafka"]
    );
    assert!(
        report["kafka"]["broker_count"].as_u64() >= Some(1),
        "{}",
        report["kafka"]
    );
    assert_eq!(
        report["kafka"]["release"],
        pm_kafka::local::kafka_version(),
        "{}",
        report["kafka"]
    );
    api_child.kill().unwrap();
    api_child.wait().unwrap();
    scan.assert_clean();
}
