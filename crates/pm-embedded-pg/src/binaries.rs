//! Finding the PostgreSQL server binaries installed on this machine.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::EmbeddedError;

/// Environment variable naming the directory that holds `initdb` and `postgres`; it wins over
/// every other discovery rule.
pub const BIN_DIR_ENV: &str = "PM_PG_BIN_DIR";

/// Where Debian and Ubuntu install one directory per major version (`15/bin`, `16/bin`, …);
/// none of them is on the `PATH`.
const DEBIAN_VERSIONS_ROOT: &str = "/usr/lib/postgresql";

/// A directory of PostgreSQL server binaries and the major version they belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    bin_dir: PathBuf,
    major_version: u32,
}

impl PgBinaries {
    /// Finds the server binaries: the directory in `PM_PG_BIN_DIR` if that is set; otherwise the
    /// directory of the `initdb` on the `PATH`; otherwise the highest-versioned
    /// `/usr/lib/postgresql/*/bin` holding `initdb`, `pg_ctl` and `postgres`.
    ///
    /// This runs `postgres --version`, so it blocks briefly.
    pub fn discover() -> Result<Self, EmbeddedError> {
        if let Some(dir) = std::env::var_os(BIN_DIR_ENV).filter(|dir| !dir.is_empty()) {
            let dir = PathBuf::from(dir);
            // An explicit setting that is wrong must fail loudly rather than fall back to some
            // other installation the user did not ask for.
            if let Some(missing) = first_missing(&dir, &["initdb", "postgres"]) {
                return Err(EmbeddedError::InvalidBinDir { dir, missing });
            }
            return Self::in_dir(dir);
        }
        if let Some(dir) = initdb_on_path(std::env::var_os("PATH").as_deref()) {
            return Self::in_dir(dir);
        }
        match highest_versioned_dir(Path::new(DEBIAN_VERSIONS_ROOT)) {
            Some(dir) => Self::in_dir(dir),
            None => Err(EmbeddedError::BinariesNotFound),
        }
    }

    /// Uses the binaries in `bin_dir`, reading their major version from `postgres --version`.
    pub fn in_dir(bin_dir: impl Into<PathBuf>) -> Result<Self, EmbeddedError> {
        let bin_dir = bin_dir.into();
        let program = bin_dir.join("postgres");
        let output = Command::new(&program)
            .arg("--version")
            .output()
            .map_err(|source| EmbeddedError::spawn(program.display(), source))?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        match parse_major_version(&text) {
            Some(major_version) if output.status.success() => Ok(Self {
                bin_dir,
                major_version,
            }),
            _ => Err(EmbeddedError::UnknownVersion {
                program,
                output: text,
            }),
        }
    }

    /// The directory holding `initdb` and `postgres`.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The major version of the server (15 for PostgreSQL 15.x; 9 for 9.6).
    pub fn major_version(&self) -> u32 {
        self.major_version
    }

    /// Whether the server's library directory (`lib` next to `bin`, as Debian and source
    /// builds lay it out) holds the loadable module `name` (`pg_stat_statements`).
    pub fn has_module(&self, name: &str) -> bool {
        self.bin_dir
            .parent()
            .is_some_and(|root| root.join("lib").join(format!("{name}.so")).is_file())
    }

    pub(crate) fn initdb(&self) -> PathBuf {
        self.bin_dir.join("initdb")
    }

    pub(crate) fn postgres(&self) -> PathBuf {
        self.bin_dir.join("postgres")
    }

    pub(crate) fn basebackup(&self) -> PathBuf {
        self.bin_dir.join("pg_basebackup")
    }
}

/// Reads the major version out of `postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)`.
fn parse_major_version(version_output: &str) -> Option<u32> {
    // Distributions append their own version in parentheses, so take the first number after
    // the product name rather than any number in the line.
    let after_name = version_output.split_once("(PostgreSQL)")?.1.trim_start();
    let digits: String = after_name
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn first_missing(dir: &Path, programs: &[&'static str]) -> Option<&'static str> {
    programs
        .iter()
        .copied()
        .find(|program| !is_executable(&dir.join(program)))
}

/// The directory of the first `initdb` on `path` that has `postgres` next to it.
fn initdb_on_path(path: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path?).find_map(|dir| {
        let initdb = dir.join("initdb");
        if !is_executable(&initdb) {
            return None;
        }
        // `initdb` may be a symlink into the real installation (/usr/local/bin, Homebrew, Nix).
        // Prefer that directory: it holds `postgres` even when the PATH entry does not, and it
        // is the truthful one to show in logs and process listings.
        let real_dir = std::fs::canonicalize(&initdb)
            .ok()
            .and_then(|real| real.parent().map(Path::to_path_buf));
        real_dir
            .into_iter()
            .chain(std::iter::once(dir))
            .find(|candidate| first_missing(candidate, &["postgres"]).is_none())
    })
}

/// The `<root>/<version>/bin` with the highest version that holds a complete set of binaries.
fn highest_versioned_dir(root: &Path) -> Option<PathBuf> {
    std::fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = parse_dir_version(entry.file_name().to_str()?)?;
            let bin_dir = entry.path().join("bin");
            first_missing(&bin_dir, &["initdb", "pg_ctl", "postgres"])
                .is_none()
                .then_some((version, bin_dir))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin_dir)| bin_dir)
}

/// `"15"` → `(15, 0)`, `"9.6"` → `(9, 6)`: numeric, so that 10 sorts above 9.6.
fn parse_dir_version(name: &str) -> Option<(u32, u32)> {
    let (major, minor) = name.split_once('.').unwrap_or((name, "0"));
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_program(path: &Path) {
        std::fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
        std::fs::write(path, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    #[test]
    fn reads_major_version_not_the_distribution_version() {
        let debian = "postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n";
        assert_eq!(parse_major_version(debian), Some(15));
        assert_eq!(
            parse_major_version("postgres (PostgreSQL) 17devel\n"),
            Some(17)
        );
        assert_eq!(
            parse_major_version("postgres (PostgreSQL) 9.6.24\n"),
            Some(9)
        );
        assert_eq!(parse_major_version("something else 15.2"), None);
    }

    #[test]
    fn picks_the_highest_complete_version_directory() {
        let root = tempfile::tempdir().expect("tempdir");
        for version in ["9.6", "13", "15"] {
            for program in ["initdb", "pg_ctl", "postgres"] {
                fake_program(&root.path().join(version).join("bin").join(program));
            }
        }
        // 16 is only partly installed (client package only), so it must not be chosen.
        fake_program(&root.path().join("16/bin/initdb"));
        std::fs::create_dir_all(root.path().join("not-a-version/bin")).expect("mkdir");

        assert_eq!(
            highest_versioned_dir(root.path()),
            Some(root.path().join("15/bin"))
        );
    }

    #[test]
    fn finds_initdb_on_path_only_next_to_postgres() {
        let root = tempfile::tempdir().expect("tempdir");
        let lonely = root.path().join("lonely");
        let complete = root.path().join("complete");
        fake_program(&lonely.join("initdb"));
        fake_program(&complete.join("initdb"));
        fake_program(&complete.join("postgres"));
        let path = std::env::join_paths([&lonely, &complete]).expect("join");

        assert_eq!(initdb_on_path(Some(&path)), Some(complete.clone()));
        assert_eq!(initdb_on_path(None), None);

        // Like /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb.
        let linked = root.path().join("linked");
        std::fs::create_dir_all(&linked).expect("mkdir");
        std::os::unix::fs::symlink(complete.join("initdb"), linked.join("initdb")).expect("link");
        let real = std::fs::canonicalize(&complete).expect("canonical");
        assert_eq!(initdb_on_path(Some(linked.as_os_str())), Some(real));
    }
}
