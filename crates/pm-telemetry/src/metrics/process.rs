//! The standard `process_*` metrics every Prometheus client library exports, read from
//! `/proc/self` at scrape time: CPU time, resident and virtual memory, open and maximum
//! file descriptors, and the start time. Their names carry no `pm_` prefix, so the
//! dashboards and alerts written for any other service work on ours.
//!
//! Outside Linux the collector exports nothing rather than wrong numbers.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Reads the process's figures on each scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// One reading of `/proc/self`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    pub start_time_seconds: f64,
}

impl ProcessStats {
    /// This process's figures now, or `None` where `/proc` is not there to read.
    pub fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| boot_time(&s))?;
        let open_fds = u64::try_from(std::fs::read_dir("/proc/self/fd").ok()?.count())
            .unwrap_or(u64::MAX)
            // The directory handle read_dir held while counting.
            .saturating_sub(1);
        parse_stat(
            &stat,
            boot_time,
            rustix::param::clock_ticks_per_second(),
            rustix::param::page_size() as u64,
        )
        .map(|s| ProcessStats {
            open_fds,
            max_fds: rustix::process::getrlimit(rustix::process::Resource::Nofile).current,
            ..s
        })
    }
}

/// `btime` of `/proc/stat`: when the machine booted, in seconds since the epoch.
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The figures of `/proc/self/stat` (see proc(5)). The command name, field 2, is in
/// parentheses and may itself contain spaces and parentheses, so the fields are counted
/// from the last `)`.
fn parse_stat(
    stat: &str,
    boot_time: u64,
    ticks_per_second: u64,
    page_size: u64,
) -> Option<ProcessStats> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: field 3 (state) is index 0.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let ticks = ticks_per_second.max(1) as f64;
    let (utime, stime) = (field(14)?, field(15)?);
    Some(ProcessStats {
        cpu_seconds: (utime + stime) as f64 / ticks,
        start_time_seconds: boot_time as f64 + field(22)? as f64 / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)?.saturating_mul(page_size),
        open_fds: 0,
        max_fds: None,
    })
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(s) = ProcessStats::read() else {
            return Ok(());
        };
        ConstCounter::new(s.cpu_seconds).encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?)?;
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                Some(s.resident_bytes as f64),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                Some(s.virtual_bytes as f64),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                Some(s.open_fds as f64),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                s.max_fds.map(|n| n as f64),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                Some(s.start_time_seconds),
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                ConstGauge::new(value).encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    prometheus_client::metrics::MetricType::Gauge,
                )?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_end_of_the_command_name() {
        // A name with spaces and a parenthesis, as a process may choose.
        let stat = "4242 (pm ctl) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 150 0 0 20 0 9 0 5000 123456789 2048 18446744073709551615";
        let s = parse_stat(stat, 1_700_000_000, 100, 4096).expect("parses");
        assert_eq!(s.cpu_seconds, 4.0);
        assert_eq!(s.start_time_seconds, 1_700_000_050.0);
        assert_eq!(s.virtual_bytes, 123_456_789);
        assert_eq!(s.resident_bytes, 2048 * 4096);
        assert!(parse_stat("garbage", 0, 100, 4096).is_none());
        assert_eq!(
            boot_time("cpu 1 2 3\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn this_process_is_read_and_exported() {
        let s = ProcessStats::read().expect("/proc is readable on Linux");
        assert!(s.resident_bytes > 0 && s.open_fds > 0, "{s:?}");
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(ProcessCollector));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
