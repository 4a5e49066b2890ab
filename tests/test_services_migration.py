"""The services migration keeps every key made before it as it was (a person's and a service
account's: no restriction, the same verdict), on SQLite and PostgreSQL, and the database refuses
a key with two owners now that a service can own one."""

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

BEFORE = "c3d5e7f9a1b4"  # the revision before services


def test_keys_made_before_services_verify_as_before(migration_app):  # noqa: F811
    upgrade(revision=BEFORE)
    now = datetime.now(UTC).replace(tzinfo=None)
    values = {"person": tokens.generate("kv"), "account": tokens.generate("kv")}
    with db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO users (email, mailbox_key, password_hash, is_active, is_admin, "
            "created_at, session_epoch, notify_expiring, notify_presented) VALUES "
            "('old@example.com', '', 'x', :yes, :no, :now, 0, :yes, :yes)"),
            {"yes": True, "no": False, "now": now})
        conn.execute(text("INSERT INTO organizations (public_id, name, created_at, is_active) "
                          "VALUES ('org', 'Org', :now, :yes)"), {"now": now, "yes": True})
        conn.execute(text(
            "INSERT INTO service_accounts (public_id, organization_id, name, description, "
            "created_at) SELECT 'sa', id, 'bot', '', :now FROM organizations"), {"now": now})
        owners = {"person": ("user_id", conn.execute(text("SELECT id FROM users")).scalar_one()),
                  "account": ("service_account_id",
                              conn.execute(text("SELECT id FROM service_accounts")).scalar_one())}
        for name, (column, owner) in owners.items():
            conn.execute(text(
                f"INSERT INTO api_keys (public_id, {column}, label, description, mask, digest, "
                "scopes, created_at) VALUES (:id, :owner, 'old', '', 'm', :digest, "
                "'[\"user:read\"]', :now)"),
                {"id": name, "owner": owner, "now": now,
                 "digest": tokens.digest_of(values[name], TEST_PEPPER.encode())})
        before = conn.execute(text("SELECT * FROM api_keys ORDER BY id")).mappings().all()
    upgrade()
    with db.engine.begin() as conn:
        after = conn.execute(text("SELECT * FROM api_keys ORDER BY id")).mappings().all()
    assert [{k: v for k, v in row.items() if k not in ("service_id", "restricted_to")}
            for row in after] == [dict(row) for row in before]
    assert {(row["service_id"], row["restricted_to"]) for row in after} == {(None, None)}
    try:
        verdicts = service.check_keys(list(values.values()), [["user:read"]] * 2,
                                      presented="gateway")
        assert [(v.code, v.restricted_to, v.owner_type) for v in verdicts] == [
            ("valid", None, "user"), ("valid", None, "service_account")]
    finally:
        keystore.dispose(migration_app)
    with db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO services (public_id, organization_id, name, audience, description, "
            "scopes, created_at) SELECT 'svc', id, 'Billing', 'billing', '', '[]', :now "
            "FROM organizations"), {"now": now})
        service_id = conn.execute(text("SELECT id FROM services")).scalar_one()
    user_id = owners["person"][1]
    with pytest.raises(IntegrityError), db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO api_keys (public_id, user_id, service_id, label, description, mask, "
            "digest, scopes, created_at) VALUES ('bad', :user, :service, 'bad', '', 'm', 'd', "
            "'[]', :now)"), {"user": user_id, "service": service_id, "now": now})
