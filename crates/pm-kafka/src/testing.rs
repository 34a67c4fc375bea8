//! A throw-away Kafka-protocol broker for tests (feature `testing`).
//!
//! `PM_TEST_KAFKA_BROKERS` names an existing broker; otherwise the `tansu` broker on the
//! PATH is started on a free port with its own data directory and lives as long as the
//! test process (a shell watchdog stops it when the process's pipe closes, even after
//! SIGKILL). Tests use unique topic and group names, so one broker serves them all.
//! Nothing outside tests depends on tansu: users run Apache Kafka or Redpanda.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The variable naming an existing broker.
pub const BROKERS_VAR: &str = "PM_TEST_KAFKA_BROKERS";

struct Broker {
    brokers: String,
    _watchdog: Option<Mutex<Child>>,
}

static BROKER: OnceLock<Result<Broker, String>> = OnceLock::new();

/// Bootstrap servers of the test broker. Panics with what to install when there is none:
/// a Kafka test never skips silently.
pub fn brokers() -> String {
    match BROKER.get_or_init(start) {
        Ok(b) => b.brokers.clone(),
        Err(e) => panic!("no Kafka-protocol broker for the tests: {e}"),
    }
}

/// A unique prefix for topic and group names of one test.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

fn start() -> Result<Broker, String> {
    if let Ok(b) = std::env::var(BROKERS_VAR) {
        if !b.is_empty() {
            return Ok(Broker {
                brokers: b,
                _watchdog: None,
            });
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("pm-test-kafka-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let port = free_port()?;
    // This broker lives as long as the test process; its watchdog removes the data too.
    let child = spawn_tansu(&dir, port, true)?;
    Ok(Broker {
        brokers: format!("127.0.0.1:{port}"),
        _watchdog: Some(Mutex::new(child)),
    })
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// Starts tansu under a shell watchdog and waits until its port answers. The shell runs
/// the broker in the background and blocks on its stdin; when the pipe closes (the owner
/// ended, however, or dropped the handle), it stops the broker (and removes its data when
/// `remove_data`).
fn spawn_tansu(dir: &std::path::Path, port: u16, remove_data: bool) -> Result<Child, String> {
    let tansu = which("tansu").ok_or_else(|| {
        format!(
            "`tansu` is not on the PATH; install it with `cargo install tansu@0.6.0 --locked --features libsql,dynostore` \
             (scripts/install-deps.sh does), or set {BROKERS_VAR} to a broker's host:port"
        )
    })?;
    let url = format!("tcp://127.0.0.1:{port}");
    let cleanup = if remove_data {
        format!("; rm -rf '{}'", dir.display())
    } else {
        String::new()
    };
    let script = format!(
        "cd '{dir}' && '{tansu}' broker --listener-url {url} --advertised-listener-url {url} \
         --storage-engine sqlite://tansu.db >>broker.log 2>&1 & pid=$!; read _; kill $pid; wait $pid{cleanup}",
        dir = dir.display(),
        tansu = tansu.display(),
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start tansu: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            let log = std::fs::read_to_string(dir.join("broker.log")).unwrap_or_default();
            if let Some(stdin) = child.stdin.as_mut() {
                let _ = stdin.write_all(b"\n");
            }
            return Err(format!("tansu did not start on port {port}: {log}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child)
}

/// A broker of one test's own, which the test can stop and start again (same port, same
/// data), e.g. to show that ingest answers 503 while it is down.
#[derive(Debug)]
pub struct PrivateBroker {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl PrivateBroker {
    pub fn start() -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("pm-test-kafka-private-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let port = free_port()?;
        let child = spawn_tansu(dir.path(), port, false)?;
        Ok(PrivateBroker {
            dir,
            port,
            child: Some(child),
        })
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.child = Some(spawn_tansu(self.dir.path(), self.port, false)?);
        Ok(())
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    let from_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(program))
        .find(|p| p.is_file());
    from_path.or_else(|| {
        let cargo_bin = std::env::var_os("HOME")
            .map(|h| std::path::PathBuf::from(h).join(".cargo/bin").join(program))?;
        cargo_bin.is_file().then_some(cargo_bin)
    })
}
