"""Seed the Django baseline's database: migrate, then N API keys; print the keys to present.

Run: BENCH_DJANGO_DATABASE=path python -m bench.django_baseline.seed --keys N  (a SQLite file; for
PostgreSQL, the other BENCH_DJANGO_* variables of bench/servers.py `django_env` as well)
The last line of stdout is JSON: the plaintexts of the valid keys wrk rotates over (made by the
library's own `APIKey.objects.create_key`), a few revoked and unknown ones for the answer check,
and counts. The filler rows are bulk-inserted with real values: a prefix and a secret of the
library's shape and alphabet (from a seeded PRNG, like KeyVault's filler) hashed by the library's
own hasher; their plaintexts are dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import time
from datetime import timedelta

BATCH = 10_000
ROTATING = 2_000  # as bench/database.py: at most this many valid keys for wrk to rotate over
KEPT_REVOKED = 20
UNKNOWN = 20


def seed(n_keys: int) -> dict:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone
    from django.utils.crypto import RANDOM_STRING_CHARS
    from rest_framework_api_key.crypto import concatenate
    from rest_framework_api_key.models import APIKey

    started = time.perf_counter()
    call_command("migrate", verbosity=0, interactive=False)
    generator = APIKey.objects.key_generator
    rng = random.Random(secrets.randbits(64))
    now = timezone.now()
    valid_stride = max(1, n_keys // ROTATING)
    revoked_stride = max(1, n_keys // (KEPT_REVOKED * 20))
    valid: list[str] = []
    revoked: list[str] = []
    prefixes: set[str] = set()
    pending: list = []

    def random_string(length: int) -> str:
        return "".join(rng.choices(RANDOM_STRING_CHARS, k=length))

    with transaction.atomic():
        for i in range(n_keys):
            # The same mix as KeyVault's seed: 5% revoked, 2% expired, a third expiring later.
            is_revoked = i % 20 == 19
            expired = not is_revoked and i % 50 == 25
            days = -30 if expired else (90 + i % 275 if i % 3 == 0 else None)
            expiry_date = now + timedelta(days=days) if days is not None else None
            keep_valid = (not is_revoked and not expired and i % valid_stride == 0
                          and len(valid) < ROTATING)
            keep_revoked = (is_revoked and (i // 20) % revoked_stride == 0
                            and len(revoked) < KEPT_REVOKED)
            if keep_valid or keep_revoked:
                api_key, key = APIKey.objects.create_key(
                    name=f"key {i}", revoked=is_revoked, expiry_date=expiry_date)
                prefixes.add(api_key.prefix)
                (valid if keep_valid else revoked).append(key)
                continue
            prefix = random_string(generator.prefix_length)
            while prefix in prefixes:  # the prefix column is unique
                prefix = random_string(generator.prefix_length)
            prefixes.add(prefix)
            key = concatenate(prefix, random_string(generator.secret_key_length))
            hashed_key = generator.hash(key)
            pending.append(APIKey(id=concatenate(prefix, hashed_key), prefix=prefix,
                                  hashed_key=hashed_key, name=f"key {i}", revoked=is_revoked,
                                  expiry_date=expiry_date))
            if len(pending) == BATCH:
                APIKey.objects.bulk_create(pending)
                pending.clear()
        if pending:
            APIKey.objects.bulk_create(pending)

    if connection.vendor == "postgresql":
        # Planner statistics now, as bench/database.py does for KeyVault's PostgreSQL database.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")

    unknown = []
    while len(unknown) < UNKNOWN:  # well-formed, never stored
        key, prefix, _ = generator.generate()
        if prefix not in prefixes:
            unknown.append(key)
    # A stored prefix with a wrong secret: the lookup hits, the hasher says no.
    wrong_secret = concatenate(valid[0].partition(".")[0], generator.get_secret_key())
    rows = APIKey.objects.count()
    hashers = sorted({h.partition("$")[0] for h in APIKey.objects.values_list("hashed_key",
                                                                               flat=True)[:100]})
    connection.close()
    return {"valid": valid, "revoked": revoked, "unknown": unknown, "wrong_secret": wrong_secret,
            "rows": rows, "hashers": hashers, "database": connection.vendor,
            "seconds": round(time.perf_counter() - started, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1000)
    args = parser.parse_args()
    from . import SETTINGS_MODULE

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)
    print(json.dumps(seed(args.keys)), flush=True)


if __name__ == "__main__":
    main()
