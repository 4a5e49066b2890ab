"""The stack's ceiling: a minimal Flask app, served three ways.

It answers the verify-shaped POST with a fixed body shaped like KeyVault's `valid` answer, and a
do-nothing GET, so wrk can measure what Flask and the server cost before KeyVault does any work.

- On KeyVault's own server (granian + `keyvault.server.BufferedWSGI`, the same workers, threads
  and access log as `keyvault serve`): `python -m bench.ceiling_app --port P --workers W`.
- As the reference a typical Flask user deploys: `gunicorn -w 2 --worker-class sync
  bench.ceiling_app:app` (bench/servers.py `gunicorn_argv`).
- Under the other candidates of `python -m bench.serving`: `app`, or the factory
  `bench.ceiling_app:bare_application` (KeyVault's bridge without an access log).
"""

from __future__ import annotations

import argparse
import json
import os

from flask import Flask, request

from keyvault.server import DEFAULT_THREADS, BufferedWSGI, serve

# KeyVault's default body limit (KEYVAULT_MAX_BODY_BYTES), which its bridge reads up to.
MAX_BODY = 1024 * 1024

VALID_ANSWER = json.dumps({
    "active": True,
    "code": "valid",
    "key_id": "q3Jm0c2ZbYkP9xTa",
    "label": "key 1234",
    "scopes": ["personal_api_key:read", "user:read"],
    "expires_at": None,
    "created_at": "2025-01-31T12:00:00.000000Z",
    "user": {"id": 123, "email": "user0000123@bench.example"},
    "owner": {"type": "user", "id": 123, "email": "user0000123@bench.example"},
    "rolled": False,
    "old_value_expires_at": None,
    "sub": "123",
    "username": "user0000123@bench.example",
    "scope": "personal_api_key:read user:read",
    "token_type": "bearer",
    "iat": 1738324800,
})
HEALTHY = json.dumps({"status": "ok"})
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = MAX_BODY


@app.post("/api/verify/")
def verify():
    """The same route, method and answer shape as KeyVault's verify; no work but reading the
    body, as verify does (a WSGI server that calls the app before the body has arrived makes
    the reading thread wait for it: what the slow-client test of bench/serving.py measures)."""
    request.get_data()
    return app.response_class(VALID_ANSWER, mimetype="application/json", headers=HEADERS)


@app.get("/healthz")
def healthz():
    """The do-nothing GET."""
    return app.response_class(HEALTHY, mimetype="application/json")


def _threads() -> int:
    # keyvault.server.serve passes the thread count to its workers in this variable
    return int(os.environ.get("KEYVAULT_SERVE_THREADS", DEFAULT_THREADS))


def application() -> BufferedWSGI:
    """What each granian worker serves under `keyvault.server.serve`: exactly what
    `keyvault.server.application` builds around KeyVault, access log included."""
    from keyvault import logs

    fmt = os.environ.get("KEYVAULT_SERVE_LOG_FORMAT", "text")  # as serve() hands it on
    logs.configure(fmt)
    return BufferedWSGI(app.wsgi_app, MAX_BODY, _threads())


def bare_application() -> BufferedWSGI:
    """KeyVault's bridge without the access log, for the serving comparison (no candidate there
    writes one)."""
    return BufferedWSGI(app.wsgi_app, MAX_BODY, _threads())


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the ceiling app on KeyVault's server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    parser.add_argument("--no-access-log", dest="access_log", action="store_false")
    args = parser.parse_args()
    target = "bench.ceiling_app:" + ("application" if args.access_log else "bare_application")
    serve(target, args.host, args.port, args.workers, args.threads)


if __name__ == "__main__":
    main()
