"""The expiry choice of the create and edit forms: each choice names the moment it means
(server-rendered, so it needs no script), and the chosen one as a moment."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from .. import clock, service
from ..http.forms import EXPIRY_CHOICES, KEEP_EXPIRY, choices


def expiry_choices(now: datetime, max_days: int | None,
                   current: datetime | None | str = "") -> list:
    """The choices on offer under the lifetime cap (`max_days`: KEYVAULT_MAX_KEY_LIFETIME_DAYS,
    or an organisation's shorter one), each with the date it means: "30 days (until 2031-01-31
    12:00 UTC)". With `current` (the edit form: the key's expiry, None for none) a first choice
    keeps it as it is."""
    offered = [(value, text) for value, text in EXPIRY_CHOICES
               if max_days is None or value == "custom" or (value != "none"
                                                            and int(value) <= max_days)]
    named = []
    for value, text in offered:
        if value.isdigit():
            text = f"{text} (until {clock.format_datetime(now + timedelta(days=int(value)))})"
        named.append((value, text))
    if current != "":
        kept = clock.format_datetime(current) if current else "no expiry"
        named.insert(0, (KEEP_EXPIRY, f"Keep as it is ({kept})"))
    return choices(named)


def expiry_from(choice: str, custom_day, max_days: int | None) -> datetime | None:
    """The moment a choice means (None: no expiry); InvalidInput names the custom date when it
    cannot be used (past `max_days`, the lifetime cap)."""
    if choice == "none":
        return None
    if choice != "custom":
        return clock.now() + timedelta(days=int(choice))
    if custom_day is None:
        raise service.InvalidInput("Pick a date for the custom expiry.", "expires_on")
    # A custom date means "valid through that whole day" (UTC), as GitHub shows it; on the
    # last day a lifetime cap allows, that is "until the cap".
    end = datetime.combine(custom_day, time.max, tzinfo=UTC).replace(microsecond=0)
    if end <= clock.now():
        raise service.InvalidInput("Pick a date from today on.", "expires_on")
    if end.year > 9998:
        raise service.InvalidInput("Pick an earlier date.", "expires_on")
    if max_days is not None:
        cap = clock.now() + timedelta(days=max_days)
        if end.date() == cap.date():
            end = min(end, cap)
        elif end > cap:
            raise service.InvalidInput(
                f"Keys may live at most {max_days} days: pick {cap:%Y-%m-%d} or earlier.",
                "expires_on")
    return end
