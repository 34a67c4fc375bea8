//! Apache Kafka on this machine, through the project's launcher (`scripts/kafka.sh`).
//!
//! The launcher and its Maven pom are embedded in this crate, so `pmctl` can start a
//! cluster from anywhere (`pmctl demo --kafka`, benchmarks) and tests use exactly the same
//! code path: [`LocalCluster::start`] writes the launcher into a temporary directory and
//! runs it. It needs Java 17+ and Maven (`scripts/install-deps.sh` installs them); the
//! broker's jars come from Maven Central once, into a cache shared by every cluster.
//!
//! A cluster lives no longer than its owner: a shell watchdog holds a pipe from this
//! process and stops the cluster (and deletes its data) when the pipe closes — when the
//! [`LocalCluster`] is dropped, or the process ends however it ends, SIGKILL included.
//!
//! Clients connect over PLAINTEXT; [`ClusterOptions::with_sasl_ssl`] adds a SASL_SSL
//! listener (TLS, then SCRAM-SHA-512) beside it, for tests of the security settings a
//! production cluster needs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

const LAUNCHER: &str = include_str!("../../../scripts/kafka.sh");
const POM: &str = include_str!("../../../scripts/kafka/pom.xml");
const LOG4J: &str = include_str!("../../../scripts/kafka/log4j2.properties");

/// The Apache Kafka release the launcher runs (the pom's `kafka.version`).
pub fn kafka_version() -> &'static str {
    POM.split_once("<kafka.version>")
        .and_then(|(_, rest)| rest.split_once("</kafka.version>"))
        .map_or("unknown", |(v, _)| v.trim())
}

/// One of the project's launcher scripts, written into a temporary directory with its files,
/// with the directory it runs in and a watchdog that stops what it started.
///
/// The watchdog is a shell holding a pipe from this process: when the pipe closes — on drop,
/// or when the process ends however it ends, SIGKILL included — it runs the launcher's stop
/// command on the run directory and removes the launcher's copy.
#[derive(Debug)]
pub(crate) struct Launched {
    name: &'static str,
    dir: tempfile::TempDir,
    launcher: PathBuf,
    /// Holds the launcher; removed last.
    _scripts: tempfile::TempDir,
    watchdog: Mutex<Option<Child>>,
}

impl Launched {
    /// Writes `files` (path, contents; the first is the launcher, run with bash) and starts
    /// the watchdog, which will run the launcher with `stop --dir DIR` and `stop_args`.
    pub(crate) fn new(
        name: &'static str,
        files: &[(&str, &str)],
        stop_args: &str,
    ) -> Result<Launched, String> {
        let scripts = tempfile::Builder::new()
            .prefix(&format!("pm-{name}-launcher-"))
            .tempdir()
            .map_err(|e| e.to_string())?;
        for (path, contents) in files {
            let path = scripts.path().join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("cannot write the {name} launcher: {e}"))?;
            }
            std::fs::write(&path, contents)
                .map_err(|e| format!("cannot write the {name} launcher: {e}"))?;
        }
        let launcher = scripts.path().join(files[0].0);
        let dir = tempfile::Builder::new()
            .prefix(&format!("pm-{name}-"))
            .tempdir()
            .map_err(|e| e.to_string())?;
        // The watchdog first: if starting fails half-way, it still cleans up. It removes the
        // launcher's copy too: what is kept for the life of a process (the tests' shared
        // cluster) is never dropped, so its temporary directories would stay.
        let script = format!(
            "read _; bash '{launcher}' stop --dir '{dir}' {stop_args} >/dev/null 2>&1; rm -rf '{scripts}'",
            launcher = launcher.display(),
            dir = dir.path().display(),
            scripts = scripts.path().display(),
        );
        let watchdog = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the {name} watchdog: {e}"))?;
        Ok(Launched {
            name,
            dir,
            launcher,
            _scripts: scripts,
            watchdog: Mutex::new(Some(watchdog)),
        })
    }

    /// Runs the launcher with `args` and `--dir DIR`; its stdout, trimmed.
    pub(crate) fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("bash")
            .arg(&self.launcher)
            .args(args)
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run the {} launcher (bash): {e}", self.name))?;
        if !out.status.success() {
            return Err(format!(
                "{}.sh {} failed ({}): {}",
                self.name,
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        let watchdog = self
            .watchdog
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(mut child) = watchdog {
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(b"\n");
            }
            // The stop is bounded by the launcher's own timeout.
            let _ = child.wait();
        }
    }
}

/// What kind of cluster [`LocalCluster::start_with`] starts.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    nodes: usize,
    sasl_ssl: Option<SaslSsl>,
}

impl ClusterOptions {
    /// `nodes` nodes (1 or 3), clients over PLAINTEXT only.
    pub fn new(nodes: usize) -> Self {
        ClusterOptions {
            nodes,
            sasl_ssl: None,
        }
    }

    /// Every node also takes clients on a SASL_SSL listener (see
    /// [`LocalCluster::sasl_ssl_brokers`]). The PLAINTEXT one stays: the launcher's
    /// readiness checks use it.
    pub fn with_sasl_ssl(mut self, sasl_ssl: SaslSsl) -> Self {
        self.sasl_ssl = Some(sasl_ssl);
        self
    }
}

/// A SASL_SSL listener: the TLS certificate it presents and the SCRAM-SHA-512 users it
/// accepts. The files are copied when the cluster starts; the caller may delete them then.
#[derive(Clone)]
pub struct SaslSsl {
    /// PEM certificate chain, leaf first; valid for `127.0.0.1`, the address advertised.
    pub cert: PathBuf,
    /// Its unencrypted PKCS#8 PEM key.
    pub key: PathBuf,
    /// `(name, password)` of each user, created when the nodes are formatted (Kafka's
    /// `--add-scram` splits on commas: neither may hold one).
    pub users: Vec<(String, String)>,
}

impl std::fmt::Debug for SaslSsl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let users: Vec<&str> = self.users.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("SaslSsl")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("users", &users)
            .finish()
    }
}

/// An Apache Kafka cluster of 1 or 3 nodes (combined broker and controller) on loopback.
/// Its nodes are numbered from 1.
#[derive(Debug)]
pub struct LocalCluster {
    launched: Launched,
    brokers: String,
    sasl_ssl_brokers: Option<String>,
    nodes: usize,
}

impl LocalCluster {
    /// Starts a cluster of `nodes` nodes and waits until every broker is registered.
    /// Blocking (a few seconds per start, more on the first, which downloads the jars):
    /// call it from `spawn_blocking` in async code.
    pub fn start(nodes: usize) -> Result<LocalCluster, String> {
        Self::start_with(&ClusterOptions::new(nodes))
    }

    /// Like [`LocalCluster::start`], as `options` say.
    pub fn start_with(options: &ClusterOptions) -> Result<LocalCluster, String> {
        let nodes = options.nodes;
        let launched = Launched::new(
            "kafka",
            &[
                ("kafka.sh", LAUNCHER),
                ("kafka/pom.xml", POM),
                ("kafka/log4j2.properties", LOG4J),
            ],
            "",
        )?;
        let mut cluster = LocalCluster {
            launched,
            brokers: String::new(),
            sasl_ssl_brokers: None,
            nodes,
        };
        let mut args = vec!["start".to_owned(), "--nodes".to_owned(), nodes.to_string()];
        if let Some(sasl) = &options.sasl_ssl {
            args.extend([
                "--sasl-ssl".to_owned(),
                "--tls-cert".to_owned(),
                sasl.cert.display().to_string(),
                "--tls-key".to_owned(),
                sasl.key.display().to_string(),
            ]);
            for (name, password) in &sasl.users {
                args.extend(["--scram-user".to_owned(), format!("{name}={password}")]);
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = cluster.launched.run(&args)?;
        cluster.brokers = out
            .lines()
            .last()
            .and_then(|l| l.strip_prefix("PM_KAFKA_BROKERS="))
            .ok_or_else(|| format!("kafka.sh start printed no brokers: {out}"))?
            .to_owned();
        if options.sasl_ssl.is_some() {
            cluster.sasl_ssl_brokers = Some(
                out.lines()
                    .find_map(|l| l.strip_prefix("PM_KAFKA_SASL_SSL_BROKERS="))
                    .ok_or_else(|| format!("kafka.sh start printed no SASL_SSL brokers: {out}"))?
                    .to_owned(),
            );
        }
        Ok(cluster)
    }

    /// `host:port,…` of every node's PLAINTEXT listener.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// `host:port,…` of every node's SASL_SSL listener, when it has one.
    pub fn sasl_ssl_brokers(&self) -> Option<&str> {
        self.sasl_ssl_brokers.as_deref()
    }

    /// How many nodes the cluster has.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// `host:port` of node `n` (numbered from 1).
    pub fn broker(&self, n: usize) -> &str {
        self.brokers
            .split(',')
            .nth(n.saturating_sub(1))
            .unwrap_or_default()
    }

    /// Kills node `n` with SIGKILL: no clean shutdown, as in a crash. Blocking.
    pub fn kill_node(&self, n: usize) -> Result<(), String> {
        self.launched
            .run(&["kill-node", &n.to_string(), "--signal", "KILL"])
            .map(drop)
    }

    /// Stops node `n` cleanly (SIGTERM) and waits until it is gone. Blocking.
    pub fn stop_node(&self, n: usize) -> Result<(), String> {
        self.launched
            .run(&["kill-node", &n.to_string(), "--signal", "TERM"])
            .map(drop)
    }

    /// Starts node `n` again with its data and ports. Blocking.
    pub fn start_node(&self, n: usize) -> Result<(), String> {
        self.launched.run(&["start-node", &n.to_string()]).map(drop)
    }

    /// The node that leads `partition` of `topic` (what a fault test kills). Blocking.
    pub fn leader_of(&self, topic: &str, partition: i32) -> Result<usize, String> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let probe: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()
            .map_err(|e| e.to_string())?;
        let md = probe
            .fetch_metadata(Some(topic), std::time::Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        md.topics()
            .iter()
            .find(|t| t.name() == topic)
            .and_then(|t| t.partitions().iter().find(|p| p.id() == partition))
            .and_then(|p| usize::try_from(p.leader()).ok())
            .filter(|n| (1..=self.nodes).contains(n))
            .ok_or_else(|| format!("no leader for {topic}/{partition}"))
    }

    /// The cluster's directory (node logs are in `node-N/server.log`).
    pub fn dir(&self) -> &Path {
        self.launched.dir()
    }
}

/// The Kafka a command runs against: a cluster the user named, or a single-node cluster
/// started for this run and removed by [`KafkaTarget::release`] (the demo, benchmarks).
#[derive(Debug)]
pub struct KafkaTarget {
    brokers: String,
    started: Option<LocalCluster>,
}

impl KafkaTarget {
    /// `brokers` when given; otherwise starts a single-node cluster (it says so on stderr).
    pub async fn given_or_started(brokers: Option<String>) -> Result<Self, String> {
        if let Some(brokers) = brokers.filter(|b| !b.is_empty()) {
            return Ok(KafkaTarget {
                brokers,
                started: None,
            });
        }
        eprintln!("starting Apache Kafka {} (one node)…", kafka_version());
        let cluster = tokio::task::spawn_blocking(|| LocalCluster::start(1))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot start Apache Kafka: {e}"))?;
        Ok(KafkaTarget {
            brokers: cluster.brokers().to_owned(),
            started: Some(cluster),
        })
    }

    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// Which Kafka ran, for reports.
    pub fn describe(&self) -> String {
        match &self.started {
            Some(_) => format!(
                "Apache Kafka {} (one node, started for this run) at {}",
                kafka_version(),
                self.brokers
            ),
            None => format!("the Kafka cluster at {}", self.brokers),
        }
    }

    /// Stops and removes a cluster started for this run (a named one is left alone).
    pub async fn release(self) {
        if let Some(cluster) = self.started {
            let _ = tokio::task::spawn_blocking(move || drop(cluster)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_pom_names_a_kafka_4_release() {
        assert!(kafka_version().starts_with("4."), "{}", kafka_version());
    }
}
