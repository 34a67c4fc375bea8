//! Starting `pmctl` processes and waiting for them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pm_storage::testing::TestDatabase;

/// A client that sends a key as its bearer token.
pub use pm_api::testing::client_with_key as keyed_client;

pub const SECRET: &str = "whsec_e2e";
pub const USER: &str = "0b6f5c3e-8d1a-4c7e-9a51-2f0e1b2c3d4e";

/// Runs `pmctl <args>` to its end with `env`, never with a database URL of the test
/// process's own environment.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pmctl"))
        .args(args)
        .env_remove("PM_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run pmctl")
}

/// Runs `pmctl <global> demo <args>` to its end, its services on ports the kernel picks and
/// never with a database URL or a trace collector of the test process's own environment.
/// Asynchronous, so that what the test serves in-process (a collector) keeps being served.
pub async fn demo(global: &[&str], args: &[&str], env: &[(&str, &str)]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_pmctl"))
        .args(global)
        .arg("demo")
        .args([
            "--api-port",
            "0",
            "--ingest-port",
            "0",
            "--provider-port",
            "0",
        ])
        .args(args)
        .env_remove("PM_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run the demo")
}

/// stdout and stderr of a finished `pmctl`, for assertions and their messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A temporary path as the argument or variable it becomes.
pub fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// Writes `dir/name` and returns its path.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write a test file");
    path
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running `pmctl` subcommand, killed when dropped.
pub struct Pmctl {
    pub child: Child,
    pub port: u16,
    /// For a serve-api: an API key with every scope in its database ([`Pmctl::keyed`]).
    pub key: String,
    /// `http`, or `https` for a listener with TLS.
    scheme: &'static str,
    /// The client [`wait_for`](Self::wait_for) and [`send_webhook`] use: for https, one
    /// that trusts the test's CA.
    pub http: reqwest::Client,
    /// Every line the process logged so far (also echoed to the test's output).
    log: Arc<Mutex<String>>,
}

impl Pmctl {
    /// Starts `pmctl <args>` with `--listen 127.0.0.1:<free port>` appended and waits
    /// until `/health/live` answers.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Pmctl {
        Self::start_with(args, env, "http", reqwest::Client::new()).await
    }

    /// Like [`start`](Self::start) for a listener with TLS, probed with `client` (which
    /// must trust the listener's certificate).
    pub async fn start_https(
        args: &[&str],
        env: &[(&str, &str)],
        client: reqwest::Client,
    ) -> Pmctl {
        Self::start_with(args, env, "https", client).await
    }

    async fn start_with(
        args: &[&str],
        env: &[(&str, &str)],
        scheme: &'static str,
        http: reqwest::Client,
    ) -> Pmctl {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--listen", &listen]);
        let p = Self::spawn(&all, env, port, scheme, http);
        p.wait_for("/health/live", 200).await;
        p
    }

    /// Starts `pmctl <args>` that serves no HTTP (a relay, a consumer) and returns at once.
    pub fn background(args: &[&str], env: &[(&str, &str)]) -> Pmctl {
        Self::spawn(args, env, 0, "http", reqwest::Client::new())
    }

    fn spawn(
        args: &[&str],
        env: &[(&str, &str)],
        port: u16,
        scheme: &'static str,
        http: reqwest::Client,
    ) -> Pmctl {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pmctl"));
        cmd.args(args)
            .env_remove("DATABASE_URL")
            // Warnings and errors only: the test output stays readable, failures visible.
            .env("PM_LOG", "warn,librdkafka=off,rdkafka=off")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn pmctl");
        let log = Arc::new(Mutex::new(String::new()));
        let (stderr, lines) = (child.stderr.take().expect("piped stderr"), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                let mut log = lines.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        Pmctl {
            child,
            port,
            key: String::new(),
            scheme,
            http,
            log,
        }
    }

    /// Gives this serve-api an API key with every scope, made in `db` as an operator
    /// would with `pmctl api-keys create`, for the test's requests and the commands it runs.
    pub async fn keyed(mut self, db: &TestDatabase) -> Pmctl {
        self.key = api_key(db).await;
        self
    }

    /// A client sending this instance's key.
    pub fn client(&self) -> reqwest::Client {
        keyed_client(&self.key)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}{path}", self.scheme, self.port)
    }

    /// Polls `path` until it answers `status`.
    pub async fn wait_for(&self, path: &str, status: u16) {
        let client = &self.http;
        eventually(&format!("{path} → {status}"), || async {
            client
                .get(self.url(path))
                .send()
                .await
                .is_ok_and(|r| r.status().as_u16() == status)
        })
        .await;
    }

    /// Polls `path` until it answers `status` with a body that contains `text`.
    pub async fn wait_for_body(&self, path: &str, status: u16, text: &str) {
        let client = &self.http;
        eventually(&format!("{path} → {status} saying {text:?}"), || async {
            let Ok(r) = client.get(self.url(path)).send().await else {
                return false;
            };
            r.status().as_u16() == status && r.text().await.is_ok_and(|t| t.contains(text))
        })
        .await;
    }

    /// Waits until the process has logged a line containing `text` (its log filter must
    /// let the line through: the default is `warn`).
    pub async fn wait_for_log(&self, text: &str) {
        eventually(&format!("a log line saying {text:?}"), || async {
            self.logged().contains(text)
        })
        .await;
    }

    /// What the process has logged so far.
    pub fn logged(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sends SIGHUP (reload).
    pub fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP failed");
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Pmctl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls an async check until it holds or 90 s passed.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(90);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn order_json(event: &str, order_id: &str, status: &str, updated_secs: u32) -> String {
    format!(
        r#"{{"provider_event_id":"{event}","order_id":"{order_id}","user_id":"{USER}","status":"{status}","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:{:02}:{:02}Z"}}"#,
        updated_secs / 60,
        updated_secs % 60
    )
}

pub fn chargeback_json(event: &str, order_id: &str, status: &str) -> String {
    format!(
        r#"{{"provider_event_id":"{event}","order_id":"{order_id}","user_id":"{USER}","status":"{status}","reason":"fraud","amount":100.50,"currency":"USD","occurred_at":"2026-01-02T00:00:00Z"}}"#
    )
}

/// POSTs a webhook body signed with [`SECRET`] to `route` of `target`.
pub async fn send_webhook(target: &Pmctl, route: &str, body: &str) -> reqwest::Response {
    send_webhook_signed(target, route, body, SECRET).await
}

/// POSTs a webhook body signed with `secret` to `route` of `target`.
pub async fn send_webhook_signed(
    target: &Pmctl,
    route: &str,
    body: &str,
    secret: &str,
) -> reqwest::Response {
    signed_webhook(target, route, body, secret)
        .send()
        .await
        .expect("request")
}

/// The request of [`send_webhook_signed`], for a test that adds headers of its own.
pub fn signed_webhook(
    target: &Pmctl,
    route: &str,
    body: &str,
    secret: &str,
) -> reqwest::RequestBuilder {
    let t = chrono::Utc::now().timestamp();
    target
        .http
        .post(target.url(route))
        .header("content-type", "application/json")
        .header(
            pm_domain::signature::HEADER,
            pm_domain::signature::header_value(secret.as_bytes(), t, body.as_bytes()),
        )
        .body(body.to_owned())
}

/// An API key with every scope in `db`.
pub async fn api_key(db: &TestDatabase) -> String {
    api_key_in(&db.pool).await
}

/// An API key with every scope in the database of `pool` (migrated).
pub async fn api_key_in(pool: &pm_storage::PgPool) -> String {
    let name = format!("e2e-{}", pm_domain::api_key::NewKey::generate().id);
    pm_storage::api_keys::create(
        pool,
        &name,
        &pm_domain::api_key::Scope::ALL,
        None,
        &pm_storage::audit::Actor::new("cli:e2e", None),
        pm_domain::time::now(),
    )
    .await
    .expect("an API key")
    .1
}
