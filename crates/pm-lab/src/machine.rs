//! Facts about the machine and the database a measurement ran on, recorded with every
//! report of the lab (benchmarks and load tests alike): a number means little without the
//! hardware, the server version and its settings, and results from different machines are
//! not comparable.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::LabError;

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

/// Where and how a measurement ran. Fields a report of an older version lacks read as
/// absent.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MachineFacts {
    /// Logical CPUs available to this process.
    pub cores: usize,
    /// The CPU model (`model name` of `/proc/cpuinfo`), when readable.
    #[serde(default)]
    pub cpu: Option<String>,
    /// Total memory (`MemTotal` of `/proc/meminfo`), when readable.
    pub memory_bytes: Option<u64>,
    /// The operating system (`PRETTY_NAME` of `/etc/os-release`), when readable.
    #[serde(default)]
    pub os: Option<String>,
    /// The kernel release, when readable.
    #[serde(default)]
    pub kernel: Option<String>,
    /// `PostgreSQL 15.x …` (`SELECT version()`), when a database was used.
    pub postgres_version: Option<String>,
    /// The installed pg_partman extension's version, when installed.
    pub pg_partman_version: Option<String>,
    /// Selected server settings (see the source for which), by name.
    #[serde(default)]
    pub postgres_settings: BTreeMap<String, String>,
    /// The source revision the binary was built from (`-dirty` when the tree had
    /// uncommitted changes), as the caller gives it.
    pub git_revision: Option<String>,
    /// The command line that produced the report, secrets redacted.
    #[serde(default)]
    pub command_line: String,
}

impl MachineFacts {
    /// The facts of this host (no database); best effort: what cannot be read is absent.
    pub fn host(command_line: &str, revision: &str) -> Self {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        MachineFacts {
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            cpu: read("/proc/cpuinfo").and_then(|t| field(&t, "model name", ':')),
            memory_bytes: read("/proc/meminfo").and_then(|t| parse_meminfo(&t)),
            os: read("/etc/os-release")
                .and_then(|t| field(&t, "PRETTY_NAME", '='))
                .map(|s| s.trim_matches('"').to_owned()),
            kernel: read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()),
            git_revision: (!revision.is_empty()).then(|| revision.to_owned()),
            command_line: command_line.to_owned(),
            ..MachineFacts::default()
        }
    }

    /// The host's facts, and the database's when a pool is given. Only database errors
    /// fail.
    pub async fn collect(
        pool: Option<&PgPool>,
        command_line: &str,
        revision: &str,
    ) -> Result<Self, LabError> {
        let mut facts = MachineFacts::host(command_line, revision);
        if let Some(pool) = pool {
            facts.add_database(pool).await?;
        }
        Ok(facts)
    }

    /// Adds the server's version, pg_partman's and the settings that change plans and
    /// commit costs.
    pub async fn add_database(&mut self, pool: &PgPool) -> Result<(), LabError> {
        self.postgres_version = Some(
            sqlx::query_scalar("SELECT version()")
                .fetch_one(pool)
                .await?,
        );
        self.pg_partman_version =
            sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'pg_partman'")
                .fetch_optional(pool)
                .await?;
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY($1)",
        )
        .bind(SETTINGS)
        .fetch_all(pool)
        .await?;
        self.postgres_settings = rows.into_iter().collect();
        Ok(())
    }

    /// One line for reports: `2 cores (AMD EPYC …), 23.4 GiB memory, Debian GNU/Linux 12
    /// (bookworm), PostgreSQL 15.8, pg_partman 4.7.2, rev abc1234`.
    pub fn summary(&self) -> String {
        let mut parts = vec![match &self.cpu {
            Some(cpu) => format!("{} cores ({cpu})", self.cores),
            None => format!("{} cores", self.cores),
        }];
        if let Some(bytes) = self.memory_bytes {
            parts.push(format!(
                "{:.1} GiB memory",
                bytes as f64 / (1u64 << 30) as f64
            ));
        }
        if let Some(os) = &self.os {
            parts.push(os.clone());
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

/// The value of the first `key<sep>value` line.
fn field(text: &str, key: &str, sep: char) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(sep)?;
        (k.trim() == key).then(|| v.trim().to_owned())
    })
}

/// CPU time this process has used so far (user + system, all threads), from
/// `/proc/self/stat`; `None` where that file does not exist.
pub fn process_cpu_time() -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_time(&stat)
}

/// utime + stime of a `/proc/<pid>/stat` line. The command name may contain spaces, so
/// fields are counted after its closing parenthesis; the unit is USER_HZ, 100 per second
/// on every Linux architecture.
fn cpu_time(stat: &str) -> Option<std::time::Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(std::time::Duration::from_millis(ticks * 10))
}

/// CPU seconds used so far, from `/proc`, by the process groups a benchmark on this machine
/// runs: this process (the load generator), one service process by pid, every `postgres`
/// process and every `java` process (a local Kafka). Zero where `/proc` cannot be read.
///
/// [`since`](Self::since) compares process by process: a process that exited between two
/// samples (a PostgreSQL backend whose connection closed, another cluster stopping) takes
/// its time with it, and summing the groups alone would then go backwards. Its use within
/// the window is lost instead, so a share is never negative but may be a little low.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuSample {
    pub this_process: f64,
    pub service: f64,
    pub postgres: f64,
    pub java: f64,
    /// Each counted process's group and CPU seconds, by pid.
    processes: HashMap<u32, (Group, f64)>,
    /// Each counted process's parent, by pid: which PostgreSQL server a backend belongs to.
    parents: HashMap<u32, u32>,
    /// CPU seconds the whole machine has been busy (every process, this benchmark's or
    /// not), from `/proc/stat`.
    machine: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    ThisProcess,
    Service,
    Postgres,
    Java,
}

/// Cores each group used over a window (CPU seconds per second).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CoreShare {
    /// This process: the load generator or the readers.
    pub generator: f64,
    /// The service under test.
    pub service: f64,
    pub postgres: f64,
    /// Kafka's JVMs (0 without a local Kafka).
    pub kafka: f64,
}

impl CpuSample {
    /// Reads every process's CPU time once; `service_pid` is the service under test's.
    pub fn take(service_pid: Option<u32>) -> CpuSample {
        let mut sample = CpuSample {
            machine: std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|t| busy_seconds(&t))
                .unwrap_or(0.0),
            ..CpuSample::default()
        };
        let own = std::process::id();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return sample;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some(seconds) = cpu_time(&stat).map(|d| d.as_secs_f64()) else {
                continue;
            };
            // `pid (comm) state …`: the command name is between the parentheses.
            let comm = stat
                .split_once('(')
                .and_then(|(_, rest)| rest.rsplit_once(')'))
                .map_or("", |(comm, _)| comm);
            let group = if pid == own {
                Group::ThisProcess
            } else if Some(pid) == service_pid {
                Group::Service
            } else if comm == "postgres" {
                Group::Postgres
            } else if comm == "java" {
                Group::Java
            } else {
                continue;
            };
            *sample.group_mut(group) += seconds;
            sample.processes.insert(pid, (group, seconds));
            if let Some(parent) = parent_pid(&stat) {
                sample.parents.insert(pid, parent);
            }
        }
        sample
    }

    fn group_mut(&mut self, group: Group) -> &mut f64 {
        match group {
            Group::ThisProcess => &mut self.this_process,
            Group::Service => &mut self.service,
            Group::Postgres => &mut self.postgres,
            Group::Java => &mut self.java,
        }
    }

    /// Cores used between `earlier` and this sample, over `window` seconds: per process,
    /// what it used since `earlier` (all of it when it started since), summed by group.
    pub fn since(&self, earlier: &CpuSample, window: f64) -> CoreShare {
        let window = window.max(0.001);
        let used = if self.processes.is_empty() && earlier.processes.is_empty() {
            // Samples made by hand (tests): only the sums are known.
            CpuSample {
                this_process: self.this_process - earlier.this_process,
                service: self.service - earlier.service,
                postgres: self.postgres - earlier.postgres,
                java: self.java - earlier.java,
                ..CpuSample::default()
            }
        } else {
            let mut used = CpuSample::default();
            for (pid, (group, seconds)) in &self.processes {
                let before = earlier
                    .processes
                    .get(pid)
                    .filter(|(g, _)| g == group)
                    .map_or(0.0, |(_, s)| *s);
                *used.group_mut(*group) += (seconds - before).max(0.0);
            }
            used
        };
        CoreShare {
            generator: used.this_process / window,
            service: used.service / window,
            postgres: used.postgres / window,
            kafka: used.java / window,
        }
    }

    /// Cores that the PostgreSQL server whose postmaster is `postmaster` used between
    /// `earlier` and this sample: the postmaster and its children (backends, WAL sender or
    /// receiver, replay, checkpointer …), process by process as in [`since`](Self::since).
    /// Tells one server's share from another's on a machine running several.
    pub fn server_cores(&self, earlier: &CpuSample, postmaster: u32, window: f64) -> f64 {
        let used: f64 = self
            .processes
            .iter()
            .filter(|(pid, (group, _))| {
                *group == Group::Postgres
                    && (**pid == postmaster || self.parents.get(pid) == Some(&postmaster))
            })
            .map(|(pid, (_, seconds))| {
                let before = earlier.processes.get(pid).map_or(0.0, |(_, s)| *s);
                (seconds - before).max(0.0)
            })
            .sum();
        used / window.max(0.001)
    }

    /// Cores the whole machine was busy between `earlier` and this sample: with the groups'
    /// shares, what else (another build, another benchmark) took its part meanwhile.
    pub fn machine_cores(&self, earlier: &CpuSample, window: f64) -> f64 {
        (self.machine - earlier.machine).max(0.0) / window.max(0.001)
    }
}

/// The parent's pid of a `/proc/<pid>/stat` line (the field after the state).
fn parent_pid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Busy CPU seconds of the machine from `/proc/stat`'s first line (`cpu  user nice system
/// idle iowait irq softirq steal …`, in USER_HZ): everything but idle and iowait.
fn busy_seconds(stat: &str) -> Option<f64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let busy: u64 = ticks
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Some(busy as f64 / 100.0)
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
    fn cpu_samples_count_this_process_and_divide_by_the_window() {
        let mut spin = 0u64;
        for i in 0..2_000_000u64 {
            spin = spin.wrapping_add(i * i);
        }
        assert!(spin > 0);
        let now = CpuSample::take(None);
        assert!(now.this_process > 0.0, "{now:?}");
        let earlier = CpuSample {
            this_process: now.this_process - 1.0,
            service: 0.0,
            postgres: now.postgres - 2.0,
            java: now.java,
            ..CpuSample::default()
        };
        let by_hand = CpuSample {
            processes: HashMap::new(),
            ..now.clone()
        };
        let share = by_hand.since(&earlier, 2.0);
        assert_eq!(
            (share.generator, share.postgres, share.kafka),
            (0.5, 1.0, 0.0)
        );
    }

    #[test]
    fn a_process_that_exited_between_two_samples_never_makes_a_share_negative() {
        let sample = |processes: &[(u32, Group, f64)]| {
            let mut s = CpuSample::default();
            for &(pid, group, seconds) in processes {
                *s.group_mut(group) += seconds;
                s.processes.insert(pid, (group, seconds));
            }
            s
        };
        // Backend 11 used 5 s and exited; backend 12 used 1 s more; 13 is new with 0.5 s.
        let earlier = sample(&[
            (10, Group::Postgres, 2.0),
            (11, Group::Postgres, 5.0),
            (12, Group::Postgres, 1.0),
        ]);
        let later = sample(&[
            (10, Group::Postgres, 2.5),
            (12, Group::Postgres, 2.0),
            (13, Group::Postgres, 0.5),
        ]);
        assert!(later.postgres < earlier.postgres, "the sums went backwards");
        let share = later.since(&earlier, 1.0);
        assert_eq!(share.postgres, 2.0, "0.5 + 1.0 + 0.5");
    }

    #[test]
    fn one_servers_share_counts_its_postmaster_and_its_children_only() {
        let sample = |processes: &[(u32, u32, f64)]| {
            let mut s = CpuSample::default();
            for &(pid, parent, seconds) in processes {
                s.postgres += seconds;
                s.processes.insert(pid, (Group::Postgres, seconds));
                s.parents.insert(pid, parent);
            }
            s
        };
        // Server 100 (backends 101, 102) and server 200 (backend 201) on one machine.
        let earlier = sample(&[
            (100, 1, 1.0),
            (101, 100, 2.0),
            (200, 1, 1.0),
            (201, 200, 3.0),
        ]);
        let later = sample(&[
            (100, 1, 1.5),
            (101, 100, 3.0),
            (102, 100, 0.5),
            (200, 1, 1.0),
            (201, 200, 5.0),
        ]);
        assert_eq!(
            later.server_cores(&earlier, 100, 2.0),
            1.0,
            "(0.5 + 1 + 0.5) / 2"
        );
        assert_eq!(later.server_cores(&earlier, 200, 2.0), 1.0);
        assert_eq!(later.server_cores(&earlier, 300, 2.0), 0.0);
    }

    #[test]
    fn reads_parents_and_the_machines_busy_time() {
        let stat = "1234 (postgres: walsender) S 77 1234 1234 0 -1 4194560 100 0 0 0 250 31";
        assert_eq!(parent_pid(stat), Some(77));
        // user nice system idle iowait irq softirq steal: all but idle and iowait.
        let proc_stat = "cpu  100 5 50 9000 300 1 4 0 0 0\ncpu0 50 2 25 4500 150 0 2 0 0 0\n";
        assert_eq!(busy_seconds(proc_stat), Some(1.6));
        assert_eq!(busy_seconds("nothing"), None);
        let (a, b) = (
            CpuSample {
                machine: 10.0,
                ..CpuSample::default()
            },
            CpuSample {
                machine: 13.0,
                ..CpuSample::default()
            },
        );
        assert_eq!(b.machine_cores(&a, 2.0), 1.5);
        assert!(CpuSample::take(None).machine > 0.0);
    }

    #[test]
    fn reads_memory_key_value_files_and_cpu_time() {
        let text = "MemTotal:       24576000 kB\nMemFree:        1000 kB\n";
        assert_eq!(parse_meminfo(text), Some(24_576_000 * 1024));
        assert_eq!(parse_meminfo("nothing"), None);
        let os = "NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            field(os, "PRETTY_NAME", '=').map(|s| s.trim_matches('"').to_owned()),
            Some("Debian GNU/Linux 12 (bookworm)".to_owned())
        );
        let stat = "1234 (pm ctl) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 9 0";
        assert_eq!(cpu_time(stat), Some(std::time::Duration::from_millis(2810)));
        assert!(process_cpu_time().is_some());
        let host = MachineFacts::host("pmctl loadtest", "abc123");
        assert!(host.cores >= 1 && host.postgres_version.is_none());
        assert!(host.summary().contains("rev abc123"), "{}", host.summary());
    }

    #[test]
    fn a_load_test_result_of_the_earlier_format_reads() {
        let old = r#"{"cores": 2, "cpu": "x", "memory_bytes": 1, "kernel": "6.1", "os": "Debian"}"#;
        let facts: MachineFacts = serde_json::from_str(old).expect("reads");
        assert_eq!(facts.kernel.as_deref(), Some("6.1"));
        assert!(facts.command_line.is_empty() && facts.postgres_settings.is_empty());
    }
}
