"""The per-user key limit holds when two creates race, on SQLite as on PostgreSQL."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from keyvault import service
from keyvault.extensions import db
from keyvault.models import ApiKey, User
from tests.races import race_two


def test_two_concurrent_creates_cannot_both_pass_the_limit(app, make_user, make_key,
                                                           monkeypatch):
    """With one slot left, two creates at once: one key is made, the other is refused with the
    limit's own error (409 in the API) — never an eleventh key, never 'database is locked'.

    Each create pauses between counting the live keys and inserting, so without a lock both
    would count nine."""
    owner = make_user("racer@example.com")
    limit = app.config["KEYVAULT_MAX_KEYS_PER_USER"]
    for number in range(limit - 1):
        make_key(owner, label=f"key {number}")
    counted = service.live_key_count

    def slow_count(user):
        count = counted(user)
        time.sleep(0.3)  # widen the window between the check and the insert
        return count

    monkeypatch.setattr(service, "live_key_count", slow_count)
    owner_id = owner.id  # read here: the threads must not touch this thread's session
    def create(label: str) -> None:
        racer = db.session.get(User, owner_id)
        service.create_key(racer, label=label, scopes=["*"], origin=service.Origin())

    assert race_two(app, create) == ["created", "limit"]
    db.session.expire_all()
    assert db.session.scalar(select(func.count(ApiKey.id)).where(
        ApiKey.user_id == owner_id)) == limit
