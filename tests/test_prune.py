"""`keyvault keys prune`: revoke keys nobody has used for N days; --dry-run only lists them."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from keyvault import clock, service
from keyvault.extensions import db
from keyvault.models import ApiKey, SecurityEvent
from tests.conftest import PROJECT_ROOT, T0, TEST_PEPPER, TEST_SECRET_KEY

ORIGIN = service.Origin("127.0.0.1", "pytest")


# name: (created this long before T0, last used this long before T0 or None, pruned at 90 days?)
HISTORY = {
    "never used, old": (timedelta(days=100), None, True),
    "never used, new": (timedelta(days=10), None, False),
    "used lately": (timedelta(days=400), timedelta(days=5), False),
    "used long ago": (timedelta(days=400), timedelta(days=95), True),
    "just inside": (timedelta(days=90) - timedelta(minutes=1), None, False),
    "just outside": (timedelta(days=90) + timedelta(minutes=1), None, True),
}


@pytest.fixture
def keys(user, make_user, make_key, frozen):
    """Keys of two users with the HISTORY above, made and used at those moments."""
    bob = make_user("bob@example.com")
    made = {}
    for n, (name, (age, used, _)) in enumerate(HISTORY.items()):
        frozen.at = T0 - age
        made[name] = make_key(user if n % 2 else bob, label=name)
        if used is not None:
            frozen.at = T0 - used
            assert service.verify_key(made[name][1]).code == "valid"
    frozen.at = T0 - timedelta(days=300)
    gone = make_key(user, label="already revoked")
    service.revoke_key(user, gone[0].public_id, ORIGIN)
    made["already revoked"] = gone
    frozen.at = T0
    return made


def prune(app, *args):
    return app.test_cli_runner().invoke(args=["keys", "prune", *args])


def codes(keys: dict) -> dict:
    return {name: service.verify_key(value).code for name, (_, value) in keys.items()}


def revocation_events() -> list[SecurityEvent]:
    db.session.expire_all()
    return list(db.session.scalars(select(SecurityEvent).where(
        SecurityEvent.event == "key.revoked")))


STALE = sorted(name for name, (_, _, pruned) in HISTORY.items() if pruned)


def test_prune_revokes_exactly_the_unused_keys(app, keys):
    """Keys unused (or never used and created) more than N days ago are revoked; others stay."""
    before = {e.id for e in revocation_events()}
    result = prune(app, "--unused-days", "90")
    assert result.exit_code == 0, result.output
    assert codes(keys) == {
        name: "revoked" if name in STALE or name == "already revoked" else "valid"
        for name in keys}

    for name in STALE:
        assert keys[name][0].public_id in result.output
    for name in set(keys) - set(STALE):
        assert keys[name][0].public_id not in result.output
    assert "Revoked 3 key(s) unused for 90 days." in result.output

    new = [e for e in revocation_events() if e.id not in before]
    assert sorted(e.key.label for e in new) == STALE
    for event in new:
        assert event.user_id == event.key.user_id
        assert event.details["reason"] == "unused"


def test_dry_run_lists_and_changes_nothing(app, keys):
    """--dry-run names the same keys but revokes none and logs nothing."""
    before = len(revocation_events())
    result = prune(app, "--unused-days", "90", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Would revoke 3 key(s) unused for 90 days." in result.output
    for name in STALE:
        assert f"Would revoke {keys[name][0].public_id}" in result.output
    assert codes(keys) == {name: "revoked" if name == "already revoked" else "valid"
                           for name in keys}
    assert len(revocation_events()) == before


def test_prune_again_finds_nothing_more(app, keys):
    """A second run revokes nothing new and says so."""
    prune(app, "--unused-days", "90")
    result = prune(app, "--unused-days", "90")
    assert result.exit_code == 0
    assert "Revoked 0 key(s)" in result.output


@pytest.mark.parametrize("days", ["0", "-3", "soon"])
def test_prune_refuses_a_bad_number_of_days(app, keys, days):
    """--unused-days must be a whole number of at least 1; nothing is revoked otherwise."""
    result = prune(app, "--unused-days", days)
    assert result.exit_code == 2
    assert codes(keys)["never used, old"] == "valid"


def test_prune_needs_unused_days(app, keys):
    """Without --unused-days the command refuses rather than guessing a period."""
    assert prune(app).exit_code == 2
    assert codes(keys)["never used, old"] == "valid"


def test_keyvault_command_prunes(database_url, user, make_key):
    """The installed `keyvault` command line prunes a stale key in the real clock."""
    stale, stale_value = make_key(user, label="stale")
    fresh, fresh_value = make_key(user, label="fresh")
    db.session.execute(update(ApiKey).where(ApiKey.id == stale.id)
                       .values(created_at=clock.now() - timedelta(days=8)))
    db.session.commit()
    env = {**os.environ, "KEYVAULT_DATABASE_URL": database_url,
           "KEYVAULT_SECRET_KEY": TEST_SECRET_KEY, "KEYVAULT_KEY_PEPPER": TEST_PEPPER}
    result = subprocess.run(
        [sys.executable, "-m", "keyvault", "keys", "prune", "--unused-days", "7"],
        env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert stale.public_id in result.stdout and fresh.public_id not in result.stdout
    assert "Revoked 1 key(s) unused for 7 days." in result.stdout
    assert service.verify_key(stale_value).code == "revoked"
    assert service.verify_key(fresh_value).code == "valid"
    assert stale_value not in result.stdout + result.stderr
