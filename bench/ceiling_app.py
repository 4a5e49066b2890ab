"""The stack's ceiling: a minimal Flask app under KeyVault's own gunicorn settings.

It answers the verify-shaped POST with a fixed body shaped like KeyVault's `valid` answer, and a
do-nothing GET, so wrk can measure what Flask + gunicorn cost before KeyVault does any work.
Run: python -m bench.ceiling_app --port P --workers W
"""

from __future__ import annotations

import argparse
import json
import os

from flask import Flask

from keyvault.server import KeyVaultServer, gunicorn_options

VALID_ANSWER = json.dumps({
    "active": True,
    "code": "valid",
    "key_id": "q3Jm0c2ZbYkP9xTa",
    "label": "key 1234",
    "scopes": ["personal_api_key:read", "user:read"],
    "expires_at": None,
    "created_at": "2025-01-31T12:00:00.000000Z",
    "user": {"id": 123, "email": "user0000123@bench.example"},
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


@app.post("/api/verify/")
def verify():
    """The same route, method and answer shape as KeyVault's verify; no work at all."""
    return app.response_class(VALID_ANSWER, mimetype="application/json", headers=HEADERS)


@app.get("/healthz")
def healthz():
    """The do-nothing GET."""
    return app.response_class(HEALTHY, mimetype="application/json")


class CeilingServer(KeyVaultServer):
    """KeyVault's gunicorn application class and options, serving this app instead."""

    def load(self):
        return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    CeilingServer(gunicorn_options(args.host, args.port, args.workers)).run()


if __name__ == "__main__":
    main()
