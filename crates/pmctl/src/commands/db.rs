//! `pmctl db bootstrap`: the least-privilege roles (see `pm_storage::roles`).

use std::path::PathBuf;

use secrecy::ExposeSecret;

use crate::args::DatabaseArgs;
use crate::secrets::Sources;

/// Database administration.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Create (or bring up to date) the owner, application and read-only roles and their
    /// grants on the database of --database-url, which must be a superuser's. Idempotent:
    /// run it once before the first `migrate`, and again after any change of roles.
    Bootstrap(BootstrapArgs),
}

#[derive(Debug, clap::Args)]
struct BootstrapArgs {
    #[command(flatten)]
    db: DatabaseArgs,
    /// The role that owns the schema: `migrate` and `partition-maintain` run as it.
    #[arg(long, env = "PM_DB_OWNER_ROLE", default_value = "pm_owner")]
    owner_role: String,
    /// The role of the services (`serve-api`): rows only, no DDL.
    #[arg(long, env = "PM_DB_APP_ROLE", default_value = "pm_app")]
    app_role: String,
    /// The read-only role, for reporting and support.
    #[arg(long, env = "PM_DB_READONLY_ROLE", default_value = "pm_readonly")]
    readonly_role: String,
    /// A file holding the owner role's password [default: the systemd credential
    /// `db-owner-password`; without either, the password is left as it is].
    #[arg(long, env = "PM_DB_OWNER_PASSWORD_FILE")]
    owner_password_file: Option<PathBuf>,
    /// A file holding the application role's password (credential `db-app-password`).
    #[arg(long, env = "PM_DB_APP_PASSWORD_FILE")]
    app_password_file: Option<PathBuf>,
    /// A file holding the read-only role's password (credential `db-readonly-password`).
    #[arg(long, env = "PM_DB_READONLY_PASSWORD_FILE")]
    readonly_password_file: Option<PathBuf>,
}

fn password(
    flag: &'static str,
    file: Option<&std::path::Path>,
    credential: &'static str,
) -> anyhow::Result<Option<String>> {
    Ok(Sources {
        flag,
        value: None,
        file,
        credential,
    }
    .resolve()?
    .map(|(p, _)| p.expose_secret().to_owned()))
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let Command::Bootstrap(args) = args.command;
    let names = pm_storage::roles::RoleNames {
        owner: args.owner_role.clone(),
        app: args.app_role.clone(),
        readonly: args.readonly_role.clone(),
    };
    let passwords = pm_storage::roles::RolePasswords {
        owner: password(
            "--owner-password",
            args.owner_password_file.as_deref(),
            "db-owner-password",
        )?,
        app: password(
            "--app-password",
            args.app_password_file.as_deref(),
            "db-app-password",
        )?,
        readonly: password(
            "--readonly-password",
            args.readonly_password_file.as_deref(),
            "db-readonly-password",
        )?,
    };
    let pool = args.db.pool("pmctl-db-bootstrap")?;
    let report = pm_storage::roles::bootstrap(&pool, &names, &passwords).await?;
    pool.close().await;
    if report.created.is_empty() {
        println!(
            "roles {}, {}, {} existed; grants brought up to date",
            names.owner, names.app, names.readonly
        );
    } else {
        println!("created roles: {}", report.created.join(", "));
    }
    if report.reowned > 0 {
        println!("{} objects handed to {}", report.reowned, names.owner);
    }
    println!(
        "database {}: owned by {}; {} may read and write rows (no DDL, no DELETE, audit rows append-only); {} may read",
        report.database, names.owner, names.app, names.readonly
    );
    println!(
        "next: run `pmctl migrate` and `pmctl partition-maintain` as {}, and the services as {}",
        names.owner, names.app
    );
    Ok(())
}
