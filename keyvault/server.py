"""`keyvault serve`: gunicorn with KeyVault's defaults, and access logs that never show a key."""

from __future__ import annotations

import re

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

SECRET_PARAMS = re.compile(r"((?<![\w-])(?:personal_api_key|token|key)=)[^&\s\"]*", re.IGNORECASE)


def scrub(text: str) -> str:
    """Hide key values that a client put in a query string."""
    return SECRET_PARAMS.sub(r"\1[redacted]", text)


class ScrubbingLogger(Logger):
    """gunicorn's logger, with keys in query strings redacted from the access log."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for name in ("r", "q", "f", "{raw_uri}e"):
            if isinstance(atoms.get(name), str):
                atoms[name] = scrub(atoms[name])
        return atoms


def gunicorn_options(host: str, port: int, workers: int) -> dict:
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "sync",
        "keepalive": 5,
        "accesslog": "-",
        "errorlog": "-",
        "logger_class": ScrubbingLogger,
        "forwarded_allow_ips": "127.0.0.1,::1",
        "timeout": 30,
    }


class KeyVaultServer(BaseApplication):
    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self):
        for name, value in self.options.items():
            self.cfg.set(name, value)

    def load(self):
        from . import create_app

        return create_app()  # each worker builds its own app, engine and connection pool


def run(host: str, port: int, workers: int) -> None:
    from . import create_app

    create_app()  # generate instance secrets once, before workers race for them
    KeyVaultServer(gunicorn_options(host, port, workers)).run()
