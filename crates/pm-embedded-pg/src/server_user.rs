//! Which operating-system user runs `initdb` and `postgres`.

use std::ffi::OsString;
use std::fs::File;
use std::path::Path;
use std::process::Command;

use crate::EmbeddedError;

/// The system user Debian's `postgresql` package creates, and the conventional one elsewhere.
const SYSTEM_USER: &str = "postgres";

/// `initdb` and `postgres` refuse to run as root (a compromised server must not own the
/// machine), but tests and CI run as root; then the server runs as the `postgres` user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerUser {
    /// Not root: the server runs as whoever we are.
    Current,
    /// Root: the server runs as the `postgres` system user with these ids.
    System { uid: u32, gid: u32 },
}

impl ServerUser {
    /// Decides from the effective uid; blocks briefly to look the `postgres` user up when root.
    pub(crate) fn detect() -> Result<Self, EmbeddedError> {
        if !rustix::process::geteuid().is_root() {
            return Ok(Self::Current);
        }
        // `id` goes through NSS, so it also finds a user that is not in /etc/passwd.
        Ok(Self::System {
            uid: lookup_id("-u")?,
            gid: lookup_id("-g")?,
        })
    }

    /// The command line that runs `program` as this user.
    ///
    /// `setpriv` execs the program in place of itself instead of forking, so the pid the
    /// watchdog shell gets for the server really is the postmaster's, and signals reach it.
    pub(crate) fn command_line(self, program: &Path) -> Vec<OsString> {
        let mut argv: Vec<OsString> = self.setpriv_prefix().into_iter().flatten().collect();
        argv.push(program.into());
        argv
    }

    /// The same as [`Self::command_line`], as a ready-to-configure [`Command`].
    pub(crate) fn command(self, program: &Path) -> Command {
        match self.setpriv_prefix() {
            None => Command::new(program),
            Some([setpriv, args @ ..]) => {
                let mut command = Command::new(setpriv);
                command.args(args).arg(program);
                command
            }
        }
    }

    fn setpriv_prefix(self) -> Option<[OsString; 4]> {
        match self {
            Self::Current => None,
            Self::System { uid, gid } => Some(
                [
                    "setpriv".to_owned(),
                    format!("--reuid={uid}"),
                    format!("--regid={gid}"),
                    "--init-groups".to_owned(),
                ]
                .map(OsString::from),
            ),
        }
    }

    /// Hands `path` to the server's user, which must own its data directory and may need to
    /// write files we create in it.
    pub(crate) fn take_ownership(self, path: &Path) -> Result<(), EmbeddedError> {
        match self {
            Self::Current => Ok(()),
            Self::System { uid, gid } => std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(|source| EmbeddedError::io("change the owner of", path, source)),
        }
    }

    /// The same for a file we have just created and still hold open (`path` only names it in
    /// errors). Changing the owner through the open file, not its name, cannot be redirected by
    /// a link swapped in at that name in between.
    pub(crate) fn take_ownership_of(self, file: &File, path: &Path) -> Result<(), EmbeddedError> {
        match self {
            Self::Current => Ok(()),
            Self::System { uid, gid } => std::os::unix::fs::fchown(file, Some(uid), Some(gid))
                .map_err(|source| EmbeddedError::io("change the owner of", path, source)),
        }
    }
}

fn lookup_id(flag: &str) -> Result<u32, EmbeddedError> {
    let output = Command::new("id")
        .args([flag, SYSTEM_USER])
        .output()
        .map_err(|source| EmbeddedError::spawn("id", source))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.trim().parse() {
        Ok(id) if output.status.success() => Ok(id),
        _ => Err(EmbeddedError::NoPostgresUser {
            detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        }),
    }
}
