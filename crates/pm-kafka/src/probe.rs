//! Which Apache Kafka release a broker on this machine runs, for benchmark reports.
//!
//! Kafka clients cannot ask: the protocol's ApiVersions answer lists API ranges, not a
//! release. For a broker listening on loopback, the answer is on this machine though: the
//! process that listens on the broker's port (found through `/proc/net/tcp*` and the
//! processes' open sockets) has the broker's jars on its class path, and their names carry
//! the release (`kafka-server-4.1.1.jar`, or `kafka_2.13-3.9.0.jar` in older layouts). A
//! remote broker, a process of another user, or a system without `/proc` gives `None`.

use std::path::Path;

/// The release of the Kafka broker listening at `address` (`host:port`), when it is a
/// local process this user may inspect.
pub fn local_broker_release(address: &str) -> Option<String> {
    let (host, port) = address.trim().rsplit_once(':')?;
    let host = host.trim_matches(|c| c == '[' || c == ']');
    if !matches!(host, "127.0.0.1" | "localhost" | "::1") {
        return None;
    }
    let port: u16 = port.parse().ok()?;
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return None;
    }
    let pid = owner_of(&inodes)?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    release_from_class_path(&args, |dir| {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Socket inodes in LISTEN state on `port` (IPv4 and IPv6).
fn listening_inodes(port: u16) -> Vec<String> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl, local_address, rem_address, st, tx:rx, tr:when, retrnsmt, uid, timeout, inode
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let listening = *state == "0A";
            let on_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                == Some(port);
            if listening && on_port {
                inodes.push((*inode).to_owned());
            }
        }
    }
    inodes
}

/// The process holding one of the sockets `inodes`.
fn owner_of(inodes: &[String]) -> Option<u32> {
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc").ok()?.filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.filter_map(Result::ok) {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if wanted.iter().any(|w| Path::new(w) == target) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// The release named by the broker's jar on the class path in `args` (`-cp`,
/// `-classpath` or `--class-path`); a `dir/*` entry is listed with `list`.
fn release_from_class_path(args: &[String], list: impl Fn(&str) -> Vec<String>) -> Option<String> {
    let class_path = args
        .windows(2)
        .find(|w| matches!(w[0].as_str(), "-cp" | "-classpath" | "--class-path"))
        .map(|w| w[1].clone())?;
    class_path.split(':').find_map(|entry| {
        let names = match entry.strip_suffix("/*") {
            Some(dir) => list(dir),
            None => vec![entry.rsplit('/').next().unwrap_or(entry).to_owned()],
        };
        names.iter().find_map(|name| jar_release(name))
    })
}

/// `4.1.1` of `kafka-server-4.1.1.jar` or of `kafka_2.13-4.1.1.jar`.
fn jar_release(name: &str) -> Option<String> {
    let stem = name.strip_suffix(".jar")?;
    let version = stem.strip_prefix("kafka-server-").or_else(|| {
        stem.strip_prefix("kafka_2.")
            .and_then(|rest| rest.split_once('-'))
            .map(|(_, v)| v)
    })?;
    let plain = version.chars().next().is_some_and(|c| c.is_ascii_digit())
        && !["test", "sources", "javadoc"]
            .iter()
            .any(|s| version.contains(s));
    plain.then(|| version.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_comes_from_the_broker_jar_on_the_class_path() {
        let args = |cp: &str| {
            [
                "java",
                "-Xmx1g",
                "-cp",
                cp,
                "kafka.Kafka",
                "server.properties",
            ]
            .map(str::to_owned)
            .to_vec()
        };
        let libs = |dir: &str| {
            assert_eq!(dir, "/cache/kafka-4.1.1/libs");
            vec![
                "kafka-clients-4.1.1.jar".to_owned(),
                "kafka-server-common-4.1.1.jar".to_owned(),
                "kafka-server-4.1.1.jar".to_owned(),
            ]
        };
        assert_eq!(
            release_from_class_path(&args("/cache/kafka-4.1.1/libs/*"), libs).as_deref(),
            Some("4.1.1")
        );
        let none = |_: &str| Vec::new();
        assert_eq!(
            release_from_class_path(
                &args(
                    "/opt/kafka/libs/kafka-clients-3.9.0.jar:/opt/kafka/libs/kafka_2.13-3.9.0.jar"
                ),
                none
            )
            .as_deref(),
            Some("3.9.0")
        );
        assert_eq!(jar_release("kafka_2.13-3.9.0-test.jar"), None);
        assert_eq!(jar_release("kafka-server-common-4.1.1.jar"), None);
        assert_eq!(release_from_class_path(&args("/x/y.jar"), none), None);
        assert_eq!(local_broker_release("kafka.example.com:9092"), None);
    }
}
