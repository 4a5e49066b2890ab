"""Serve the Django baseline under plain gunicorn sync workers, as the benchmark does.

Run: python -m bench.django_baseline --port P --workers W  (with the BENCH_DJANGO_* variables of
bench/servers.py `django_env` set). The command line is bench/servers.py `gunicorn_argv`'s.
"""

from __future__ import annotations

import argparse
import os

from bench.servers import gunicorn_argv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5002)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    argv = gunicorn_argv("bench.django_baseline.wsgi:application", args.port, args.workers)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
