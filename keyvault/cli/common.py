"""What the command groups share: refusals as clear errors (exit status 1), reading a password,
finding an account."""

from __future__ import annotations

import sys

import click

from .. import service


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
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


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
