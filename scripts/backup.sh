#!/usr/bin/env bash
# Backs up a PostgreSQL cluster of Payment Manager with pgBackRest and restores it to a point in
# time: full, differential and incremental backups into a repository on a local path (another
# disk, an NFS mount), and the WAL between them shipped by the server's `archive_command`, so a
# restore can replay to any moment the archive covers. The same for our own clusters and for a
# Patroni node; pgBackRest itself comes from Debian's package (scripts/install-deps.sh).
#
#   scripts/backup.sh configure --config-dir DIR --pgdata PGDATA --repo REPO [--pg-port N]
#                     [--pg-socket-dir D] [--pg-user NAME] [--stanza NAME]
#                     [--retention-full N] [--compress zst|lz4|gz|none] [--log-dir L]
#                     write DIR/pgbackrest.conf; print the server settings that ship WAL to
#                     REPO, one `name=value` a line (archive_mode, archive_command and
#                     archive_timeout)
#   scripts/backup.sh archive-command --config-dir DIR [--stanza NAME]
#                     print just the archive_command (works before `configure`)
#   scripts/backup.sh stanza-create --config-dir DIR   prepare REPO for the cluster (once;
#                     the server must run with the settings above)
#   scripts/backup.sh check --config-dir DIR           check the configuration, switch to a
#                     new WAL segment and wait until the old one is archived
#   scripts/backup.sh backup full|diff|incr --config-dir DIR    take a backup, then expire
#                     what the retention no longer keeps
#   scripts/backup.sh info --config-dir DIR [--json]   the backups and the WAL archive range
#   scripts/backup.sh restore TIME NEWDIR --config-dir DIR [--set LABEL]
#                     restore the newest backup that ended before TIME into NEWDIR (missing
#                     or empty), set up to replay the archived WAL up to TIME, then promote
#
# Any command takes `-- ARGS...` at the end: passed on to pgBackRest as they are (e.g.
# `restore ... -- --target-timeline=current`).
#
# PGDATA is the cluster's data directory as the server reports it (`SHOW data_directory`);
# pgBackRest connects to the server through its Unix socket in D (default
# /var/run/postgresql) on port N (default 5432) as NAME (default: the operating-system user
# that runs it, `postgres`), which must be a superuser or hold the backup functions. REPO is
# created if missing. STANZA (default `pm`) names the cluster in the repository. Retention:
# `--retention-full N` (default 2) keeps the newest N full backups with the differential and
# incremental backups that depend on them, and the WAL from the oldest kept backup on;
# anything older is expired after each backup.
#
# archive_timeout=60 makes the server archive a partly filled WAL segment after a minute
# without a switch, so that a quiet cluster still has at most about a minute of commits
# outside the repository; a restore cannot reach past the newest archived segment.
#
# TIME is a PostgreSQL timestamp with its zone, e.g. `2026-03-01 12:00:00+00`; WAL is replayed
# up to and including the last transaction committed at or before it. The restored cluster
# does not archive (`archive_mode=off` in its postgresql.auto.conf): a copy restored to look
# at must not write into the repository its original still uses. Once it has been chosen to
# replace the original, turn archiving back on (see docs/runbook.md) and take a full backup.
#
# When run as root, pgBackRest runs as the owner of PGDATA (`postgres` when PGDATA is gone), as
# PostgreSQL does: L, DIR/lock, REPO and NEWDIR are handed to that user, and DIR and REPO's
# parent directories must be searchable by it. Otherwise it runs as the caller, who must then
# be that user. DIR holds pgbackrest.conf and lock/; L (default DIR/log) pgBackRest's logs,
# one file per stanza and command. DIR may hold no spaces or quotes, because the
# archive_command names it. stdout carries only what is meant for the caller (the settings,
# the archive_command, `info`); pgBackRest's progress goes to stderr.
#
# Environment: PM_BACKUP_DIR (the default DIR).
set -euo pipefail

say() { echo "backup.sh: $*" >&2; }
die() {
    say "$*"
    exit 1
}

cmd=${1:-}
[ $# -gt 0 ] && shift
dir=${PM_BACKUP_DIR:-}
pgdata=
repo=
pg_port=5432
pg_socket_dir=/var/run/postgresql
pg_user=
stanza=
retention_full=2
compress=zst
log_dir=
json=false
set_label=
positional=()
passthrough=()
while [ $# -gt 0 ]; do
    case $1 in
    --config-dir | --pgdata | --repo | --pg-port | --pg-socket-dir | --pg-user | --stanza | \
        --retention-full | --compress | --log-dir | --set)
        [ $# -ge 2 ] || die "$1 needs a value"
        case $1 in
        --config-dir) dir=$2 ;;
        --pgdata) pgdata=$2 ;;
        --repo) repo=$2 ;;
        --pg-port) pg_port=$2 ;;
        --pg-socket-dir) pg_socket_dir=$2 ;;
        --pg-user) pg_user=$2 ;;
        --stanza) stanza=$2 ;;
        --retention-full) retention_full=$2 ;;
        --compress) compress=$2 ;;
        --log-dir) log_dir=$2 ;;
        --set) set_label=$2 ;;
        esac
        shift 2
        ;;
    --json)
        json=true
        shift
        ;;
    --)
        shift
        passthrough=("$@")
        break
        ;;
    -*) die "unknown option $1" ;;
    *)
        positional+=("$1")
        shift
        ;;
    esac
done

[ -n "$cmd" ] || die "usage: scripts/backup.sh configure|archive-command|stanza-create|check|backup|info|restore ... --config-dir DIR (see the header)"
[ -n "$dir" ] || die "no --config-dir (or PM_BACKUP_DIR): the directory that holds pgbackrest.conf"
# Absolute, so that the archive_command works from the server's working directory.
case $dir in
/*) ;;
*) dir=$PWD/$dir ;;
esac
conf=$dir/pgbackrest.conf

expect_args() {
    [ ${#positional[@]} -eq "$1" ] || die "$cmd: $2"
}

# A path the archive_command names goes through the server's shell unquoted.
plain_path() {
    case $1 in
    *[!A-Za-z0-9_./+-]*) die "$2 ($1) may hold only letters, digits and _ . / + -" ;;
    esac
}

absolute() {
    case $1 in
    /*) echo "$1" ;;
    *) echo "$PWD/$1" ;;
    esac
}

# --- running pgBackRest ---------------------------------------------------------------------

# The stanza `configure` wrote: the one section of the file that is not [global].
configured_stanza() {
    [ -f "$conf" ] || die "no $conf: run scripts/backup.sh configure --config-dir $dir first"
    local found
    found=$(sed -n 's/^\[\([^]]*\)\]$/\1/p' "$conf" | grep -vx global | head -n 1 || true)
    [ -n "$found" ] || die "$conf names no stanza (a [NAME] section)"
    echo "$found"
}

configured_pgdata() {
    sed -n 's/^pg1-path=//p' "$conf" | head -n 1
}

# PostgreSQL's data directory must belong to the user that runs it, and pgBackRest reads it
# and writes restored files into the new one: it runs as that user.
server_user() {
    local data
    data=$(configured_pgdata)
    if [ -n "$data" ] && [ -d "$data" ]; then
        stat -c %U "$data"
    else
        echo postgres
    fi
}

as_server=()
set_server_user() {
    [ "$(id -u)" -eq 0 ] || return 0
    local user=$1
    id "$user" >/dev/null 2>&1 || die "no system user $user to run pgBackRest as (install PostgreSQL: scripts/install-deps.sh)"
    [ "$user" != root ] || die "the data directory belongs to root; PostgreSQL never runs as root, so this is not its data directory"
    as_server=(setpriv "--reuid=$(id -u "$user")" "--regid=$(id -g "$user")" --init-groups)
}

hand_over() {
    [ ${#as_server[@]} -eq 0 ] || chown "$1:" "${@:2}"
}

pgbackrest_as_server() {
    command -v pgbackrest >/dev/null 2>&1 || die "pgbackrest is missing (scripts/install-deps.sh, or apt-get install pgbackrest)"
    # From /, which every user may enter: the caller's working directory may be closed to
    # the server user.
    (cd / && "${as_server[@]}" pgbackrest "--config=$conf" "--stanza=$stanza" "$@")
}

prepare() {
    stanza=$(configured_stanza)
    set_server_user "$(server_user)"
    if [ ${#as_server[@]} -gt 0 ] && ! "${as_server[@]}" test -r "$conf"; then
        die "$(server_user) cannot read $conf: make $dir and its parent directories searchable by that user"
    fi
}

archive_command() {
    echo "pgbackrest --config=$conf --stanza=${stanza:-pm} archive-push %p"
}

# --- commands ---------------------------------------------------------------------------------

configure() {
    expect_args 0 "takes options only"
    [ -n "$pgdata" ] || die "configure: --pgdata (the cluster's data directory) is required"
    [ -n "$repo" ] || die "configure: --repo (where backups and WAL go) is required"
    pgdata=$(absolute "$pgdata")
    repo=$(absolute "$repo")
    plain_path "$dir" "--config-dir"
    case $retention_full in
    '' | *[!0-9]* | 0) die "--retention-full must be a number of full backups, at least 1" ;;
    esac
    case $compress in
    zst | lz4 | gz | none) ;;
    *) die "--compress must be zst, lz4, gz or none" ;;
    esac
    stanza=${stanza:-pm}
    case $stanza in
    *[!A-Za-z0-9_-]* | '') die "--stanza may hold only letters, digits, _ and -" ;;
    esac

    log_dir=$(absolute "${log_dir:-$dir/log}")

    mkdir -p "$log_dir" "$dir/lock" "$repo"
    chmod 750 "$repo"
    local user=postgres
    [ -d "$pgdata" ] && user=$(stat -c %U "$pgdata")
    set_server_user "$user"
    hand_over "$user" "$log_dir" "$dir/lock" "$repo"

    {
        echo "# Written by scripts/backup.sh configure: the PostgreSQL cluster of stanza"
        echo "# [$stanza] backed up into a repository on a local path."
        echo "[global]"
        echo "repo1-path=$repo"
        echo "repo1-retention-full-type=count"
        echo "repo1-retention-full=$retention_full"
        echo "compress-type=$compress"
        # The backup starts with an immediate checkpoint instead of waiting for the next
        # scheduled one (up to checkpoint_timeout away).
        echo "start-fast=y"
        echo "process-max=2"
        # Each WAL segment is pushed by the archive_command itself before PostgreSQL recycles
        # it: simple, and fast enough for our write rates.
        echo "archive-async=n"
        echo "log-path=$log_dir"
        echo "lock-path=$dir/lock"
        # The archive_command's console is the server log: warnings only there.
        echo "log-level-console=warn"
        echo "log-level-file=info"
        echo
        echo "[$stanza]"
        echo "pg1-path=$pgdata"
        echo "pg1-port=$pg_port"
        echo "pg1-socket-path=$pg_socket_dir"
        [ -z "$pg_user" ] || echo "pg1-user=$pg_user"
    } >"$conf.tmp"
    chmod 644 "$conf.tmp"
    mv "$conf.tmp" "$conf"
    if [ ${#as_server[@]} -gt 0 ] && ! "${as_server[@]}" test -r "$conf"; then
        die "$user cannot read $conf: make $dir and its parent directories searchable by that user"
    fi
    say "wrote $conf (stanza $stanza, repository $repo); set these on the server, restart it, then run stanza-create"
    echo "archive_mode=on"
    echo "archive_command=$(archive_command)"
    echo "archive_timeout=60"
}

restore() {
    expect_args 2 "takes TIME and NEWDIR"
    local target=${positional[0]} newdir
    newdir=$(absolute "${positional[1]}")
    if [ -e "$newdir" ]; then
        [ -d "$newdir" ] || die "$newdir exists and is not a directory"
        [ -z "$(ls -A "$newdir")" ] || die "$newdir is not empty: restore into a new directory, never over a cluster"
    fi
    [ "$newdir" != "$(configured_pgdata)" ] || die "$newdir is the backed-up cluster's own data directory: restore into a new one"
    mkdir -p "$newdir"
    # PostgreSQL refuses a data directory others can read.
    chmod 700 "$newdir"
    hand_over "$(server_user)" "$newdir"
    local args=(--log-level-console=info "--pg1-path=$newdir" --type=time "--target=$target"
        --target-action=promote --archive-mode=off)
    [ -z "$set_label" ] || args+=("--set=$set_label")
    say "restoring into $newdir, to recover to $target"
    pgbackrest_as_server "${args[@]}" "${passthrough[@]}" restore >&2
    say "restored: start PostgreSQL on $newdir; it replays the archived WAL up to $target, then promotes"
}

case $cmd in
configure)
    configure
    ;;
archive-command)
    expect_args 0 "takes options only"
    plain_path "$dir" "--config-dir"
    [ -n "$stanza" ] || [ ! -f "$conf" ] || stanza=$(configured_stanza)
    archive_command
    ;;
stanza-create | check)
    expect_args 0 "takes options only"
    prepare
    pgbackrest_as_server --log-level-console=info "${passthrough[@]}" "$cmd" >&2
    ;;
backup)
    expect_args 1 "takes the type: full, diff or incr"
    case ${positional[0]} in
    full | diff | incr) ;;
    *) die "backup: the type is full, diff or incr, not ${positional[0]}" ;;
    esac
    prepare
    pgbackrest_as_server --log-level-console=info "--type=${positional[0]}" "${passthrough[@]}" backup >&2
    ;;
info)
    expect_args 0 "takes options only"
    prepare
    if $json; then
        pgbackrest_as_server --output=json "${passthrough[@]}" info
    else
        pgbackrest_as_server "${passthrough[@]}" info
    fi
    ;;
restore)
    prepare
    restore
    ;;
*)
    die "unknown command $cmd (configure, archive-command, stanza-create, check, backup, info, restore)"
    ;;
esac
