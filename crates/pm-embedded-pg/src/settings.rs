//! Extra server settings a caller passes through [`crate::EmbeddedOptions::settings`].

use crate::EmbeddedError;

/// Settings the cluster itself must decide: its readiness probe, its URLs and its TLS check
/// depend on where the server listens and how it serves TLS. Say those through
/// [`crate::EmbeddedOptions::port`] and [`crate::EmbeddedOptions::tls`] instead.
const RESERVED: [&str; 6] = [
    "listen_addresses",
    "port",
    "unix_socket_directories",
    "ssl",
    "ssl_cert_file",
    "ssl_key_file",
];

/// Refuses, before anything is started, a setting that would be misread on the command line
/// (`-c name=value` splits at the first `=`) or that the cluster must decide itself.
pub(crate) fn validate(settings: &[(String, String)]) -> Result<(), EmbeddedError> {
    for (name, value) in settings {
        let refuse = |reason| {
            Err(EmbeddedError::InvalidSetting {
                name: name.clone(),
                reason,
            })
        };
        if !is_parameter_name(name) {
            return refuse(
                "a parameter name is letters, digits, `_` and (for an extension's) `.`, \
                 starting with a letter or `_`",
            );
        }
        // PostgreSQL matches parameter names without regard to case.
        if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            return refuse(
                "the cluster chooses where it listens and how it serves TLS itself; use \
                 EmbeddedOptions::port and EmbeddedOptions::tls",
            );
        }
        if value.contains('\0') {
            return refuse("the value holds a NUL byte, which no command line can carry");
        }
    }
    Ok(())
}

fn is_parameter_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(name: &str, value: &str) -> Vec<(String, String)> {
        vec![(name.to_owned(), value.to_owned())]
    }

    #[test]
    fn ordinary_and_extension_settings_pass() {
        let archive = "pgbackrest --config=/etc/pgbackrest.conf --stanza=pm archive-push %p";
        assert!(validate(&setting("archive_command", archive)).is_ok());
        assert!(validate(&setting("pg_stat_statements.max", "1000")).is_ok());
        assert!(validate(&setting("work_mem", "")).is_ok());
    }

    #[test]
    fn names_that_the_command_line_would_misread_are_refused() {
        for name in ["", "fsync=off wal_level", "1st", "has space", "a-b"] {
            let refused = validate(&setting(name, "on"));
            assert!(
                matches!(refused, Err(EmbeddedError::InvalidSetting { .. })),
                "{name:?}: {refused:?}"
            );
        }
    }

    #[test]
    fn where_the_server_listens_is_the_clusters_choice() {
        for name in ["port", "PORT", "listen_addresses", "ssl_key_file"] {
            let refused = validate(&setting(name, "1"));
            assert!(
                matches!(refused, Err(EmbeddedError::InvalidSetting { .. })),
                "{name}: {refused:?}"
            );
        }
    }

    #[test]
    fn a_nul_byte_in_a_value_is_refused() {
        assert!(validate(&setting("application_name", "a\0b")).is_err());
    }
}
