//! `pmctl api-keys`: create, list and revoke operator API keys.

use std::time::Duration;

use anyhow::Context;
use comfy_table::Table;
use pm_domain::api_key::Scope;
use pm_storage::api_keys::{self, CreateError, StoredKey};
use pm_storage::audit::Actor;

use crate::args::{duration, DatabaseArgs};

/// Manage the API keys operators and tools use (`Authorization: Bearer pmk_…`). A key is
/// shown once, when it is created; only a hash of it is stored. A revoked or expired key
/// stops working on every running serve-api within seconds.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    db: DatabaseArgs,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Create a key; it is printed alone on the last line of stdout (and only then).
    Create {
        /// A name to know the key by (letters, digits, `.`, `_`, `-`; at most 64), unique.
        #[arg(long, value_parser = key_name)]
        name: String,
        /// What the key may do: `read` (every GET), `operate` (hold, capture, evidence,
        /// submit), `admin` (audit, key management over HTTP). Repeatable.
        #[arg(long = "scope", required = true)]
        scopes: Vec<ScopeArg>,
        /// The key stops working after this long (e.g. `90d`); default: never.
        #[arg(long, value_parser = duration)]
        expires_in: Option<Duration>,
        /// Print `{name, key_id, scopes, expires_at, key}` as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// List the keys (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke the key with this name (idempotent).
    Revoke {
        #[arg(value_parser = key_name)]
        name: String,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ScopeArg {
    Read,
    Operate,
    Admin,
}

impl From<ScopeArg> for Scope {
    fn from(s: ScopeArg) -> Scope {
        match s {
            ScopeArg::Read => Scope::Read,
            ScopeArg::Operate => Scope::Operate,
            ScopeArg::Admin => Scope::Admin,
        }
    }
}

fn key_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(s.to_owned())
    } else {
        Err("1 to 64 letters, digits, `.`, `_` or `-`".to_owned())
    }
}

/// Who acts from the command line, for the audit trail: the command and the login name.
fn cli_actor() -> Actor {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
    Actor::new(format!("cli:api-keys:{user}"), None)
}

fn scopes_text(key: &StoredKey) -> String {
    key.scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn state(key: &StoredKey) -> &'static str {
    let now = pm_domain::time::now();
    if key.revoked_at.is_some() {
        "revoked"
    } else if !key.is_active(now) {
        "expired"
    } else {
        "active"
    }
}

fn json(key: &StoredKey) -> serde_json::Value {
    serde_json::json!({
        "name": key.name,
        "key_id": key.key_id.as_str(),
        "scopes": key.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "created_at": pm_domain::time::format(&key.created_at),
        "expires_at": key.expires_at.as_ref().map(pm_domain::time::format),
        "revoked_at": key.revoked_at.as_ref().map(pm_domain::time::format),
        "state": state(key),
    })
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let pool = args.db.pool("pmctl-api-keys")?;
    let now = pm_domain::time::now();
    match args.action {
        Action::Create {
            name,
            scopes,
            expires_in,
            json: as_json,
        } => {
            let mut scopes: Vec<Scope> = scopes.into_iter().map(Scope::from).collect();
            scopes.sort();
            scopes.dedup();
            let expires_at = expires_in
                .map(|d| chrono::Duration::from_std(d).map(|d| now + d))
                .transpose()
                .context("--expires-in is too long")?;
            let (key, token) = match api_keys::create(
                &pool,
                &name,
                &scopes,
                expires_at,
                &cli_actor(),
                now,
            )
            .await
            {
                Ok(created) => created,
                Err(CreateError::NameTaken(name)) => {
                    anyhow::bail!(
                        "a key named {name:?} exists already (revoked keys keep their names)"
                    )
                }
                Err(CreateError::Storage(e)) => return Err(e.into()),
            };
            if as_json {
                let mut value = json(&key);
                value["key"] = serde_json::Value::String(token);
                println!("{value}");
            } else {
                let expiry = key
                    .expires_at
                    .as_ref()
                    .map_or("never expires".to_owned(), |e| {
                        format!("expires {}", pm_domain::time::format(e))
                    });
                println!(
                    "created key {:?} (id {}, scopes {}, {expiry}); it is shown only now:",
                    key.name,
                    key.key_id,
                    scopes_text(&key)
                );
                println!("{token}");
            }
        }
        Action::List { json: as_json } => {
            let keys = api_keys::list(&pool).await?;
            if as_json {
                let items: Vec<_> = keys.iter().map(json).collect();
                println!("{}", serde_json::to_string_pretty(&items)?);
            } else {
                let mut table = Table::new();
                table.set_header(["name", "key id", "scopes", "created", "expires", "state"]);
                for k in &keys {
                    table.add_row([
                        k.name.clone(),
                        k.key_id.to_string(),
                        scopes_text(k),
                        pm_domain::time::format(&k.created_at),
                        k.expires_at
                            .as_ref()
                            .map_or("never".to_owned(), pm_domain::time::format),
                        state(k).to_owned(),
                    ]);
                }
                println!("{table}");
            }
        }
        Action::Revoke { name } => match api_keys::revoke(&pool, &name, &cli_actor(), now).await? {
            Some(key) => println!(
                "key {:?} (id {}) is revoked; running instances refuse it within seconds",
                key.name, key.key_id
            ),
            None => anyhow::bail!("no key is named {name:?}"),
        },
    }
    Ok(())
}
