"""The comparison issue 5 names: djangorestframework-api-key's guarded view, served like KeyVault.

A minimal Django project (settings.py, urls.py, views.py) with one DRF APIView at
`POST /api/verify/` guarded by the library's `HasAPIKey`, seeded by `seed.py` into its own SQLite
file, and served by `python -m bench.django_baseline --port P --workers W` through KeyVault's
gunicorn application class and options, exactly as bench/ceiling_app.py is.

Nothing here is imported by the benchmark's own process: Django runs only in the subprocesses
(the seeder and the server), so `python -m bench --no-django` needs no Django installed.
"""

SETTINGS_MODULE = "bench.django_baseline.settings"
# The environment variables settings.py reads.
DATABASE_ENV = "BENCH_DJANGO_DATABASE"
SECRET_KEY_ENV = "BENCH_DJANGO_SECRET_KEY"
