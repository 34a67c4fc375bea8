//! Debezium on this machine, through the project's launcher (`scripts/debezium.sh`): the
//! second outbox relay, a Kafka Connect standalone worker whose PostgreSQL connector reads
//! the outbox's inserts from the write-ahead log and publishes them to `domain-events` in
//! the shape `pmctl outbox-relay` does.
//!
//! Like [`LocalCluster`](crate::local::LocalCluster), the launcher is embedded and written
//! into a temporary directory, and a watchdog stops the worker — and drops its replication
//! slot and publication, which would otherwise keep WAL on the server — when the
//! [`LocalDebezium`] is dropped or this process ends. Needs Java 17+, Maven, psql, a
//! running Kafka and a PostgreSQL with `wal_level = logical`.

use crate::local::Launched;

const LAUNCHER: &str = include_str!("../../../scripts/debezium.sh");
const POM: &str = include_str!("../../../scripts/debezium/pom.xml");
const LOG4J: &str = include_str!("../../../scripts/debezium/log4j2.properties");

/// The Debezium release the launcher runs (the pom's `debezium.version`).
pub fn debezium_version() -> &'static str {
    POM.split_once("<debezium.version>")
        .and_then(|(_, rest)| rest.split_once("</debezium.version>"))
        .map_or("unknown", |(v, _)| v.trim())
}

/// Where Debezium reads and writes.
#[derive(Debug, Clone)]
pub struct DebeziumOptions {
    /// The database holding the outbox, as a superuser or an owner of the outbox with the
    /// REPLICATION attribute.
    pub database_url: String,
    pub brokers: String,
    /// The full name of the domain events topic.
    pub topic: String,
    /// The replication slot and publication name; unique per database on one server.
    pub slot: String,
}

/// A running Debezium worker, stopped (and its slot dropped) when dropped.
#[derive(Debug)]
pub struct LocalDebezium {
    launched: Launched,
    rest: String,
}

impl LocalDebezium {
    /// Starts the worker and waits until its connector streams: from then on every outbox
    /// event that commits is published. Blocking (seconds; the first start downloads the
    /// jars): call it from `spawn_blocking` in async code.
    pub fn start(options: &DebeziumOptions) -> Result<LocalDebezium, String> {
        let launched = Launched::new(
            "debezium",
            &[
                ("debezium.sh", LAUNCHER),
                ("debezium/pom.xml", POM),
                ("debezium/log4j2.properties", LOG4J),
            ],
            "--drop-slot",
        )?;
        let out = launched.run(&[
            "start",
            "--database-url",
            &options.database_url,
            "--brokers",
            &options.brokers,
            "--topic",
            &options.topic,
            "--slot",
            &options.slot,
            "--publication",
            &options.slot,
        ])?;
        let rest = rest_url(&out)?;
        Ok(LocalDebezium { launched, rest })
    }

    /// Kills the worker with SIGKILL, as in a crash: offsets not yet flushed are lost, and
    /// the events after them are published again by [`resume`](Self::resume). Blocking.
    pub fn kill(&self) -> Result<(), String> {
        self.launched.run(&["kill"]).map(drop)
    }

    /// Starts the worker again with its configuration and offsets, and waits until it
    /// streams. Blocking.
    pub fn resume(&mut self) -> Result<(), String> {
        self.rest = rest_url(&self.launched.run(&["start"])?)?;
        Ok(())
    }

    /// The worker's REST API (`/connectors/pm-outbox/status`).
    pub fn rest_url(&self) -> &str {
        &self.rest
    }

    /// The worker's process id while it runs (for CPU accounting).
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir().join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The worker's files (`connect.log` says what the connector did).
    pub fn dir(&self) -> &std::path::Path {
        self.launched.dir()
    }
}

fn rest_url(out: &str) -> Result<String, String> {
    out.lines()
        .last()
        .and_then(|l| l.strip_prefix("PM_DEBEZIUM_REST="))
        .map(str::to_owned)
        .ok_or_else(|| format!("debezium.sh start printed no REST address: {out}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_pom_names_a_debezium_3_release_on_the_brokers_kafka() {
        assert!(
            debezium_version().starts_with("3."),
            "{}",
            debezium_version()
        );
        assert!(POM.contains(&format!(
            "<kafka.version>{}</kafka.version>",
            crate::local::kafka_version()
        )));
    }
}
