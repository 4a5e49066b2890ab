"""KeyVault: a self-hostable service for personal API keys.

The modules form layers, and each imports only layers below it (ARCHITECTURE.md has the
picture; the `[tool.importlinter]` contracts in pyproject.toml enforce it, run by `make test`):

    cli                      the `keyvault` command (users, keys, db backup / restore, ...)
    server                   `keyvault serve`: granian, the RSGI bridge, sockets, supervisor
    wsgi                     the app for other WSGI servers
    app                      create_app: config → extensions → blueprints → errors → middleware
    api | auth | settings | admin | ops      blueprints, independent of each other
    http                     HTTP helpers: problems, credentials, context, gate, errors, pages
    config                   settings from KEYVAULT_* (knows the scopes, limits, SMTP URLs)
    service                  what KeyVault does; no request, no HTTP
    failures                 what a failure leaves in the log (once per kind per interval)
    metrics | logs | ratelimit               counters, log lines, limits
    keystore                 key lookups and usage stamps, in SQL
    models                   the tables
    extensions               db, migrate, login manager, csrf: unattached
    clock | tokens | passwords | redact | jsonio | smtp | links | mailbox   leaf helpers

`create_app` here is the app with the command line attached (`flask --app keyvault ...`);
keyvault.app.create_app builds the same app without it.
"""

from __future__ import annotations

from flask import Flask

from . import app as _app
from . import cli


def create_app(overrides: dict | None = None) -> Flask:
    """The app (keyvault.app.create_app) with KeyVault's commands on `app.cli`."""
    app = _app.create_app(overrides)
    cli.register(app)
    return app
