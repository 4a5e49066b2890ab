"""Migrations own the schema: an empty database reaches head, and the models match the result."""

from __future__ import annotations

import os
import subprocess

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect, text

from keyvault import create_app
from keyvault.extensions import db
from tests.conftest import (
    PROJECT_ROOT,
    TEST_PEPPER,
    TEST_SECRET_KEY,
    base_overrides,
    fresh_postgresql_database,
)

HEAD = ScriptDirectory(str(PROJECT_ROOT / "migrations")).get_current_head()
TABLES = {"users", "api_keys", "security_events"}


@pytest.fixture
def empty_database(tmp_path):
    """A database with nothing in it: a new SQLite file, or a new PostgreSQL database."""
    server_url = os.environ.get("KEYVAULT_TEST_DATABASE_URL")
    if not server_url:
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with fresh_postgresql_database(server_url, "kv_migrate") as url:
        yield url


@pytest.fixture
def migration_app(empty_database):
    """An app on the empty database, its context pushed for flask_migrate's commands."""
    app = create_app(base_overrides(empty_database))
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def current_revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def schema_differences() -> list:
    """What autogenerate would put in a new revision: models vs. the migrated database."""
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def test_there_is_exactly_one_head():
    """The revision history is linear: one head, no forgotten branch."""
    script = ScriptDirectory(str(PROJECT_ROOT / "migrations"))
    assert len(script.get_heads()) == 1


def test_keyvault_db_upgrade_on_an_empty_database_reaches_head(empty_database):
    """`keyvault db upgrade`, as an operator runs it, builds the schema from nothing."""
    assert current_revision(empty_database) is None
    env = {**os.environ, "KEYVAULT_DATABASE_URL": empty_database,
           "KEYVAULT_SECRET_KEY": TEST_SECRET_KEY, "KEYVAULT_KEY_PEPPER": TEST_PEPPER}
    result = subprocess.run([str(PROJECT_ROOT / ".venv" / "bin" / "keyvault"), "db", "upgrade"],
                            env=env, cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert current_revision(empty_database) == HEAD
    assert table_names(empty_database) >= TABLES


def test_models_match_the_migrated_schema(migration_app, empty_database):
    """After upgrading, autogenerate finds nothing to add: no model change lacks a migration."""
    upgrade()
    assert current_revision(empty_database) == HEAD
    assert schema_differences() == []


def test_downgrade_to_base_and_upgrade_again(migration_app, empty_database):
    """Every revision can be undone, and the schema rebuilt the same afterwards."""
    upgrade()
    downgrade(revision="base")
    assert current_revision(empty_database) is None
    assert table_names(empty_database) & TABLES == set()
    upgrade()
    assert current_revision(empty_database) == HEAD
    assert schema_differences() == []


def test_the_comparison_notices_a_missing_migration(migration_app):
    """The no-diff check has teeth: a column the migrations lack is reported."""
    upgrade()
    with db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE api_keys ADD COLUMN stray_column INTEGER"))
    differences = schema_differences()
    assert [d[0] for d in differences] == ["remove_column"]
    assert differences[0][3].name == "stray_column"


def test_accounts_made_before_confirmation_count_as_confirmed(migration_app, empty_database):
    """Sign-up confirms addresses by mail from b8e4d2a6c1f3 on; accounts made before it (by
    their owners, or by operators) are confirmed as of their creation, so turning
    KEYVAULT_REQUIRE_EMAIL_CONFIRMATION on locks nobody out."""
    upgrade(revision="c4d2e8a6f1b9")
    engine = create_engine(empty_database)
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO users (email, mailbox_key, password_hash, is_active, is_admin, "
                "created_at, session_epoch, notify_expiring, notify_presented) VALUES "
                "('old@example.com', '', 'x', true, false, '2026-01-02 03:04:05', 0, true, true)"))
        upgrade(revision="b8e4d2a6c1f3")
        with engine.connect() as conn:
            created, confirmed = conn.execute(text(
                "SELECT created_at, email_confirmed_at FROM users")).one()
    finally:
        engine.dispose()
    assert confirmed is not None and str(confirmed)[:19] == str(created)[:19]


def test_keys_made_before_address_restrictions_work_from_anywhere(migration_app, empty_database):
    """c3d5e7f9a1b4 adds api_keys.allowed_ips: every key already issued gets NULL (any
    address), so none stops working after the upgrade."""
    upgrade(revision="b8e4f2a9c6d1")
    engine = create_engine(empty_database)
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO users (email, mailbox_key, password_hash, is_active, is_admin, "
                "created_at, session_epoch, notify_expiring, notify_presented) VALUES "
                "('old@example.com', '', 'x', true, false, '2026-01-02 03:04:05', 0, true, true)"))
            conn.execute(text(
                "INSERT INTO api_keys (public_id, user_id, label, description, mask, digest, "
                "scopes, created_at) SELECT 'oldkey', id, 'old', '', 'kv_…abcd', 'd1', "
                "'[\"*\"]', '2026-01-02 03:04:05' FROM users"))
        upgrade(revision="c3d5e7f9a1b4")
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT public_id, allowed_ips FROM api_keys")).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in rows] == [("oldkey", None)]
