//! Running promtool (Debian's `prometheus` package; `scripts/install-deps.sh` installs it).
//! Its absence fails the test with what to install: no test skips silently.

use std::process::{Command, Output, Stdio};

/// Runs `promtool <args>` to its end.
pub fn run(args: &[&str]) -> Output {
    Command::new("promtool")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install Debian's prometheus package \
                 (scripts/install-deps.sh does)"
            )
        })
}

/// promtool's stdout and stderr, for failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `promtool <args>` and fails the test with promtool's output unless it succeeded.
pub fn succeeds(args: &[&str]) {
    let out = run(args);
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n{}",
        args.join(" "),
        out.status,
        text(&out)
    );
}
