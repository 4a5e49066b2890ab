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
from ..limit_models import QUOTA_MAX, RATE_MAX, WINDOW_MAX
from ..service.limit_terms import RateTerms, UsageTerms

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


# ---------------------------------------------------------------- a key's or a pool's limits


def _rate(ctx, param, value: str | None) -> RateTerms | None:
    """--rate-limit N/SECONDS."""
    if value is None:
        return None
    count, slash, seconds = value.partition("/")
    if not (slash and count.isdigit() and seconds.isdigit()):
        raise click.BadParameter(f"{value!r}: write it as N/SECONDS, e.g. 100/60 for 100 "
                                 "requests a minute.")
    if not (1 <= int(count) <= RATE_MAX and 1 <= int(seconds) <= WINDOW_MAX):
        raise click.BadParameter(f"{value!r}: N is 1 to {RATE_MAX:,} and SECONDS 1 to "
                                 f"{WINDOW_MAX:,}.")
    return RateTerms(int(count), int(seconds))


def _refill(ctx, param, value: str | None) -> tuple[str, int | None] | None:
    """--refill daily | monthly | monthly:DAY."""
    if value is None:
        return None
    interval, colon, day = value.partition(":")
    if value == "daily" or (interval == "monthly" and not colon):
        return interval, None if interval == "daily" else 1
    if interval == "monthly" and day.isdigit() and 1 <= int(day) <= 28:
        return interval, int(day)
    raise click.BadParameter(f"{value!r}: write daily, monthly (on the 1st) or monthly:DAY "
                             "with DAY from 1 to 28.")


def limit_options(command):
    """--rate-limit, --quota and --refill: the limits of a key or a service account's pool."""
    for option in reversed((
        click.option("--rate-limit", "rate", callback=_rate, metavar="N/SECONDS",
                     help="At most N requests in each window of SECONDS (1 to 86400), e.g. "
                     "100/60; past it the key is refused as rate_limited."),
        click.option("--quota", type=click.IntRange(0, QUOTA_MAX), default=None, metavar="N",
                     help="N uses in all (each verify, forward_auth or API call takes its cost); "
                     "then refused as usage_exceeded, until a refill if --refill is given."),
        click.option("--refill", callback=_refill, metavar="daily|monthly[:DAY]",
                     help="With --quota: set the uses back to N at midnight UTC every day, or "
                     "each month on DAY (1 to 28; the 1st when omitted)."),
    )):
        command = option(command)
    return command


def limit_terms(rate: RateTerms | None, quota: int | None,
                refill: tuple[str, int | None] | None) -> dict:
    """The options as the service's terms (service.limit_terms): what was not given, None."""
    if refill is not None and quota is None:
        raise click.UsageError("--refill needs --quota: how many uses each refill gives.")
    usage = None
    if quota is not None:
        usage = (UsageTerms(quota) if refill is None
                 else UsageTerms(quota, quota, refill[0], refill[1]))
    return {"rate_limit": rate, "usage_limit": usage}
