"""`keyvault keys ...`: create, list, revoke, scan for and prune API keys."""

from __future__ import annotations

import sys
from datetime import timedelta

import click
from flask import current_app
from flask.cli import with_appcontext

from .. import clock, service, tokens
from ..service import Origin
from .common import fail, owner_of, when


@click.group("keys", help="Manage API keys.")
def keys_group():
    pass


@keys_group.command("create")
@click.argument("email", required=False)
@click.option("--service-account", "service_account_id", default=None, metavar="SA_ID",
              help="Create the key for this service account instead of a person (EMAIL).")
@click.option("--label", required=True, help="What the key is for (1-40 characters).")
@click.option("--scope", "scopes", multiple=True, metavar="SCOPE",
              help="A scope to grant; repeat for more. Required: '*' grants full access, and "
              "only when given explicitly.")
@click.option("--expires-in-days", type=click.IntRange(1, 36500), default=None,
              help="Expire the key after this many days (default: never).")
@click.option("--description", default=None)
@with_appcontext
def keys_create(email, service_account_id, label, scopes, expires_in_days, description):
    """Create a key for a person (EMAIL) or a service account (--service-account) and print its
    value, alone on stdout, this one time."""
    if (email is None) == (service_account_id is None):
        raise click.UsageError("Name the key's owner: a person's EMAIL, or --service-account "
                               "SA_ID (not both).")

    if not scopes:
        raise click.UsageError(
            "Choose what the key may do with --scope (repeat it for more), or --scope '*' for "
            f"full access. The scopes are: {', '.join(service.valid_scopes())}.")
    try:
        owner = (service.find_user(email) if email is not None
                 else service.service_accounts.find_service_account(service_account_id))
        expires_at = clock.now() + timedelta(days=expires_in_days) if expires_in_days else None
        key, value = service.create_key(owner, label=label, description=description,
                                        scopes=list(scopes), expires_at=expires_at,
                                        origin=Origin.system())
    except service.ServiceError as error:
        fail(error)
    click.echo(f"Created key {key.public_id} ({key.mask}). It will not be shown again.", err=True)
    click.echo(value)


@keys_group.command("list")
@click.argument("email")
@with_appcontext
def keys_list(email):
    """List a user's keys (never their values)."""
    try:
        user = service.find_user(email)
    except service.ServiceError as error:
        fail(error)
    rows = [("ID", "LABEL", "KEY", "STATUS", "SCOPES", "CREATED", "LAST USED", "EXPIRES")]
    for key in service.list_keys(user):
        rows.append((key.public_id, key.label, key.mask, key.status(), ",".join(key.scopes),
                     when(key.created_at), when(key.last_used_at), when(key.expires_at)))
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
        fail(error)
    click.echo(f"Revoked {key.public_id} ({key.label}, {key.mask}) of {owner_of(key)}.")


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
    """Revoke keys nobody has used for a while (GitHub does this after a year), and each
    organisation's service-account keys unused for its policy's days (mailing its owners 7
    days before)."""
    stale = service.prune_unused_keys(unused_days, dry_run=dry_run, origin=Origin.system())
    verb = "Would revoke" if dry_run else "Revoked"
    for key in stale:
        click.echo(f"{verb} {key.public_id} ({key.label}, {key.mask}) of {owner_of(key)}; "
                   f"last used {when(key.last_used_at)}")
    by_policy = service.prune_by_policy(dry_run=dry_run, origin=Origin.system())
    for key, days in by_policy:
        click.echo(f"{verb} {key.public_id} ({key.label}, {key.mask}) of {owner_of(key)}; "
                   f"last used {when(key.last_used_at)}; its organisation revokes keys unused "
                   f"for {days} days")
    click.echo(f"{verb} {len(stale)} key(s) unused for {unused_days} days.")
    if by_policy:
        click.echo(f"{verb} {len(by_policy)} service-account key(s) by their organisation's "
                   "policy.")
