"""The organisations migration keeps every key made before it working unchanged, on SQLite and
PostgreSQL, and the database itself refuses a key with no owner or two."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from flask_migrate import upgrade
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from keyvault import keystore, service, tokens
from keyvault.extensions import db
from tests.conftest import TEST_PEPPER
from tests.test_migrations import empty_database, migration_app  # noqa: F401 - fixtures

BEFORE = "b8e4d2a6c1f3"  # the revision before organisations


def test_keys_made_before_the_migration_verify_as_before(migration_app):  # noqa: F811
    upgrade(revision=BEFORE)
    value = tokens.generate("kv")
    now = datetime.now(UTC).replace(tzinfo=None)
    with db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO users (email, mailbox_key, password_hash, is_active, is_admin, "
            "created_at, session_epoch, notify_expiring, notify_presented) VALUES "
            "('old@example.com', '', 'x', :yes, :no, :now, 0, :yes, :yes)"),
            {"yes": True, "no": False, "now": now})
        user_id = conn.execute(text("SELECT id FROM users")).scalar_one()
        conn.execute(text(
            "INSERT INTO api_keys (public_id, user_id, label, description, mask, digest, scopes, "
            "created_at) VALUES ('oldkey', :user, 'old', '', :mask, :digest, '[\"*\"]', :now)"),
            {"user": user_id, "mask": tokens.mask(value),
             "digest": tokens.digest_of(value, TEST_PEPPER.encode()), "now": now})
    upgrade()
    try:
        [verdict] = service.check_keys([value], [["user:read"]])
        assert (verdict.code, verdict.user_id, verdict.user_email, verdict.owner_type) == (
            "valid", user_id, "old@example.com", "user")
    finally:
        keystore.dispose(migration_app)
    with db.engine.begin() as conn:  # a real service account, so only the CHECK can refuse
        conn.execute(text("INSERT INTO organizations (public_id, name, created_at, is_active) "
                          "VALUES ('org', 'Org', :now, :yes)"), {"now": now, "yes": True})
        conn.execute(text(
            "INSERT INTO service_accounts (public_id, organization_id, name, description, "
            "created_at) SELECT 'sa', id, 'bot', '', :now FROM organizations"), {"now": now})
        account = conn.execute(text("SELECT id FROM service_accounts")).scalar_one()
    for owners in ("NULL, NULL", f":user, {account}"):
        with pytest.raises(IntegrityError), db.engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO api_keys (public_id, user_id, service_account_id, label, "
                "description, mask, digest, scopes, created_at) VALUES "
                f"('bad', {owners}, 'bad', '', 'm', 'd', '[]', :now)"), {"user": user_id,
                                                                        "now": now})
