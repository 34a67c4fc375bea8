//! Facts about the machine and the database a benchmark ran on, recorded with every report:
//! a number means little without the hardware, the server version and its settings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::BenchError;

/// Server settings that change query plans or commit costs, recorded so two reports can be
/// compared knowingly.
const SETTINGS: &[&str] = &[
    "shared_buffers",
    "work_mem",
    "maintenance_work_mem",
    "effective_cache_size",
    "random_page_cost",
    "max_parallel_workers_per_gather",
    "jit",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
];

/// Where and how a benchmark ran.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MachineFacts {
    /// Logical CPUs available to this process.
    pub cores: usize,
    /// Total memory (`MemTotal` of `/proc/meminfo`), when readable.
    pub memory_bytes: Option<u64>,
    /// `PostgreSQL 15.x …` (`SELECT version()`), when a database was used.
    pub postgres_version: Option<String>,
    /// The installed pg_partman extension's version, when installed.
    pub pg_partman_version: Option<String>,
    /// Selected server settings (see the source for which), by name.
    pub postgres_settings: BTreeMap<String, String>,
    /// The source revision the binary was built from (`-dirty` when the tree had
    /// uncommitted changes), as the caller gives it.
    pub git_revision: Option<String>,
    /// The command line that produced the report.
    pub command_line: String,
}

impl MachineFacts {
    /// Collects the facts; database facts only when a pool is given. Only database errors
    /// fail: the other facts are best effort and absent when unreadable.
    pub async fn collect(
        pool: Option<&PgPool>,
        command_line: &str,
        revision: &str,
    ) -> Result<Self, BenchError> {
        let mut facts = MachineFacts {
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            memory_bytes: memory_bytes(),
            postgres_version: None,
            pg_partman_version: None,
            postgres_settings: BTreeMap::new(),
            git_revision: (!revision.is_empty()).then(|| revision.to_owned()),
            command_line: command_line.to_owned(),
        };
        if let Some(pool) = pool {
            facts.postgres_version = Some(
                sqlx::query_scalar("SELECT version()")
                    .fetch_one(pool)
                    .await?,
            );
            facts.pg_partman_version = sqlx::query_scalar(
                "SELECT extversion FROM pg_extension WHERE extname = 'pg_partman'",
            )
            .fetch_optional(pool)
            .await?;
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY($1)",
            )
            .bind(SETTINGS)
            .fetch_all(pool)
            .await?;
            facts.postgres_settings = rows.into_iter().collect();
        }
        Ok(facts)
    }

    /// One line for reports: `2 cores, 23.4 GiB, PostgreSQL 15.8, pg_partman 4.7.2, rev abc1234`.
    pub fn summary(&self) -> String {
        let mut parts = vec![format!("{} cores", self.cores)];
        if let Some(bytes) = self.memory_bytes {
            parts.push(format!(
                "{:.1} GiB memory",
                bytes as f64 / (1u64 << 30) as f64
            ));
        }
        if let Some(v) = &self.postgres_version {
            // `PostgreSQL 15.8 (Debian 15.8-0+deb12u1) on x86_64-pc-linux-gnu, …` → the first two words.
            parts.push(v.split_whitespace().take(2).collect::<Vec<_>>().join(" "));
        }
        if let Some(v) = &self.pg_partman_version {
            parts.push(format!("pg_partman {v}"));
        }
        if let Some(r) = &self.git_revision {
            parts.push(format!("rev {r}"));
        }
        parts.join(", ")
    }
}

fn memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo(&text)
}

/// `MemTotal:       24576000 kB` → bytes.
fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_total_memory_from_meminfo() {
        let text = "MemTotal:       24576000 kB\nMemFree:        1000 kB\n";
        assert_eq!(parse_meminfo(text), Some(24_576_000 * 1024));
        assert_eq!(parse_meminfo("nothing"), None);
    }
}
