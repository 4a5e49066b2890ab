"""The per-user key limit holds when two creates race, on SQLite as on PostgreSQL."""

from __future__ import annotations

import threading
import time

from sqlalchemy import func, select

from keyvault import service
from keyvault.extensions import db
from keyvault.models import ApiKey, User


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
    outcomes: list[str] = []

    def create(label: str) -> None:
        with app.app_context():
            racer = db.session.get(User, owner_id)
            try:
                service.create_key(racer, label=label, scopes=["*"],
                                   origin=service.Origin())
                outcomes.append("created")
            except service.KeyLimitReached:
                outcomes.append("limit")
            except Exception as error:  # noqa: BLE001 - the test reports what went wrong
                outcomes.append(repr(error))

    threads = [threading.Thread(target=create, args=(f"racer {n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["created", "limit"]
    db.session.expire_all()
    assert db.session.scalar(select(func.count(ApiKey.id)).where(
        ApiKey.user_id == owner_id)) == limit
