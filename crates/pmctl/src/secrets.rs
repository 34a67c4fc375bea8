//! Where a secret comes from: its flag or variable, a file (`--…-file`, `PM_…_FILE`), or a
//! systemd credential (`LoadCredential=NAME:…` puts it in `$CREDENTIALS_DIRECTORY/NAME`).
//!
//! The rules, the same for every secret:
//! - a value and a file for one secret is an error (which one was meant?);
//! - a file holds the secret alone; one trailing newline (what editors and `echo` add) is
//!   not part of it;
//! - with neither, the credential of the secret's name is used when systemd passed one;
//! - errors name the flag and the file, never the contents.
//!
//! And for everything that reports what a command was run with (benchmark reports), the
//! command line with every secret flag's value hidden: [`redacted_command_line`]. A
//! secret flag is one whose environment value clap hides (`hide_env_values`): one rule,
//! enforced for every flag by a test.

use std::path::{Path, PathBuf};

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};

/// systemd's credentials directory variable.
pub(crate) const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// One secret's sources, as its flags received them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sources<'a> {
    /// The flag carrying the value, for messages (`--internal-token`).
    pub(crate) flag: &'static str,
    pub(crate) value: Option<&'a SecretString>,
    pub(crate) file: Option<&'a Path>,
    /// The systemd credential name (`internal-token`).
    pub(crate) credential: &'static str,
}

/// Where a resolved secret came from; files can be re-read (SIGHUP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    Value,
    File(PathBuf),
}

impl Sources<'_> {
    /// The secret, or `None` when none of its sources is set. An empty value counts as
    /// not set.
    pub(crate) fn resolve(&self) -> anyhow::Result<Option<(SecretString, Origin)>> {
        let resolved = self.sources()?;
        if let Some((secret, _)) = &resolved {
            remember(secret.expose_secret());
        }
        Ok(resolved)
    }

    fn sources(&self) -> anyhow::Result<Option<(SecretString, Origin)>> {
        let value = self.value.filter(|v| !v.expose_secret().is_empty());
        match (value, self.file) {
            (Some(_), Some(file)) => anyhow::bail!(
                "{flag} and {flag}-file ({}) both given: pass one",
                file.display(),
                flag = self.flag
            ),
            (Some(v), None) => Ok(Some((v.clone(), Origin::Value))),
            (None, Some(file)) => Ok(Some((
                read(file).with_context(|| format!("{}-file", self.flag))?,
                Origin::File(file.to_owned()),
            ))),
            (None, None) => match credential(self.credential) {
                Some(file) => Ok(Some((
                    read(&file)
                        .with_context(|| format!("systemd credential {}", self.credential))?,
                    Origin::File(file),
                ))),
                None => Ok(None),
            },
        }
    }
}

/// Registers a secret for scrubbing from every log line and printed error (see
/// [`pm_telemetry::redact`]); a database URL's password, when given a URL.
pub(crate) fn remember(secret: &str) {
    pm_telemetry::redact::register(secret);
    if let Ok(url) = reqwest::Url::parse(secret) {
        if let Some(password) = url.password() {
            pm_telemetry::redact::register(password);
            // The URL form may be percent-encoded; a library may print either.
            if let Ok(decoded) = percent_encoding::percent_decode_str(password).decode_utf8() {
                pm_telemetry::redact::register(&decoded);
            }
        }
    }
}

/// `$CREDENTIALS_DIRECTORY/<name>`, when systemd passed that credential.
pub(crate) fn credential(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os(CREDENTIALS_DIRECTORY).filter(|d| !d.is_empty())?;
    let path = Path::new(&dir).join(name);
    path.is_file().then_some(path)
}

/// A secret file's contents without one trailing newline.
pub(crate) fn read(path: &Path) -> anyhow::Result<SecretString> {
    let mut text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the secret file {}", path.display()))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    anyhow::ensure!(
        !text.is_empty(),
        "the secret file {} is empty",
        path.display()
    );
    Ok(SecretString::from(text))
}

/// The process's command line with the value of every secret flag (and of secret
/// `--kafka-config` properties) replaced by `***`, and the password of a database URL
/// hidden.
pub(crate) fn redacted_command_line() -> Vec<String> {
    redact(std::env::args(), &secret_flags())
}

/// The long names of every secret flag of every subcommand.
fn secret_flags() -> Vec<String> {
    fn walk(cmd: &clap::Command, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            if arg.is_hide_env_values_set() {
                if let Some(long) = arg.get_long() {
                    out.push(format!("--{long}"));
                }
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out = Vec::new();
    walk(&<crate::Cli as clap::CommandFactory>::command(), &mut out);
    out.sort();
    out.dedup();
    out
}

fn redact(args: impl IntoIterator<Item = String>, secret: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    // The secret flag whose value is the next argument.
    let mut pending: Option<String> = None;
    for arg in args {
        if let Some(flag) = pending.take() {
            out.push(hide(&flag, &arg));
            continue;
        }
        match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") && is_secret(flag, secret) => {
                out.push(format!("{flag}={}", hide(flag, value)));
            }
            _ => {
                if arg.starts_with("--") && is_secret(&arg, secret) {
                    pending = Some(arg.clone());
                }
                out.push(arg);
            }
        }
    }
    out
}

fn is_secret(flag: &str, secret: &[String]) -> bool {
    flag == "--kafka-config" || secret.iter().any(|s| s == flag)
}

/// The shown form of `value` given to `flag`.
fn hide(flag: &str, value: &str) -> String {
    match flag {
        "--kafka-config" => match value.split_once('=') {
            Some((key, v)) if !is_secret_property(key) => format!("{key}={v}"),
            Some((key, _)) => format!("{key}=***"),
            None => "***".to_owned(),
        },
        "--database-url" => redact_url(value),
        _ => "***".to_owned(),
    }
}

/// Whether a librdkafka property holds a secret (passwords, client secrets, an inline
/// private key, JAAS or OAuth configurations).
pub(crate) fn is_secret_property(key: &str) -> bool {
    let key = key.trim().to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || matches!(
            key.as_str(),
            "ssl.key.pem" | "sasl.jaas.config" | "sasl.oauthbearer.config"
        )
}

/// A database URL with its password (if any) replaced; unparsable URLs are hidden whole.
pub(crate) fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() && parsed.set_password(Some("***")).is_err() {
                return "***".to_owned();
            }
            // A password can also travel as a query parameter.
            if parsed.query_pairs().any(|(k, _)| k == "password") {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k == "password" { "***".into() } else { v };
                        (k.into_owned(), v.into_owned())
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        Err(_) => "***".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn every_secret_flag_is_known_by_its_hidden_environment_value() {
        let flags = secret_flags();
        for expected in [
            "--database-url",
            "--webhook-secret",
            "--internal-token",
            "--api-key",
        ] {
            assert!(flags.iter().any(|f| f == expected), "{expected}: {flags:?}");
        }
    }

    #[test]
    fn secret_values_are_hidden_in_both_spellings() {
        let secret = args(&["--webhook-secret", "--database-url", "--internal-token"]);
        let shown = redact(
            args(&[
                "pmctl",
                "bench",
                "--webhook-secret",
                "s3cret",
                "--internal-token=tok3n",
                "--database-url",
                "postgres://app:pa55@db:5432/payments?sslmode=verify-full",
                "--kafka-config",
                "sasl.password=kafkapw",
                "--kafka-config=security.protocol=SASL_SSL",
                "--rows",
                "10",
            ]),
            &secret,
        )
        .join(" ");
        for hidden in ["s3cret", "tok3n", "pa55", "kafkapw"] {
            assert!(!shown.contains(hidden), "{hidden} in {shown}");
        }
        assert!(shown.contains("postgres://app:***@db:5432/payments?sslmode=verify-full"));
        assert!(shown.contains("security.protocol=SASL_SSL"));
        assert!(shown.contains("--rows 10"));
    }

    #[test]
    fn a_file_loses_one_trailing_newline_and_a_value_and_a_file_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "tok en\n").unwrap();
        let value = SecretString::from("other");
        let both = Sources {
            flag: "--internal-token",
            value: Some(&value),
            file: Some(&file),
            credential: "internal-token",
        };
        let err = both.resolve().unwrap_err().to_string();
        assert!(
            err.contains("both given") && !err.contains("tok en"),
            "{err}"
        );
        let from_file = Sources {
            value: None,
            ..both
        }
        .resolve()
        .unwrap()
        .unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(from_file.0.expose_secret(), "tok en");
        assert_eq!(from_file.1, Origin::File(file.clone()));
        std::fs::write(&file, "\n").unwrap();
        let empty = Sources {
            value: None,
            ..both
        }
        .resolve()
        .unwrap_err();
        assert!(format!("{empty:#}").contains("is empty"), "{empty:#}");
    }
}
