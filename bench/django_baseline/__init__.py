"""The comparison issue 5 names: djangorestframework-api-key's guarded view, served like KeyVault.

A minimal Django project (settings.py, urls.py, views.py) with one DRF APIView at
`POST /api/verify/` guarded by the library's `HasAPIKey`, seeded by `seed.py` into its own database
(a SQLite file; with `--database-url`, a second fresh database on KeyVault's PostgreSQL server),
and served by plain gunicorn sync workers (`wsgi.py`; bench/servers.py `start_django`, or
`python -m bench.django_baseline --port P --workers W`), as the reference Flask app is.

Nothing here is imported by the benchmark's own process: Django runs only in the subprocesses
(the seeder and the server), so `python -m bench --no-django` needs no Django installed.
"""

SETTINGS_MODULE = "bench.django_baseline.settings"
# The environment variables settings.py reads (bench/servers.py `django_env` sets them).
ENGINE_ENV = "BENCH_DJANGO_ENGINE"  # "sqlite" (the default) or "postgresql"
DATABASE_ENV = "BENCH_DJANGO_DATABASE"  # SQLite: the file's path; PostgreSQL: the database name
# PostgreSQL only: Django's DATABASES settings of the same names ("" for libpq's defaults).
CONNECTION_ENV = {"HOST": "BENCH_DJANGO_DB_HOST", "PORT": "BENCH_DJANGO_DB_PORT",
                  "USER": "BENCH_DJANGO_DB_USER", "PASSWORD": "BENCH_DJANGO_DB_PASSWORD"}
OPTIONS_ENV = "BENCH_DJANGO_DB_OPTIONS"  # PostgreSQL only: JSON, the URL's query (e.g. sslmode)
SECRET_KEY_ENV = "BENCH_DJANGO_SECRET_KEY"
