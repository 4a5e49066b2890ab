"""`keyvault db backup` and `keyvault db restore`, end to end: keys made, a backup taken while a
real `keyvault serve` verifies and writes, the database lost, restored, and every key verifying
again on a fresh server. PostgreSQL instances are pointed to pg_dump."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from keyvault import create_app, service
from keyvault.extensions import db
from tests.conftest import (
    PROJECT_ROOT,
    TEST_PEPPER,
    TEST_SECRET_KEY,
    _migrate,
    base_overrides,
    start_server,
    stop_server,
)

SYSTEM = service.Origin("127.0.0.1", "pytest")
MANY_KEYS = {"KEYVAULT_MAX_KEYS_PER_USER": "100000"}  # the writer below makes hundreds


def keyvault(url: str, *args: str) -> subprocess.CompletedProcess:
    """The `keyvault` command line, as an operator runs it, on the database at `url`."""
    env = {**os.environ, "KEYVAULT_DATABASE_URL": url, "KEYVAULT_SECRET_KEY": TEST_SECRET_KEY,
           "KEYVAULT_KEY_PEPPER": TEST_PEPPER}
    return subprocess.run([sys.executable, "-m", "keyvault", *args], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def sqlite_instance(instance_dir, tmp_path):
    """A KeyVault of this test's own on a SQLite file: (url, database path, app)."""
    path = tmp_path / "data" / "keyvault.db"
    path.parent.mkdir()
    url = f"sqlite:///{path}"
    _migrate(url)
    app = create_app({**base_overrides(url), **MANY_KEYS})
    with app.app_context():
        yield url, path, app
        db.session.remove()
        db.engine.dispose()


def _verify(http: requests.Session, base: str, verifier: str, value: str) -> dict:
    answer = http.post(f"{base}/api/verify/", json={"key": value},
                       headers={"Authorization": f"Bearer {verifier}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_backup_while_serving_lose_the_database_restore_every_key_verifies(sqlite_instance,
                                                                           tmp_path):
    url, path, _app = sqlite_instance
    people = [service.sign_up(f"p{n}@example.com", "correct horse battery", SYSTEM)
              for n in range(3)]
    keys = {}
    for n in range(12):
        key, value = service.create_key(people[n % 3], label=f"key {n}", scopes=["*"],
                                        origin=SYSTEM)
        keys[key.public_id] = value
    gone, gone_value = service.create_key(people[0], label="revoked", scopes=["*"],
                                          origin=SYSTEM)
    service.revoke_key(people[0], gone.public_id, SYSTEM)
    verifier = service.create_key(people[1], label="svc", scopes=["key:verify"], origin=SYSTEM)[1]
    writer = service.create_key(people[2], label="w", scopes=["personal_api_key:write"],
                                origin=SYSTEM)[1]
    db.session.remove()
    db.engine.dispose()

    server = start_server(url, tmp_path / "serve-1.log", extra_env=MANY_KEYS)
    stop = threading.Event()
    failures: list[str] = []
    made_before_backup: dict[str, str] = {}
    backup_started = threading.Event()

    def verify_all_the_time():
        with requests.Session() as http:
            while not stop.is_set():
                for value in keys.values():
                    try:
                        if not _verify(http, server.url, verifier, value)["active"]:
                            failures.append("a live key did not verify")
                    except (AssertionError, requests.RequestException) as error:
                        failures.append(repr(error))

    def create_keys_all_the_time():
        with requests.Session() as http:
            n = 0
            while not stop.is_set():
                n += 1
                answer = http.post(f"{server.url}/api/personal_api_keys/",
                                   json={"label": f"during {n}",
                                         "scopes": ["personal_api_key:read"]},
                                   headers={"Authorization": f"Bearer {writer}"}, timeout=10)
                if answer.status_code != 201:
                    failures.append(f"create answered {answer.status_code}: {answer.text}")
                elif not backup_started.is_set():
                    made_before_backup[answer.json()["id"]] = answer.json()["value"]

    threads = [threading.Thread(target=verify_all_the_time),
               threading.Thread(target=create_keys_all_the_time)]
    backup_path = tmp_path / "backups" / "keyvault-backup.db"
    backup_path.parent.mkdir()
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        backup_started.set()
        taken = keyvault(url, "db", "backup", str(backup_path))
        time.sleep(0.5)
        # Restoring under a running server is refused, and changes nothing.
        refused = keyvault(url, "db", "restore", str(backup_path))
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        stop_server(server)
    assert taken.returncode == 0, taken.stderr
    assert "Backed up" in taken.stdout
    assert refused.returncode == 1
    assert "in use" in refused.stderr and "stop keyvault serve" in refused.stderr
    assert failures == []
    assert made_before_backup, "no key was created before the backup started"
    assert stat.S_IMODE(backup_path.stat().st_mode) == 0o600  # digests and password hashes
    keys.update(made_before_backup)

    # The database is lost: the file and its write-ahead log.
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)

    restored = keyvault(url, "db", "restore", str(backup_path))
    assert restored.returncode == 0, restored.stderr
    assert path.is_file()

    server = start_server(url, tmp_path / "serve-2.log", extra_env=MANY_KEYS)
    try:
        with requests.Session() as http:
            for public_id, value in keys.items():
                answer = _verify(http, server.url, verifier, value)
                assert answer["active"] is True, public_id
                assert answer["key_id"] == public_id
            assert _verify(http, server.url, verifier, gone_value)["active"] is False
    finally:
        stop_server(server)


def test_backup_refuses_to_overwrite_and_never_creates_a_database(sqlite_instance, tmp_path):
    url, path, _app = sqlite_instance
    existing = tmp_path / "existing.db"
    existing.write_bytes(b"keep me")
    result = keyvault(url, "db", "backup", str(existing))
    assert result.returncode == 1
    assert "already exists" in result.stderr and "--force" in result.stderr
    assert existing.read_bytes() == b"keep me"
    assert keyvault(url, "db", "backup", "--force", str(existing)).returncode == 0
    assert sqlite3.connect(existing).execute("SELECT count(*) FROM users").fetchone() == (0,)

    missing = tmp_path / "nothing-here" / "keyvault.db"
    result = keyvault(f"sqlite:///{missing}", "db", "backup", str(tmp_path / "b.db"))
    assert result.returncode == 1
    assert "no database" in result.stderr
    assert not missing.exists() and not (tmp_path / "b.db").exists()
    assert list(tmp_path.glob(".*.part")) == []


def test_restore_refuses_what_is_not_a_keyvault_backup(sqlite_instance, tmp_path):
    url, path, _app = sqlite_instance
    service.sign_up("still@example.com", "correct horse battery", SYSTEM)
    db.session.remove()
    db.engine.dispose()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    for candidate, words in ((junk, "not a SQLite database"), (other, "not a KeyVault database"),
                             (tmp_path / "absent.db", "no backup")):
        result = keyvault(url, "db", "restore", str(candidate))
        assert result.returncode == 1, candidate
        assert words in result.stderr
    # the database is untouched
    assert sqlite3.connect(path).execute("SELECT email FROM users").fetchall() == [
        ("still@example.com",)]
    assert list(path.parent.glob(".*.part")) == []


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_postgresql_is_pointed_to_pg_dump(tmp_path, command):
    """Decided from the URL alone: no server is contacted, and the password is never shown."""
    url = "postgresql+psycopg://keyvault:s3cret-pw@127.0.0.1:1/keyvault"
    result = keyvault(url, "db", command, str(tmp_path / "x.db"))
    assert result.returncode == 1
    assert "pg_dump" in result.stderr and "pg_restore" in result.stderr
    assert "postgresql://keyvault@127.0.0.1:1/keyvault" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert not (tmp_path / "x.db").exists()
