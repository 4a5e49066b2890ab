"""A throw-away benchmark database: created fresh, migrated, seeded in bulk, dropped at the end."""

from __future__ import annotations

import importlib.util
import json
import math
import random
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from keyvault import clock, create_app, passwords, tokens
from keyvault.extensions import db
from keyvault.models import ApiKey, User

BATCH = 10_000
ROTATING = 2_000  # plaintext values kept for wrk to rotate over
KEPT_REVOKED = 200
UNKNOWN = 200
LISTED = 10  # the list benchmark's user holds this many keys
SUBJECT_SCOPES = (
    ["*"],
    ["personal_api_key:read"],
    ["personal_api_key:read", "user:read"],
    ["personal_api_key:write", "user:read"],
)


@dataclass
class BenchDatabase:
    url: str
    backend: str  # "sqlite" or "postgresql"
    drop: Callable[[], None]

    def size_bytes(self) -> int | None:
        if self.backend == "sqlite":
            path = Path(make_url(self.url).database)
            files = [path, path.with_name(path.name + "-wal")]
            return sum(f.stat().st_size for f in files if f.exists())
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                return conn.scalar(text("SELECT pg_database_size(current_database())"))
        finally:
            engine.dispose()

    def index_bytes(self, table: str) -> dict[str, int]:
        """The size of each index on `table`, by name: SQLite's dbstat table (pages in use),
        PostgreSQL's pg_relation_size."""
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                if self.backend == "sqlite":
                    rows = conn.execute(text(
                        "SELECT d.name, SUM(d.pgsize) FROM dbstat d JOIN sqlite_schema s"
                        " ON s.name = d.name WHERE s.type = 'index' AND s.tbl_name = :t"
                        " GROUP BY d.name ORDER BY d.name"), {"t": table})
                else:
                    rows = conn.execute(text(
                        "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid)"
                        " FROM pg_index WHERE indrelid = CAST(:t AS regclass)"
                        " ORDER BY 1"), {"t": table})
                return {name: int(size) for name, size in rows}
        finally:
            engine.dispose()


def create_database(server_url: str | None, workdir: Path, *, name_prefix: str = "kv_bench",
                    sqlite_file: str = "keyvault.db") -> BenchDatabase:
    """A fresh SQLite file in workdir, or a new database on the PostgreSQL server at server_url
    (named name_prefix_<random>; drop() removes it, connected or not)."""
    if not server_url:
        return BenchDatabase(f"sqlite:///{workdir / sqlite_file}", "sqlite", lambda: None)
    server = make_url(server_url)
    if not server.drivername.startswith("postgresql"):
        raise SystemExit(f"--database-url must be a PostgreSQL URL, got {server.drivername}")
    name = f"{name_prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" OWNER "{server.username}" '
                              "TEMPLATE template0"))
    except BaseException:
        admin.dispose()
        raise

    def drop() -> None:
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            admin.dispose()

    url = server.set(database=name).render_as_string(hide_password=False)
    return BenchDatabase(url, "postgresql", drop)


def make_app(url: str, secret_key: str, pepper: str) -> Flask:
    """The app as the servers build it: the same KEYVAULT_* values, parsed by the same config."""
    return create_app({"KEYVAULT_DATABASE_URL": url, "KEYVAULT_SECRET_KEY": secret_key,
                       "KEYVAULT_KEY_PEPPER": pepper})


def migrate(app: Flask) -> None:
    with app.app_context():
        upgrade()
        db.engine.dispose()


@dataclass
class Seeded:
    """What the benchmark needs to know about the seeded database; plaintexts live only here."""

    caller: str  # the calling service's key: key:verify only
    valid: list[str] = field(default_factory=list)  # live keys, spread through the table
    revoked: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # well-formed, never stored
    lister: str = ""  # personal_api_key:read+write; its owner has exactly LISTED keys
    creator: str = ""  # personal_api_key:write; its owner has only this key
    keys: int = 0
    users: int = 0
    seconds: float = 0.0


class _Keys:
    """Key rows with real digests: plaintexts to keep come from tokens.generate (the product's
    own generator); the bulk filler uses a seeded PRNG, ~7x faster, and is thrown away."""

    def __init__(self, pepper: str, prefix: str):
        self.pepper = pepper.encode("utf-8")
        self.prefix = prefix
        self.rng = random.Random(secrets.randbits(64))
        self.now = clock.now()

    def filler_value(self) -> str:
        body = "".join(self.rng.choices(tokens.ALPHABET, k=tokens.BODY_LENGTH))
        return f"{self.prefix}_{body}{tokens.checksum(body)}"

    def row(self, value: str, user_id: int, scopes: list[str], label: str, *,
            revoked: bool = False, expires_in_days: int | None = None) -> dict:
        created_at = self.now - timedelta(seconds=self.rng.randrange(1, 365 * 86400))
        return {
            "public_id": tokens.new_public_id(),
            "user_id": user_id,
            "label": label,
            "description": "",
            "mask": tokens.mask(value),
            "digest": tokens.digest_of(value, self.pepper),
            "scopes": scopes,
            "created_at": created_at,
            "last_used_at": None,
            "expires_at": (self.now + timedelta(days=expires_in_days)
                           if expires_in_days is not None else None),
            "revoked_at": created_at + timedelta(hours=1) if revoked else None,
            "last_rolled_at": None,
            "previous_digest": None,
            "previous_expires_at": None,
        }


def _insert_users(conn, emails: list[str], password_hash: str, now) -> list[int]:
    table = User.__table__
    for start in range(0, len(emails), BATCH):
        conn.execute(table.insert(), [
            {"email": email, "password_hash": password_hash, "is_active": True,
             "is_admin": False, "created_at": now, "last_login_at": None}
            for email in emails[start:start + BATCH]
        ])
    ids = dict(conn.execute(select(table.c.email, table.c.id)).all())
    return [ids[email] for email in emails]


def seed(app: Flask, n_keys: int, progress: Callable[[str], None] = print) -> Seeded:
    """Insert n_keys keys (5% revoked, 2% expired, a third expiring later) for users holding
    KEYVAULT_MAX_KEYS_PER_USER keys each, plus a caller key with key:verify; in bulk, one
    transaction, executemany through SQLAlchemy Core so both databases get the same rows."""
    started = time.perf_counter()
    config = app.config
    keys = _Keys(config["KEYVAULT_KEY_PEPPER"], config["KEYVAULT_KEY_PREFIX"])
    per_user = config["KEYVAULT_MAX_KEYS_PER_USER"]
    n_users = max(1, math.ceil(n_keys / per_user))
    # Nobody logs in during the benchmark: one real argon2 hash serves every account.
    password_hash = passwords.hash_password(passwords.make_hasher(**config["KEYVAULT_ARGON2"]),
                                            secrets.token_urlsafe(16))
    seeded = Seeded(caller=tokens.generate(keys.prefix))
    valid_stride = max(1, n_keys // ROTATING)
    revoked_stride = max(1, n_keys // (KEPT_REVOKED * 20))
    table = ApiKey.__table__

    with app.app_context(), db.engine.begin() as conn:
        if db.engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA cache_size=-262144")  # 256 MiB for random index inserts
        special = ["verifier@bench.example", "lister@bench.example", "creator@bench.example"]
        emails = special + [f"user{i:07d}@bench.example" for i in range(n_users)]
        user_ids = _insert_users(conn, emails, password_hash, keys.now)
        verifier, lister, creator, *owners = user_ids

        seeded.lister = tokens.generate(keys.prefix)
        seeded.creator = tokens.generate(keys.prefix)
        special_rows = [
            keys.row(seeded.caller, verifier, ["key:verify"], "verify service"),
            keys.row(seeded.lister, lister, ["personal_api_key:read", "personal_api_key:write"],
                     "key manager"),
            keys.row(seeded.creator, creator, ["personal_api_key:write"], "key creator"),
        ] + [keys.row(tokens.generate(keys.prefix), lister, ["*"], f"laptop {i}")
             for i in range(LISTED - 1)]
        conn.execute(table.insert(), special_rows)

        rows: list[dict] = []
        for i in range(n_keys):
            revoked = i % 20 == 19
            expired = not revoked and i % 50 == 25
            keep_valid = (not revoked and not expired and i % valid_stride == 0
                          and len(seeded.valid) < ROTATING)
            keep_revoked = (revoked and (i // 20) % revoked_stride == 0
                            and len(seeded.revoked) < KEPT_REVOKED)
            if keep_valid or keep_revoked:
                value = tokens.generate(keys.prefix)
                (seeded.valid if keep_valid else seeded.revoked).append(value)
            else:
                value = keys.filler_value()
            expires_in_days = -30 if expired else (90 + i % 275 if i % 3 == 0 else None)
            rows.append(keys.row(value, owners[i // per_user], SUBJECT_SCOPES[i % 4],
                                 f"key {i}", revoked=revoked, expires_in_days=expires_in_days))
            if len(rows) == BATCH:
                conn.execute(table.insert(), rows)
                rows.clear()
                if (i + 1) % 100_000 == 0:
                    progress(f"  seeded {i + 1:,} keys ({time.perf_counter() - started:.0f} s)")
        if rows:
            conn.execute(table.insert(), rows)

    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            # Planner statistics and the visibility map now, as autovacuum would do soon after
            # a bulk insert (its insert threshold): no plan change and no vacuum of millions of
            # new rows mid-run, whose CPU would count as verify's. A SQLite deployment never
            # runs ANALYZE by itself, so the SQLite database is left without.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        db.engine.dispose()

    seeded.unknown = [tokens.generate(keys.prefix) for _ in range(UNKNOWN)]
    seeded.keys = n_keys + len(special_rows)
    seeded.users = len(user_ids)
    seeded.seconds = time.perf_counter() - started
    return seeded


@dataclass
class DjangoSeeded:
    """The Django baseline's keys (bench/django_baseline/seed.py): `prefix.secret` values."""

    valid: list[str]
    revoked: list[str]
    unknown: list[str]
    wrong_secret: str  # a stored prefix with another secret
    rows: int
    hashers: list[str]  # the algorithms of the stored hashes, as the library wrote them
    database: str  # Django's connection.vendor in the seeder: "sqlite" or "postgresql"
    seconds: float


DJANGO_PACKAGES = ("django", "rest_framework", "rest_framework_api_key")


def require_django() -> None:
    """Fail early, before any database is created, when the `bench` extra is missing."""
    missing = [name for name in DJANGO_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(f"the Django baseline needs {', '.join(missing)}: "
                         "pip install -e '.[bench]' (what `make bench` does), or --no-django")


def seed_django(env: dict, n_keys: int) -> DjangoSeeded:
    """Migrate and seed the Django baseline's database (env from servers.django_env: a SQLite
    file or a PostgreSQL database) in a subprocess (Django never loads in the benchmark's own
    process), with the same number of keys and mix as KeyVault's."""
    require_django()
    done = subprocess.run([sys.executable, "-m", "bench.django_baseline.seed", "--keys",
                           str(n_keys)], env=env, capture_output=True, text=True, check=False,
                          cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"seeding the Django baseline failed ({done.returncode}):\n"
                           f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return DjangoSeeded(**json.loads(done.stdout.strip().splitlines()[-1]))
