"""`keyvault db backup PATH` and `keyvault db restore PATH`, for the embedded SQLite database.

Backup uses SQLite's online backup API (sqlite3.Connection.backup): a consistent copy of the
database as of one moment, taken while `keyvault serve` keeps reading and writing (WAL mode:
the copy holds a read transaction, writers go on). The copy is written under a temporary name,
checked (`PRAGMA quick_check`), made owner-only (it holds password hashes and key digests) and
then renamed into place, so PATH is either a complete backup or absent.

Restore puts a backup back while the server is stopped: it refuses when any process still has
the database open (SQLite's own lock in the `-shm` file says so), checks that the file is a
KeyVault database, copies it next to the database, drops the old write-ahead log (it belongs to
the database being replaced, and SQLite would replay it onto the restored one) and renames the
copy into place.

PostgreSQL: both commands refuse and point to pg_dump / pg_restore, which do this properly.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import sqlite3
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy.engine import make_url

# SQLite's WAL-index "dead man switch": every connection to a WAL database holds a shared lock
# on this byte of the -shm file while it is open (src/wal.c: WALINDEX_LOCK_OFFSET + SHM_NLOCK).
SHM_DMS_BYTE = 128


class BackupError(click.ClickException):
    """A backup or restore that cannot be done; the message says why and what to do."""


def database_path(url: str) -> Path:
    """The SQLite file behind `url`; BackupError for PostgreSQL (pg_dump) or an in-memory DB."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        safe = parsed._replace(drivername=parsed.get_backend_name(), password=None).render_as_string()
        raise BackupError(
            "keyvault db backup/restore work on the embedded SQLite database only. This "
            f"instance uses {parsed.get_backend_name()}: back it up with pg_dump, e.g.\n"
            f"  pg_dump --format=custom --file=keyvault.dump '{safe}'   (password: PGPASSWORD or "
            "~/.pgpass)\n"
            "and restore with pg_restore --clean --if-exists --dbname=... keyvault.dump "
            "(see README, Backups).")
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError("The database is in memory: there is nothing to back up.")
    return Path(parsed.database)


def _private_draft(target: Path) -> Path:
    """A new, empty, owner-only file next to `target`, to write into and rename."""
    draft = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    os.close(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return draft


def _check_keyvault_database(connection: sqlite3.Connection, what: str) -> str:
    """The schema revision of a KeyVault database; BackupError if it is damaged or not one."""
    try:
        verdict = connection.execute("PRAGMA quick_check").fetchone()[0]
        tables = {row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as error:
        raise BackupError(f"{what} is not a SQLite database ({error}).") from None
    if verdict != "ok":
        raise BackupError(f"{what} is damaged: SQLite's quick_check says {verdict!r}.")
    if not {"alembic_version", "users", "api_keys"} <= tables:
        raise BackupError(f"{what} is not a KeyVault database (no users, api_keys and "
                          "alembic_version tables).")
    row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else "?"


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup(url: str, destination: Path, *, overwrite: bool = False) -> str:
    """Copy the live database to `destination` (see the module's doc); returns a summary."""
    source_path = database_path(url)
    if not source_path.is_file():
        raise BackupError(f"There is no database at {source_path} to back up.")
    destination = destination.expanduser().absolute()
    if destination.resolve() == source_path.resolve():
        raise BackupError("The backup must not be the database itself.")
    if destination.exists() and not overwrite:
        raise BackupError(f"{destination} already exists; pick a new name or pass --force.")
    if not destination.parent.is_dir():
        raise BackupError(f"The folder {destination.parent} does not exist.")
    draft = _private_draft(destination)
    try:
        # No "mode=ro": a reader of a WAL database needs its -shm; the file exists (checked).
        source = sqlite3.connect(source_path, timeout=current_app.config[
            "KEYVAULT_DATABASE_TIMEOUT"])
        target = sqlite3.connect(draft)
        try:
            source.backup(target)
            # One self-contained file: a rollback journal, not a write-ahead log beside it.
            target.execute("PRAGMA journal_mode=DELETE")
            revision = _check_keyvault_database(target, "The backup")
            keys = target.execute("SELECT count(*) FROM api_keys").fetchone()[0]
            users = target.execute("SELECT count(*) FROM users").fetchone()[0]
        finally:
            target.close()
            source.close()
        _sync(draft)
        os.replace(draft, destination)
    except BaseException:
        with contextlib.suppress(OSError):
            draft.unlink()
        raise
    return (f"Backed up {source_path} to {destination} ({destination.stat().st_size} bytes, "
            f"{users} users, {keys} keys, schema {revision}).")


def _in_use(database: Path) -> bool:
    """Does a process have this (WAL) database open? SQLite holds a shared lock on the -shm
    file's DMS byte for every open connection; we may take it exclusively only when none is."""
    shm = database.with_name(database.name + "-shm")
    try:
        fd = os.open(shm, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, SHM_DMS_BYTE)
    except OSError:
        return True
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, SHM_DMS_BYTE)
        return False
    finally:
        os.close(fd)


def restore(url: str, source: Path) -> str:
    """Put the backup `source` in place of the database (see the module's doc)."""
    database = database_path(url)
    source = source.expanduser().absolute()
    if not source.is_file():
        raise BackupError(f"There is no backup at {source}.")
    if _in_use(database):
        raise BackupError(f"{database} is in use: stop keyvault serve (and anything else that "
                          "has the database open), then restore.")
    if not database.parent.is_dir():
        raise BackupError(f"The folder {database.parent} does not exist.")
    draft = _private_draft(database)
    try:
        backup_db = sqlite3.connect(f"{source.as_uri()}?mode=ro", uri=True)
        target = sqlite3.connect(draft)
        try:
            revision = _check_keyvault_database(backup_db, f"{source}")
            backup_db.backup(target)
            keys = target.execute("SELECT count(*) FROM api_keys").fetchone()[0]
        finally:
            target.close()
            backup_db.close()
        _sync(draft)
        if _in_use(database):  # checked again: a server started meanwhile
            raise BackupError(f"{database} is in use: stop keyvault serve, then restore.")
        for suffix in ("-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                database.with_name(database.name + suffix).unlink()
        os.replace(draft, database)
    except BaseException:
        with contextlib.suppress(OSError):
            draft.unlink()
        raise
    return (f"Restored {database} from {source} ({keys} keys, schema {revision}). If this "
            "KeyVault is newer than the backup, run `keyvault db upgrade` before starting it.")


# ---------------------------------------------------------------- the commands


@click.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace PATH if it exists.")
@with_appcontext
def backup_command(path: Path, force: bool):
    """Back up the SQLite database to PATH, safely while the server runs (PostgreSQL: pg_dump)."""
    click.echo(backup(current_app.config["SQLALCHEMY_DATABASE_URI"], path, overwrite=force))


@click.command("restore")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@with_appcontext
def restore_command(path: Path):
    """Replace the SQLite database with the backup at PATH. Stop the server first."""
    click.echo(restore(current_app.config["SQLALCHEMY_DATABASE_URI"], path))


# What an operator runs; Alembic's other commands (migrate, downgrade, stamp, ...) are for
# KeyVault's developers: hidden from `keyvault db --help`, still callable (CONTRIBUTING.md).
OPERATOR_COMMANDS = ("upgrade", "current", "backup", "restore")


def register() -> None:
    """Add backup and restore to Flask-Migrate's `db` group (`keyvault db backup PATH`) and show
    operators only their commands."""
    from flask_migrate.cli import db

    db.add_command(backup_command)
    db.add_command(restore_command)
    db.help = ("The database: upgrade its schema, show its revision, back it up, restore it. "
               "Alembic's other commands still work but are not listed (see CONTRIBUTING.md).")
    db.short_help = "The database: upgrade, current, backup, restore."
    for name, command in db.commands.items():
        command.hidden = name not in OPERATOR_COMMANDS
