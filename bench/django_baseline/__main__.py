"""Serve the Django baseline under KeyVault's gunicorn settings.

Run: python -m bench.django_baseline --port P --workers W  (with the BENCH_DJANGO_* variables of
bench/servers.py `django_env` set)
"""

from __future__ import annotations

import argparse
import os

from keyvault.server import KeyVaultServer, gunicorn_options

from . import SETTINGS_MODULE


class DjangoServer(KeyVaultServer):
    """KeyVault's gunicorn application class and options, serving the Django project instead."""

    def load(self):
        from django.core.wsgi import get_wsgi_application

        return get_wsgi_application()  # in each worker, as KeyVault builds its app per worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5002)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)
    DjangoServer(gunicorn_options(args.host, args.port, args.workers)).run()


if __name__ == "__main__":
    main()
