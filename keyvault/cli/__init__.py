"""The `keyvault` command line: database, users, keys, mail, webhooks and the production server.

`users` and `keys` have modules of their own; `backup` adds `db backup` / `db restore` to
Flask-Migrate's `db` group."""

from __future__ import annotations

import os
import sys
from importlib import metadata

import click
from flask import current_app
from flask.cli import ScriptInfo, with_appcontext
from flask_migrate.cli import db as flask_migrate_db
from sqlalchemy.exc import OperationalError

from .. import server
from ..app import create_app
from ..service import mail, notifications, webhook_delivery
from . import backup
from .common import DONE, REFUSED, UNREACHABLE
from .keys import keys_group
from .orgs import orgs_group, service_accounts_group
from .services import services_group
from .users import users_group


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
    sys.exit(REFUSED if report.failed or report.gave_up else DONE)


@click.group("webhooks", help="The outgoing webhook deliveries.")
def webhooks_group():
    pass


@webhooks_group.command("send-pending")
@with_appcontext
def webhooks_send_pending():
    """Send the webhook deliveries that are due, then exit (safe next to running servers: each
    goes once, unless a sender dies mid-way: then again, at least once)."""
    report = webhook_delivery.send_pending()
    click.echo(f"Sent {report.sent} deliver(ies); {report.failed} failed and will be retried; "
               f"gave up on {report.gave_up}.")
    sys.exit(REFUSED if report.failed or report.gave_up else DONE)


@click.group("notify", help="Mail people about their keys.")
def notify_group():
    pass


@notify_group.command("expiring")
@with_appcontext
def notify_expiring():
    """Queue the 7-day and 1-day expiry reminders that are due, and the webhooks' key.expiring
    and key.expired events (safe from cron, as often as you like: each goes once per key and
    threshold). `mail send-pending`, `webhooks send-pending` or a running server sends them."""
    count = notifications.notify_expiring()
    hooks = webhook_delivery.queue_expiry_events()
    click.echo(f"Queued {count} expiry reminder(s); webhook events for {hooks} key(s).")


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 for every interface.")
@click.option("--port", default=5000, type=click.IntRange(0, 65535), show_default=True,
              help="TCP port to listen on.")
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
    app.cli.add_command(orgs_group)
    app.cli.add_command(service_accounts_group)
    app.cli.add_command(services_group)
    app.cli.add_command(serve)
    app.cli.add_command(mail_group)
    app.cli.add_command(webhooks_group)
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

    Exit status: 0 done, 1 refused (the reason is on stderr), 2 usage (a wrong option or
    argument), 3 the database did not answer. Listings take --json; times are ISO 8601 UTC.
    """
    # Commands that need the app load it through this, as `flask` would (with_appcontext).
    ctx.obj = ScriptInfo(create_app=create_app, set_debug_flag=False, load_dotenv_defaults=False)


backup.register()  # keyvault db backup / restore, in Flask-Migrate's db group
cli.add_command(flask_migrate_db, "db")
cli.add_command(users_group)
cli.add_command(keys_group)
cli.add_command(orgs_group)
cli.add_command(service_accounts_group)
cli.add_command(services_group)
cli.add_command(serve)
cli.add_command(mail_group)
cli.add_command(webhooks_group)
cli.add_command(notify_group)


def main() -> None:
    """The `keyvault` console script: KeyVault's own commands only (no Flask `run`/`shell`)."""
    try:
        cli(prog_name="keyvault")
    except OperationalError as error:  # down, refusing, locked past the timeout: one line
        reason = str(error.orig or error).strip().splitlines()[0]
        click.echo(f"Error: the database did not answer ({reason}).", err=True)
        sys.exit(UNREACHABLE)

