"""The app factory: config → extensions → blueprints → errors → middleware (ARCHITECTURE.md)."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, g, request
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config as config_module
from . import (
    factor_models,  # noqa: F401 - its tables join the metadata (migrations, mappers)
    metrics,
    models,
    org_models,  # noqa: F401 - its tables join the metadata (migrations, mappers)
    ratelimit,
    webhook_models,  # noqa: F401 - its tables join the metadata (migrations, mappers)
)
from .admin.views import bp as admin_bp

# forward_auth's, leaks', organizations', service_accounts', services', webhooks' and the
# revocation stream's routes join the API blueprint
from .api import (  # noqa: F401
    forward_auth,
    leaks,
    organizations,
    service_accounts,
    services,
    signatures,
    stream,
    webhooks,
)
from .api.fastlane import VerifyFastLane
from .api.views import bp as api_bp
from .auth import invitations as invitation_pages  # noqa: F401 - joins the auth blueprint
from .auth.passkeys import bp as passkeys_bp
from .auth.views import bp as auth_bp
from .extensions import csrf, db, login_manager, migrate
from .http import errors, wire
from .http.browser import CookieSessionInterface, register_filters
from .http.context import AroundRequest, RealIpFallback, note
from .jsonio import OrjsonProvider
from .ops.views import bp as ops_bp

# their pages join the settings blueprint
from .settings import account, key_lists, two_factor  # noqa: F401
from .settings import organizations as org_pages  # noqa: F401
from .settings import service_accounts as service_account_pages  # noqa: F401
from .settings import services as service_pages  # noqa: F401
from .settings import webhooks as webhook_pages  # noqa: F401
from .settings.views import bp as settings_bp

PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """templates/, static/ and migrations/: top-level in a checkout, inside the package in a wheel."""
    packaged = PACKAGE_DIR / name
    return packaged if packaged.is_dir() else PACKAGE_DIR.parent / name


CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


# Production: browsers use HTTPS only, for two years, subdomains included (every answer, the API
# and the verify fast path too: http.context.AroundRequest).
HSTS = "max-age=63072000; includeSubDomains"
# Answers built from the configuration and the files alone, the same whoever asks (the API's
# answers are no-store: http.context.AroundRequest).
SAME_FOR_EVERYONE = ("/api/docs", "/static/", "/favicon.ico")


def create_app(overrides: dict | None = None) -> Flask:
    """Build an app: config → extensions → blueprints → errors → CLI."""
    instance_path = os.environ.get("KEYVAULT_INSTANCE_PATH") or None
    app = Flask(
        __name__,
        template_folder=str(resource_dir("templates")),
        static_folder=str(resource_dir("static")),
        instance_path=instance_path,
        instance_relative_config=True,
    )
    app.json = OrjsonProvider(app)
    env = dict(os.environ)
    for name, value in (overrides or {}).items():
        if name.startswith("KEYVAULT_") and isinstance(value, str):
            env[name] = value  # string overrides go through the same parsing as the environment
    app.config.update(config_module.load(Path(app.instance_path), env))
    app.config.update({k: v for k, v in (overrides or {}).items() if not isinstance(v, str)
                       or not k.startswith("KEYVAULT_")})
    _database_timeouts(app)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(resource_dir("migrations")), render_as_batch=True,
                     compare_type=True)
    csrf.init_app(app)
    login_manager.init_app(app)
    ratelimit.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to see that page."
    login_manager.session_protection = "basic"

    @login_manager.user_loader
    def load_user(session_id: str):
        """The session's user, unless deactivated or their sessions were ended since login."""
        user_id, _, epoch = session_id.partition(":")
        try:
            user = db.session.get(models.User, int(user_id))
        except ValueError:
            return None
        if user is None or not user.is_active or epoch != str(user.session_epoch):
            return None
        return user

    # "/api/users/@me" answers like "/api/users/@me/" instead of redirecting, so a key in the
    # query string is never echoed into a Location header.
    app.url_map.strict_slashes = False
    csrf.exempt(api_bp)  # the API authenticates with keys only, never the session cookie
    app.register_blueprint(ops_bp)  # /healthz, /readyz, /metrics
    app.register_blueprint(auth_bp)
    app.register_blueprint(passkeys_bp)
    app.register_blueprint(settings_bp, url_prefix="/settings")
    app.register_blueprint(admin_bp, url_prefix="/admin")
    app.register_blueprint(api_bp, url_prefix="/api")
    metrics.init_app(app)  # counting from the start in a worker of `keyvault serve`

    @app.get("/favicon.ico")
    def favicon():
        """Browsers and feed readers ask for /favicon.ico whatever the page links: never a 404."""
        return app.send_static_file("img/favicon.ico")

    errors.register(app)

    production = app.config["KEYVAULT_ENV"] == "production"
    app.wsgi_app = AroundRequest(VerifyFastLane(app.wsgi_app, app), app.config["MAX_CONTENT_LENGTH"],
                                 (("Strict-Transport-Security", HSTS),) if production else ())
    proxies = app.config["KEYVAULT_TRUSTED_PROXIES"]
    if proxies:  # outermost, so every layer sees the client's address
        app.wsgi_app = RealIpFallback(ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies,
                                               x_host=proxies))
    # outermost of all: bytes nothing should read are refused before anything reads them
    wire.init_app(app, decisive=(signatures.IDENTIFIER_HEADER, signatures.SIGNATURE_HEADER))

    @app.before_request
    def note_route():
        """The access log names the route (its rule), never the raw path with its ids."""
        note(route=request.url_rule.rule if request.url_rule is not None else None)

    @app.after_request
    def security_headers(response):
        headers = response.headers  # nosniff, request id and timing: http.context.AroundRequest
        path = request.path
        if not path.startswith("/api/") or path.startswith("/api/docs"):  # pages, not JSON
            headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            headers.setdefault("X-Frame-Options", "DENY")
            headers.setdefault("Referrer-Policy", "same-origin")
            if g.get("no_store"):
                headers["Cache-Control"] = "no-store"
                headers["Pragma"] = "no-cache"
            elif not path.startswith(SAME_FOR_EVERYONE):
                # Who is logged in, the CSRF token, flashed messages: a page is its cookie's.
                response.vary.add("Cookie")
        return response

    app.session_interface = CookieSessionInterface()
    register_filters(app)
    return app


def _database_timeouts(app: Flask) -> None:
    """No request waits on the database for longer than KEYVAULT_DATABASE_TIMEOUT seconds to
    connect (PostgreSQL) or to get the write lock (SQLite's busy timeout); past that it gets a
    503 (keyvault.http.errors)."""
    options = app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
    connect_args = options.setdefault("connect_args", {})
    timeout = app.config["KEYVAULT_DATABASE_TIMEOUT"]
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        connect_args.setdefault("timeout", timeout)
    else:  # PostgreSQL: lock_timeout plays SQLite's busy timeout
        options.setdefault("pool_pre_ping", True)
        options.setdefault("pool_timeout", timeout)
        connect_args.setdefault("connect_timeout", timeout)
        connect_args.setdefault("options", f"-c lock_timeout={timeout * 1000}")


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    """SQLite: WAL so readers never wait for the writer (the busy timeout is a connect argument:
    _database_timeouts)."""
    module = type(dbapi_connection).__module__
    if "sqlite" not in module:
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
