//! `pmctl` services started as child processes of a command (the demo, the layouts
//! benchmark): real processes talking real HTTP, each with its log in a file.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::process::{Child, Command};

/// A child `pmctl` process, stopped with SIGTERM (then killed) when the demo ends.
pub(crate) struct Service {
    name: &'static str,
    child: Child,
    pub(crate) url: String,
    pub(crate) log: PathBuf,
}

pub(crate) fn port_or_free(preferred: u16) -> anyhow::Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", preferred))
        .or_else(|_| TcpListener::bind(("127.0.0.1", 0)))?;
    Ok(listener.local_addr()?.port())
}

pub(crate) fn random_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub(crate) async fn spawn(
    name: &'static str,
    args: &[&str],
    env: &[(&str, &str)],
    dir: &Path,
    port: u16,
) -> anyhow::Result<Service> {
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log)?;
    let exe = std::env::current_exe().context("cannot find the pmctl executable")?;
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .args(["--listen", &listen])
        .stdout(Stdio::null())
        .stderr(file)
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    Ok(Service {
        name,
        child,
        url: format!("http://127.0.0.1:{port}"),
        log,
    })
}

impl Service {
    /// The process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits until `/health/ready` answers 200.
    pub(crate) async fn ready(&mut self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{}/health/ready", self.url)).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                anyhow::bail!("{} exited ({status}) during start-up:\n{log}", self.name);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} did not become ready; see {}",
                self.name,
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
