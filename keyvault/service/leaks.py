"""Keys found in public: a signed report (GitHub's secret scanning) names tokens, and every one
of ours that still works, or would again, is revoked with a `key.leaked` event in its owner's log.

A token is recognised through the one pipeline (verify.check_keys: parse, checksum, digest
lookup), never a second lookup. A rolled key's old value inside its grace period counts as the
key itself: the whole key is revoked, because the old value could roll the key or mint others
while it worked, so the current value cannot be trusted either. A report is one transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import select

from .. import clock
from ..extensions import db
from ..models import ApiKey
from .events import Origin
from .keys import revoke
from .verify import Verdict, check_keys

LEAKED = "key.leaked"
# Verdicts of a value that works, or would again when its owner is activated.
_USABLE = ("valid", "user_inactive")


class FoundToken(NamedTuple):
    """One match a reporter found: the token, the reporter's name for its kind, where it was
    found (a URL, maybe empty) and in what (`content`, `commit`, `issue_comment`, …)."""

    token: str
    type: str
    url: str
    source: str


def report_found_tokens(found: list[FoundToken], origin: Origin) -> list[bool]:
    """For each token in order, whether it is a KeyVault key of this instance (a true positive,
    revoked or not); the usable ones are revoked, each key once, in one transaction."""
    verdicts = check_keys([item.token for item in found], [[] for _ in found])
    now = clock.now()
    revoked: set[int] = set()
    for item, verdict in zip(found, verdicts, strict=True):
        if verdict.key_id in revoked or not _usable(verdict, now):
            continue
        key = db.session.scalar(select(ApiKey).where(ApiKey.id == verdict.key_id)
                                .with_for_update())
        if key is not None and key.revoked_at is None:
            revoke(key, now, origin, event=LEAKED, url=item.url, source=item.source,
                   type=item.type)
            revoked.add(key.id)
    db.session.commit()
    return [verdict.key_id is not None for verdict in verdicts]


def _usable(verdict: Verdict, now: datetime) -> bool:
    ends = verdict.ends_at
    return verdict.code in _USABLE and (ends is None or ends > now)
