//! Data directories in archive recovery, as a point-in-time restore leaves them: how to tell
//! one, and how far its server got.

use std::path::Path;
use std::time::Duration;

/// How long a data directory in archive recovery gets to reach its target and promote: replay
/// takes as long as the WAL it fetches needs. A recovery that fails ends the server, which is
/// noticed at once, so only a slow one waits this long.
pub(crate) const RECOVERY_TIMEOUT: Duration = Duration::from_secs(300);

/// Archive recovery to a target: `recovery.signal` without `standby.signal` (with both the
/// server follows a primary instead, and stays read-only as a standby should).
pub(crate) fn in_archive_recovery(data_dir: &Path) -> bool {
    data_dir.join("recovery.signal").is_file() && !data_dir.join("standby.signal").is_file()
}

/// Where a server started in archive recovery stands.
pub(crate) enum Recovery {
    /// Still replaying WAL (hot standby lets us ask meanwhile).
    Replaying,
    /// Reached its target and paused there; it stays so until resumed.
    Paused,
    /// Promoted: it takes writes.
    Over,
}

/// Asks the server where its recovery stands; a hot standby answers while it replays.
pub(crate) async fn state(connection: &mut sqlx::PgConnection) -> Result<Recovery, String> {
    // Evaluated lazily: `pg_is_wal_replay_paused()` raises an error once recovery is over. It
    // can still end between the two calls; the error then only means "ask again".
    let state: String = sqlx::query_scalar(
        "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 'over' \
                     WHEN pg_is_wal_replay_paused() THEN 'paused' \
                     ELSE 'replaying' END",
    )
    .fetch_one(connection)
    .await
    .map_err(|error| error.to_string())?;
    Ok(match state.as_str() {
        "over" => Recovery::Over,
        "paused" => Recovery::Paused,
        _ => Recovery::Replaying,
    })
}
