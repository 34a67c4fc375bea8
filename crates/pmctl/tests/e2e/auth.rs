//! `pmctl api-keys` against a running serve-api: a created key (printed once, alone on the
//! last line) opens the reads its scope allows; `list` never shows it; `revoke` closes it
//! within seconds.

use std::process::Output;
use std::time::Duration;

use pm_storage::testing::TestDatabase;

use crate::process::{eventually, keyed_client, run, Pmctl, SECRET};

fn api_keys(db: &TestDatabase, args: &[&str]) -> Output {
    let args = [&["api-keys"], args].concat();
    run(&args, &[("PM_DATABASE_URL", &db.url), ("PM_LOG", "warn")])
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn keys_are_created_listed_and_revoked_by_name() {
    let db = TestDatabase::new().await;
    let api = Pmctl::start(
        &["serve-api"],
        &[("PM_DATABASE_URL", &db.url), ("PM_WEBHOOK_SECRETS", SECRET)],
    )
    .await;

    let created = api_keys(
        &db,
        &[
            "create",
            "--name",
            "grafana",
            "--scope",
            "read",
            "--expires-in",
            "90d",
        ],
    );
    assert!(created.status.success(), "{}", stdout(&created));
    let out = stdout(&created);
    let key = out.lines().last().expect("a last line").to_owned();
    assert!(key.starts_with("pmk_") && !key.contains(' '), "{out}");

    let reader = keyed_client(&key);
    let r = reader.get(api.url("/orders")).send().await.expect("read");
    assert_eq!(r.status(), 200);
    let r = reader
        .post(api.url("/orders/o-1/hold"))
        .json(&serde_json::json!({"action": "clear"}))
        .send()
        .await
        .expect("hold");
    assert_eq!(r.status(), 403, "read scope only");

    let again = api_keys(&db, &["create", "--name", "grafana", "--scope", "admin"]);
    assert!(!again.status.success(), "names are unique");

    let listed = api_keys(&db, &["list", "--json"]);
    let text = stdout(&listed);
    assert!(
        !text.contains(&key[21..]),
        "list never shows a secret: {text}"
    );
    let keys: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(keys[0]["name"], "grafana");
    assert_eq!(keys[0]["scopes"], serde_json::json!(["read"]));
    assert_eq!(keys[0]["state"], "active");
    assert!(keys[0]["expires_at"].is_string());

    let revoked = api_keys(&db, &["revoke", "grafana"]);
    assert!(revoked.status.success(), "{}", stdout(&revoked));
    eventually("the revoked key is refused", || async {
        reader
            .get(api.url("/orders"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .is_ok_and(|r| r.status() == 401)
    })
    .await;
    let listed: serde_json::Value =
        serde_json::from_str(&stdout(&api_keys(&db, &["list", "--json"]))).expect("json");
    assert_eq!(listed[0]["state"], "revoked");
    assert!(!api_keys(&db, &["revoke", "nobody"]).status.success());

    // Both are in the audit trail, with the command as the actor.
    let audit = run(
        &["audit", "--object", "api_key:grafana", "--json"],
        &[("PM_DATABASE_URL", &db.url), ("PM_LOG", "warn")],
    );
    let rows: serde_json::Value = serde_json::from_str(&stdout(&audit)).expect("json");
    let actions: Vec<_> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["action"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(actions, ["api_key_revoked", "api_key_created"], "{rows}");
    assert!(rows[0]["actor"]
        .as_str()
        .is_some_and(|a| a.starts_with("cli:api-keys")));

    let json = api_keys(
        &db,
        &[
            "create", "--name", "ci.bot", "--scope", "read", "--scope", "operate", "--json",
        ],
    );
    let made: serde_json::Value = serde_json::from_str(&stdout(&json)).expect("json");
    assert!(made["key"].as_str().is_some_and(|k| k.starts_with("pmk_")));
    assert_eq!(made["scopes"], serde_json::json!(["read", "operate"]));
}
