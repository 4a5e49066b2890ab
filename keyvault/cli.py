"""The `keyvault` command line: database, users, keys and the production server."""

from __future__ import annotations

import os
import sys
from importlib import metadata

import click
from flask import current_app
from flask.cli import ScriptInfo, with_appcontext
from flask_migrate.cli import db as flask_migrate_db

from . import backup, clock, server, service, tokens
from .app import create_app
from .service import Origin, mail, notifications


def _fail(error: service.ServiceError):
    raise click.ClickException(error.detail)


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)


def _user(email: str):
    """The account for EMAIL, or a clear refusal (exit status 1)."""
    try:
        return service.find_user(email)
    except service.ServiceError as error:
        _fail(error)


@click.group("users", help="Manage user accounts.")
def users_group():
    pass


@users_group.command("create")
@click.argument("email")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
def users_create(email: str, admin: bool, password_stdin: bool):
    """Create a user account."""
    password = _read_password(password_stdin)
    try:
        user = service.sign_up(email, password, Origin.system(), is_admin=admin)
    except service.EmailTaken as error:
        _refuse_taken(email, error)
    except service.ServiceError as error:
        _fail(error)
    click.echo(f"Created user {user.email} (id {user.id}{', admin' if admin else ''}).", err=True)


def _shown(email: str) -> str:
    """An address for an operator: look-alikes differ only in their escaped form."""
    if email.isascii():
        return email
    return f"{email} ({email.encode('ascii', 'backslashreplace').decode()})"


def _refuse_taken(email: str, error: service.EmailTaken):
    """The address as typed, up to letter case: the service's words. Anything else (a
    look-alike, or a form only normalisation makes equal): which account it is the mailbox of."""
    email = email.strip()
    if error.existing is None or error.existing == email.lower():
        _fail(error)
    raise click.ClickException(
        f"{error.detail} {_shown(email)} is the same mailbox as the account "
        f"{_shown(error.existing)} (id {error.existing_id}): one mailbox has one account.")


@users_group.command("doubles")
@with_appcontext
def users_doubles():
    """List accounts whose addresses look the same (one mailbox); nothing is merged.

    Accounts made before KeyVault compared mailboxes may share one; decide which to keep
    (deactivate or delete the others) after asking their owners."""
    groups = service.mailbox_doubles()
    if not groups:
        click.echo("No accounts share a mailbox.")
        return
    for group in groups:
        click.echo(f"{len(group)} accounts share one mailbox:")
        for user in group:
            last = _when(user.last_login_at) if user.last_login_at else "never"
            click.echo(f"  id {user.id}  {_shown(user.email)}  created {_when(user.created_at)}, "
                       f"last login {last}{'' if user.is_active else ', deactivated'}")


@users_group.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True,
              help="Read the new password from standard input (else it is asked for twice).")
@with_appcontext
def users_set_password(email: str, password_stdin: bool):
    """Set a user's password; ends their sessions.

    For someone who forgot theirs. The user's browser sessions end everywhere; their API keys
    keep working."""
    user = _user(email)
    password = _read_password(password_stdin)
    try:
        service.set_password(user, password, Origin.system())
    except service.ServiceError as error:
        _fail(error)
    click.echo(f"Set a new password for {user.email}; their browser sessions have ended.")


@users_group.command("set-admin")
@click.argument("email")
@click.option("--revoke", "--no-admin", "revoke", is_flag=True,
              help="Take administration away instead.")
@with_appcontext
def users_set_admin(email: str, revoke: bool):
    """Make a user an administrator (--revoke: undo)."""
    user = _user(email)
    changed = service.set_admin(user, not revoke, Origin.system())
    role = "an administrator" if not revoke else "not an administrator"
    if changed:
        click.echo(f"{user.email} is now {role}.")
    else:
        click.echo(f"{user.email} was already {role}; nothing changed.")


def _set_active(email: str, active: bool) -> None:
    user = _user(email)
    changed = user.is_active != active
    service.set_user_active(None, user.id, active, Origin.system())
    state = "active" if active else "deactivated"
    if not changed:
        click.echo(f"{user.email} was already {state}; nothing changed.")
    elif active:
        click.echo(f"Activated {user.email}: they can log in again and their keys work again.")
    else:
        click.echo(f"Deactivated {user.email}: they cannot log in, their sessions have ended, "
                   "and their keys verify as user_inactive until they are activated again.")


@users_group.command("deactivate")
@click.argument("email")
@with_appcontext
def users_deactivate(email: str):
    """Deactivate a user: no login, no working keys.

    Their browser sessions end, they cannot log in, and every key of theirs verifies as
    `user_inactive`; nothing is deleted, and `activate` undoes it."""
    _set_active(email, False)


@users_group.command("activate")
@click.argument("email")
@with_appcontext
def users_activate(email: str):
    """Let a deactivated user log in again."""
    _set_active(email, True)


@users_group.command("reset-2fa")
@click.argument("email")
@with_appcontext
def users_reset_2fa(email: str):
    """Turn off a user's two-factor authentication (lost phone and recovery codes).

    Their password alone logs them in again; the reset is in their security log."""
    user = _user(email)
    if service.second_factor.disable(user, Origin.system(), reset=True):
        click.echo(f"Reset the two-factor authentication of {user.email}: their password alone "
                   "logs them in; they can set it up again on their account page.")
    else:
        click.echo(f"{user.email} has no two-factor authentication; nothing changed.")


@click.group("keys", help="Manage API keys.")
def keys_group():
    pass


@keys_group.command("create")
@click.argument("email")
@click.option("--label", required=True, help="What the key is for (1-40 characters).")
@click.option("--scope", "scopes", multiple=True, metavar="SCOPE",
              help="A scope to grant; repeat for more. Required: '*' grants full access, and "
              "only when given explicitly.")
@click.option("--expires-in-days", type=click.IntRange(1, 36500), default=None,
              help="Expire the key after this many days (default: never).")
@click.option("--description", default=None)
@with_appcontext
def keys_create(email, label, scopes, expires_in_days, description):
    """Create a key and print its value, alone on stdout, this one time."""
    from datetime import timedelta

    if not scopes:
        raise click.UsageError(
            "Choose what the key may do with --scope (repeat it for more), or --scope '*' for "
            f"full access. The scopes are: {', '.join(service.valid_scopes())}.")
    try:
        user = service.find_user(email)
        expires_at = clock.now() + timedelta(days=expires_in_days) if expires_in_days else None
        key, value = service.create_key(user, label=label, description=description,
                                        scopes=list(scopes), expires_at=expires_at,
                                        origin=Origin.system())
    except service.ServiceError as error:
        _fail(error)
    click.echo(f"Created key {key.public_id} ({key.mask}). It will not be shown again.", err=True)
    click.echo(value)


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


@keys_group.command("list")
@click.argument("email")
@with_appcontext
def keys_list(email):
    """List a user's keys (never their values)."""
    try:
        user = service.find_user(email)
    except service.ServiceError as error:
        _fail(error)
    rows = [("ID", "LABEL", "KEY", "STATUS", "SCOPES", "CREATED", "LAST USED", "EXPIRES")]
    for key in service.list_keys(user):
        rows.append((key.public_id, key.label, key.mask, key.status(), ",".join(key.scopes),
                     _when(key.created_at), _when(key.last_used_at), _when(key.expires_at)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@keys_group.command("revoke")
@click.argument("key_id")
@with_appcontext
def keys_revoke(key_id):
    """Revoke a key by its id; it stops working at once."""
    try:
        key = service.revoke_key_by_id(key_id, Origin.system(), refuse_revoked=True)
    except service.ServiceError as error:
        _fail(error)
    click.echo(f"Revoked {key.public_id} ({key.label}, {key.mask}) of {key.user.email}.")


_SCAN_STATES = {"valid": "LIVE", "user_inactive": "live once its owner is activated",
                "revoked": "revoked", "expired": "expired", "not_found": "not issued here"}


@keys_group.command("scan")
@click.argument("files", nargs=-1, required=True, type=click.File("r", errors="replace"))
@with_appcontext
def keys_scan(files):
    """Find this instance's keys in FILES (- for standard input), as a secret scanner would:
    where each is, masked, and whether it still works. Exit status 1 when one is live."""
    prefix = current_app.config["KEYVAULT_KEY_PREFIX"]
    pattern, found = tokens.finder(prefix), []
    for handle in files:
        name = getattr(handle, "name", "<stdin>")  # a test runner's stdin has no name
        for number, line in enumerate(handle, 1):
            found += [(f"{name}:{number}", match.group())
                      for match in pattern.finditer(line)
                      if tokens.is_well_formed(match.group(), prefix)]
    verdicts = service.check_keys([v for _, v in found], [[] for _ in found]) if found else []
    live = 0
    for (where, value), verdict in zip(found, verdicts, strict=True):
        live += verdict.code in ("valid", "user_inactive")
        key = f" (key {verdict.public_id}, {verdict.label})" if verdict.public_id else ""
        click.echo(f"{where}: {tokens.mask(value)} {_SCAN_STATES[verdict.code]}{key}")
    click.echo(f"{len(found)} key(s) found, {live} live.", err=True)
    sys.exit(1 if live else 0)


@keys_group.command("prune")
@click.option("--unused-days", type=click.IntRange(1, 36500), required=True,
              help="Revoke keys not used for this many days.")
@click.option("--dry-run", is_flag=True, help="List what would be revoked; change nothing.")
@with_appcontext
def keys_prune(unused_days, dry_run):
    """Revoke keys nobody has used for a while (GitHub does this after a year)."""
    stale = service.prune_unused_keys(unused_days, dry_run=dry_run, origin=Origin.system())
    verb = "Would revoke" if dry_run else "Revoked"
    for key in stale:
        click.echo(f"{verb} {key.public_id} ({key.label}, {key.mask}) of {key.user.email}; "
                   f"last used {_when(key.last_used_at)}")
    click.echo(f"{verb} {len(stale)} key(s) unused for {unused_days} days.")


@click.group("mail", help="The outgoing mail.")
def mail_group():
    pass


@mail_group.command("send-pending")
@with_appcontext
def mail_send_pending():
    """Send the mail that is due, then exit (safe next to running servers: each mail goes once)."""
    mail.warn_about_setup(current_app)
    report = mail.send_pending()
    click.echo(f"Sent {report.sent} mail(s); {report.failed} failed and will be retried; "
               f"gave up on {report.gave_up}.")
    if report.failed or report.gave_up:
        sys.exit(1)


@click.group("notify", help="Mail people about their keys.")
def notify_group():
    pass


@notify_group.command("expiring")
@with_appcontext
def notify_expiring():
    """Queue the 7-day and 1-day expiry reminders that are due (safe from cron, as often as
    you like: each goes once per key and threshold). `mail send-pending` or a running server
    sends them."""
    count = notifications.notify_expiring()
    click.echo(f"Queued {count} expiry reminder(s).")


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, type=int, show_default=True)
@click.option("--workers", default=None, type=click.IntRange(min=1),
              help="Worker processes (default: one per CPU core).")
@click.option("--threads", default=None, type=click.IntRange(min=1),
              help="Threads per worker that run requests (default: 8).")
def serve(host, port, workers, threads):
    """Serve KeyVault in production: granian, with bodies read before a thread is used."""
    server.run(host=host, port=port, workers=workers or os.cpu_count() or 1,
               threads=threads or server.DEFAULT_THREADS)


def register(app) -> None:
    app.cli.add_command(users_group)
    app.cli.add_command(keys_group)
    app.cli.add_command(serve)
    app.cli.add_command(mail_group)
    app.cli.add_command(notify_group)
    backup.register()  # keyvault db backup / restore, in Flask-Migrate's db group


def _version() -> str:
    try:
        return metadata.version("keyvault")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


@click.group("keyvault", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", "-V", package_name="keyvault",
                      prog_name="keyvault", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context):
    """KeyVault: personal API keys.

    Configured by KEYVAULT_* environment variables (KEYVAULT_DATABASE_URL, ...); with none
    set, it uses the SQLite database under instance/.
    """
    # Commands that need the app load it through this, as `flask` would (with_appcontext).
    ctx.obj = ScriptInfo(create_app=create_app, set_debug_flag=False, load_dotenv_defaults=False)


backup.register()  # keyvault db backup / restore, in Flask-Migrate's db group
cli.add_command(flask_migrate_db, "db")
cli.add_command(users_group)
cli.add_command(keys_group)
cli.add_command(serve)
cli.add_command(mail_group)
cli.add_command(notify_group)


def main() -> None:
    """The `keyvault` console script: KeyVault's own commands only (no Flask `run`/`shell`)."""
    cli(prog_name="keyvault")

