"""What the command groups share: refusals as clear errors (exit status 1), reading a password,
finding an account, times and JSON as scripts read them.

Exit status, for every command (README, "Exit status"): 0 done, 1 refused (the reason on
stderr), 2 usage (click's own: an unknown option, a missing argument, a value out of range),
3 the database did not answer (the `keyvault` script's main)."""

from __future__ import annotations

import sys
from datetime import UTC

import click

from .. import jsonio, service

DONE, REFUSED, USAGE, UNREACHABLE = 0, 1, 2, 3

JSON_HELP = "Print JSON (times in ISO 8601 UTC) instead of text, for scripts."


def fail(error: service.ServiceError):
    raise click.ClickException(error.detail)


def read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)


def account(email: str):
    """The account for EMAIL, or a clear refusal (exit status 1)."""
    try:
        return service.find_user(email)
    except service.ServiceError as error:
        fail(error)


def when(value) -> str:
    """A moment in ISO 8601 UTC to the second (`2026-12-01T14:42:22Z`); `-` for none."""
    if value is None:
        return "-"
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def echo_json(value) -> None:
    """`value` (plain data or API models) as one line of JSON on stdout, as the API writes it."""
    click.echo(jsonio.encode(value).decode())


def table(rows: list[tuple[str, ...]]) -> None:
    """Rows as aligned columns, the first a header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width)
                             for cell, width in zip(row, widths, strict=True)).rstrip())


def owner_of(key) -> str:
    """Whose a key is, for a line of output: an email, or a service account and its organisation."""
    if key.user is not None:
        return key.user.email
    return (f"service account {key.service_account.name} "
            f"({key.service_account.organization.name})")
