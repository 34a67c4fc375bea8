//! Facts about the machine that generated the load, for the result file: results from
//! different machines are not comparable, and the file must say so.

use serde::{Deserialize, Serialize};

/// The load generator's machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// Logical CPUs available to the process.
    pub cores: usize,
    /// The CPU model, from `/proc/cpuinfo`.
    pub cpu: Option<String>,
    /// Total memory in bytes, from `/proc/meminfo`.
    pub memory_bytes: Option<u64>,
    /// Kernel release, from `/proc/sys/kernel/osrelease`.
    pub kernel: Option<String>,
    /// The operating system, from `/etc/os-release`.
    pub os: Option<String>,
}

impl Machine {
    /// Reads the facts of this machine (what cannot be read stays `None`).
    pub fn this() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu: read("/proc/cpuinfo").and_then(|t| field(&t, "model name", ':')),
            memory_bytes: read("/proc/meminfo").and_then(|t| mem_total(&t)),
            kernel: read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()),
            os: read("/etc/os-release")
                .and_then(|t| field(&t, "PRETTY_NAME", '='))
                .map(|s| s.trim_matches('"').to_owned()),
        }
    }

    /// One line for people: `2 cores, 24.0 GiB, Linux 6.1.0`.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("{} cores", self.cores)];
        if let Some(cpu) = &self.cpu {
            parts.push(cpu.clone());
        }
        if let Some(m) = self.memory_bytes {
            parts.push(format!("{:.1} GiB", m as f64 / (1u64 << 30) as f64));
        }
        if let Some(os) = &self.os {
            parts.push(os.clone());
        }
        if let Some(k) = &self.kernel {
            parts.push(format!("kernel {k}"));
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

/// `MemTotal:  24618636 kB` in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let v = field(meminfo, "MemTotal", ':')?;
    let kb: u64 = v.split_whitespace().next()?.parse().ok()?;
    kb.checked_mul(1024)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_key_value_files_are_read() {
        let meminfo = "MemTotal:       24618636 kB\nMemFree:         1000 kB\n";
        assert_eq!(mem_total(meminfo), Some(24_618_636 * 1024));
        let os = "NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            field(os, "PRETTY_NAME", '=').map(|s| s.trim_matches('"').to_owned()),
            Some("Debian GNU/Linux 12 (bookworm)".to_owned())
        );
        assert_eq!(mem_total("nothing"), None);
        let stat = "1234 (pm ctl) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 9 0";
        assert_eq!(cpu_time(stat), Some(std::time::Duration::from_millis(2810)));
        assert!(process_cpu_time().is_some());
        let m = Machine::this();
        assert!(m.cores >= 1);
        assert!(m.describe().contains("cores"));
    }
}
