//! The `sh` process that ties the server's life to its owner's.
//!
//! Nothing the owner does at exit can be relied on (`SIGKILL`, `std::process::exit`, a cluster
//! held in a `static`), but one thing always happens when a process dies, however it dies: the
//! kernel closes its file descriptors. So the owner holds the only write end of a pipe whose
//! read end is the watchdog's stdin, and the watchdog treats end-of-file as "stop now".
//!
//! The watchdog is a plain `std::process` child, not a `tokio::process` one, so that it belongs
//! to no tokio runtime: tests create one runtime per test while the cluster outlives them all.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, OnceLock};

use crate::EmbeddedError;

/// Runs `"$@"` (the server) in the background and waits for end-of-file on stdin.
///
/// Arguments: `$1` is a directory to delete once the server is gone (empty: keep it); the rest is
/// the server's command line. The shell prints `exited <status>` on stdout when the server exits,
/// which is how the owner notices a server that died during startup.
///
/// - The pipe is moved to fd 3 and closed for the server, so that only the watcher reads it.
/// - A background watcher blocks in `read` until end-of-file, then sends SIGINT, PostgreSQL's
///   "fast shutdown" (abort open transactions, checkpoint, exit) — SIGTERM would wait for clients
///   to disconnect, which a killed owner's pool never does.
/// - The main shell waits for the server itself, so it knows when the server is really gone
///   before deleting its directory; then it still waits for end-of-file, because a server that
///   died on its own leaves a log its owner wants to read before the directory disappears.
/// - SIGPIPE is ignored so that reporting `exited` to a dead owner cannot kill the shell before
///   it has cleaned up.
///
/// After the server has been reaped there is a window of a few instructions before the watcher
/// is killed in which end-of-file would make it signal a stale pid; hitting it needs the pid to be
/// reused within those microseconds, which sequential pid allocation rules out in practice, and
/// POSIX `sh` offers nothing tighter (no `wait -n`, no pidfds).
const SCRIPT: &str = r#"
trap '' PIPE
remove=$1
shift
exec 3<&0 </dev/null
"$@" 3<&- >&2 &
server=$!
( while read -r _ <&3; do :; done; kill -INT "$server" 2>/dev/null ) &
watcher=$!
wait "$server"
status=$?
kill "$watcher" 2>/dev/null
echo "exited $status"
wait "$watcher" 2>/dev/null
while read -r _ <&3; do :; done
[ -z "$remove" ] || rm -rf -- "$remove"
"#;

/// A running watchdog shell and the server under it.
#[derive(Debug)]
pub(crate) struct Watchdog {
    child: Option<Child>,
    /// The write end of the pipe; dropping it is the stop signal.
    lifeline: Option<ChildStdin>,
    /// The server's exit status, as soon as the shell reports it. Not a channel receiver, which
    /// is not `Sync`: a cluster must be able to live in a `static`.
    server_exit: Arc<OnceLock<i32>>,
}

impl Watchdog {
    /// Starts `server` under a watchdog that deletes `remove_when_done` (if any) once the server
    /// has stopped. The server's stdout and stderr go to `log`.
    pub(crate) fn spawn(
        server: Vec<OsString>,
        remove_when_done: Option<&Path>,
        log: File,
    ) -> Result<Self, EmbeddedError> {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("pm-embedded-pg-watchdog")
            .arg(remove_when_done.map(Path::as_os_str).unwrap_or_default())
            .args(server)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            // A directory every user can enter: the server may run as another user than ours.
            .current_dir("/")
            // Its own process group, so that Ctrl-C in a terminal reaches only the owner: the
            // owner's death closes the pipe and the watchdog shuts down in order, whereas a
            // SIGINT to the shell itself would kill it before it deletes the directory.
            .process_group(0)
            .spawn()
            .map_err(|source| EmbeddedError::spawn("/bin/sh", source))?;

        let lifeline = child.stdin.take();
        let server_exit = Arc::new(OnceLock::new());
        if let Some(stdout) = child.stdout.take() {
            spawn_reporter(stdout, Arc::clone(&server_exit))?;
        }
        Ok(Self {
            child: Some(child),
            lifeline,
            server_exit,
        })
    }

    /// The server's exit status if it has exited.
    pub(crate) fn server_exit_status(&self) -> Option<i32> {
        self.server_exit.get().copied()
    }

    /// Closes the pipe — from here on the watchdog stops the server and cleans up — and hands
    /// back the shell so the caller can wait for that to finish.
    pub(crate) fn release(mut self) -> Option<Child> {
        self.lifeline = None;
        self.child.take()
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.lifeline = None;
        if let Some(mut child) = self.child.take() {
            // Reap the shell once it is done so it does not linger as a zombie; a detached thread
            // because a destructor must not block on a server's shutdown. If this process exits
            // first, the thread simply dies with it and init reaps the shell.
            let reaper = std::thread::Builder::new()
                .name("pm-embedded-pg-reaper".into())
                .spawn(move || child.wait());
            if let Err(error) = reaper {
                tracing::debug!(%error, "could not start a thread to reap the watchdog shell");
            }
        }
    }
}

/// Forwards the shell's `exited <status>` line; the thread ends when the shell does.
fn spawn_reporter(stdout: ChildStdout, exit: Arc<OnceLock<i32>>) -> Result<(), EmbeddedError> {
    std::thread::Builder::new()
        .name("pm-embedded-pg-watchdog".into())
        .spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(status) = line.strip_prefix("exited ") {
                    // The shell reports once; a second value could not be more true than the first.
                    let _ = exit.set(status.trim().parse().unwrap_or(-1));
                }
            }
        })
        .map(drop)
        .map_err(|source| EmbeddedError::spawn("a watchdog reporter thread", source))
}
