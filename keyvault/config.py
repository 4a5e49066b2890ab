"""Configuration: defaults, then KEYVAULT_* environment variables, then the caller's overrides."""

from __future__ import annotations

import importlib.util
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from . import tokens
from .ratelimit import DEFAULTS, DOORS, parse_quota
from .service.scopes import BUILT_IN
from .smtp import parse_url

DEFAULT_SCOPES = BUILT_IN


ENVIRONMENTS = ("development", "production")


class ConfigError(RuntimeError):
    """The configuration cannot run KeyVault; the message names the variable to fix."""


def _int(env: dict, name: str, default: int | None, minimum: int = 0) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _flag(env: dict, name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _choice(env: dict, name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _make_instance_folder(instance_path: Path) -> None:
    """Create the instance folder for its owner only (0700): it holds the generated secrets and
    the embedded database, whose files SQLite creates with the process's umask (often 0644).
    An existing folder is left as the operator made it."""
    instance_path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _instance_secret(instance_path: Path, name: str) -> str:
    """Read instance/<name>, creating it once with owner-only permissions; safe under races."""
    path = instance_path / name
    _make_instance_folder(instance_path)
    # Write a complete file under a private name, then link it into place: another process
    # starting at the same moment sees either no file or the whole secret, never an empty one.
    draft = instance_path / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48) + "\n")
    try:
        os.link(draft, path)
    except FileExistsError:
        pass  # someone else's secret won; use theirs
    finally:
        draft.unlink()
    value = path.read_text().strip()
    if not value:
        raise ConfigError(f"{path} is empty; delete it or set the variable")
    return value


SCOPE_DESCRIPTION_MAX = 200


def _scope_entries(raw: str) -> list[str]:
    """Entries are comma-separated; when the value spans lines, one entry per line instead,
    so a description may contain commas (a trailing comma on a line is ignored)."""
    if "\n" in raw:
        return [line.strip().removesuffix(",").strip() for line in raw.splitlines()]
    return [entry.strip() for entry in raw.split(",")]


def parse_scope_catalogue(raw: str | None) -> tuple[tuple[str, ...], dict[str, str]]:
    """KEYVAULT_SCOPES: KeyVault's own scopes plus the services' ones, and the descriptions
    operators gave them. An entry is `object:action` or `object:action=What it lets a key do`."""
    names: list[str] = []
    descriptions: dict[str, str] = {}
    for entry in _scope_entries(raw or ""):
        if not entry:
            continue
        scope, has_text, text = entry.partition("=")
        scope, text = scope.strip(), " ".join(text.split())
        obj, sep, action = scope.partition(":")
        if not (sep and obj and action) or any(c.isspace() for c in scope) or scope.count(":") != 1:
            raise ConfigError(f"KEYVAULT_SCOPES: {scope!r} is not of the form object:action")
        if has_text and not text:
            raise ConfigError(f"KEYVAULT_SCOPES: {scope!r} has an empty description after '='")
        if len(text) > SCOPE_DESCRIPTION_MAX or any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise ConfigError(f"KEYVAULT_SCOPES: the description of {scope!r} must be at most "
                              f"{SCOPE_DESCRIPTION_MAX} printable characters")
        names.append(scope)
        if text:
            descriptions[scope] = text
    return tuple(dict.fromkeys((*DEFAULT_SCOPES, *names))), descriptions


def parse_scopes(raw: str | None) -> tuple[str, ...]:
    """The scope catalogue: KeyVault's own scopes plus any from KEYVAULT_SCOPES."""
    return parse_scope_catalogue(raw)[0]


def _log_format(env: dict, production: bool) -> str:
    fmt = env.get("KEYVAULT_LOG_FORMAT", "").strip().lower() or ("json" if production else "text")
    if fmt not in ("json", "text"):
        raise ConfigError(f"KEYVAULT_LOG_FORMAT must be json or text, got {fmt!r}")
    return fmt


def _rate_limits(env: dict) -> dict:
    try:
        return {setting: parse_quota(door, env.get(setting, DEFAULTS[door]))
                for door, setting in DOORS.items()}
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _ratelimit_storage(env: dict) -> str:
    url = env.get("KEYVAULT_RATELIMIT_STORAGE_URL", "").strip() or "memory://"
    scheme = url.partition("://")[0]
    if scheme not in ("memory", "redis", "rediss", "redis+sentinel", "redis+cluster"):
        raise ConfigError("KEYVAULT_RATELIMIT_STORAGE_URL must be memory:// or a redis:// URL, "
                          f"got one starting {scheme!r}")
    if scheme != "memory" and importlib.util.find_spec("redis") is None:
        raise ConfigError("KEYVAULT_RATELIMIT_STORAGE_URL names Redis, whose client is not "
                          "installed: pip install 'keyvault[redis]'")
    return url


def _base_url(raw: str | None) -> str | None:
    """KEYVAULT_BASE_URL: where people and programs reach KeyVault (`https://keys.example.com`,
    maybe with a path prefix); absolute links are built on it, never on a request's Host."""
    if raw is None or not raw.strip():
        return None
    parts = urlsplit(raw.strip())
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        parts = parts._replace(netloc="")
    if (parts.scheme not in ("http", "https") or not parts.hostname or parts.query
            or parts.fragment or parts.username or parts.password):
        raise ConfigError("KEYVAULT_BASE_URL must be an http(s) URL such as "
                          f"https://keys.example.com, got {raw!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _webauthn_rp_id(raw: str | None, base_url: str | None) -> str | None:
    """KEYVAULT_WEBAUTHN_RP_ID: the domain passkeys are bound to (`example.com` lets them work on
    every subdomain; `keys.example.com` on that host only). It must be the host of
    KEYVAULT_BASE_URL or a domain that host belongs to; unset, it is that host. Changing it
    later makes every registered passkey stop working."""
    host = urlsplit(base_url).hostname if base_url else None
    if raw is None or not raw.strip():
        return host
    rp_id = raw.strip().lower().rstrip(".")
    if "/" in rp_id or ":" in rp_id or " " in rp_id or "." not in rp_id and rp_id != "localhost":
        raise ConfigError("KEYVAULT_WEBAUTHN_RP_ID must be a domain name such as example.com "
                          f"(no scheme, port or path), got {raw!r}")
    if host is not None and host != rp_id and not host.endswith("." + rp_id):
        raise ConfigError(f"KEYVAULT_WEBAUTHN_RP_ID {rp_id!r} must be the host of "
                          f"KEYVAULT_BASE_URL ({host}) or a domain it belongs to")
    return rp_id


# Set by `keyvault serve` for its workers: where it listens, as a person on this machine opens it.
SERVE_URL = "KEYVAULT_SERVE_URL"


def _development_url(env: dict, production: bool, base_url: str | None) -> str | None:
    """In development without KEYVAULT_BASE_URL, the address mail links are put on: where
    `keyvault serve` listens, so a mail written to the log has a link to click. Production never
    guesses one (links need KEYVAULT_BASE_URL there); nor does a command, which serves nothing."""
    if production or base_url:
        return None
    return _base_url(env.get(SERVE_URL))


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _secret_scanning_keys(raw: str | None) -> str | None:
    """KEYVAULT_SECRET_SCANNING_KEYS: where the public keys that sign leaked-key reports are
    (GitHub's public_keys document): an https URL, or a path to a JSON file; None turns the
    intake off. Plain http only to this machine (a local mirror, the tests): fetched over the
    network without TLS, anyone on the path could sign reports."""
    if raw is None or not raw.strip():
        return None
    raw = raw.strip()
    parts = urlsplit(raw)
    if parts.scheme in ("http", "https"):
        if not parts.hostname or (parts.scheme == "http"
                                  and parts.hostname not in LOOPBACK_HOSTS):
            raise ConfigError("KEYVAULT_SECRET_SCANNING_KEYS must be an https URL (http only "
                              f"to this machine) or a file, got {raw!r}")
        return raw
    if "://" in raw or not Path(raw).is_file():
        raise ConfigError("KEYVAULT_SECRET_SCANNING_KEYS must be an https URL or an existing "
                          f"JSON file, got {raw!r}")
    return raw


def _smtp_url(raw: str | None) -> str | None:
    """KEYVAULT_SMTP_URL, checked now so a typo stops start-up rather than every mail."""
    if raw is None or not raw.strip():
        return None
    try:
        parse_url(raw)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return raw.strip()


def load(instance_path: Path, env: dict | None = None) -> dict:
    """The app's configuration as a dict for app.config."""
    env = dict(os.environ if env is None else env)
    environment = env.get("KEYVAULT_ENV", "development").strip() or "development"
    if environment not in ENVIRONMENTS:
        # A typo such as "prod" must not quietly run with generated secrets and plain cookies.
        raise ConfigError(f"KEYVAULT_ENV must be one of {', '.join(ENVIRONMENTS)}, "
                          f"got {environment!r}")
    production = environment == "production"

    secret_key = env.get("KEYVAULT_SECRET_KEY") or None
    pepper = env.get("KEYVAULT_KEY_PEPPER") or None
    if production:
        for name, value in (("KEYVAULT_SECRET_KEY", secret_key), ("KEYVAULT_KEY_PEPPER", pepper)):
            if not value:
                raise ConfigError(f"{name} must be set when KEYVAULT_ENV=production")
    secret_key = secret_key or _instance_secret(instance_path, "secret_key")
    pepper = pepper or _instance_secret(instance_path, "key_pepper")

    prefix = env.get("KEYVAULT_KEY_PREFIX", tokens.DEFAULT_PREFIX)
    if not tokens.is_valid_prefix(prefix):
        raise ConfigError(f"KEYVAULT_KEY_PREFIX must be letters and digits only, got {prefix!r}")

    database_url = env.get("KEYVAULT_DATABASE_URL")
    if not database_url:
        _make_instance_folder(instance_path)
        database_url = f"sqlite:///{instance_path / 'keyvault.db'}"
    elif database_url.startswith("postgresql") and importlib.util.find_spec("psycopg") is None:
        raise ConfigError("KEYVAULT_DATABASE_URL names PostgreSQL, whose driver is not installed: "
                          "pip install 'keyvault[postgres]'")
    scopes, scope_descriptions = parse_scope_catalogue(env.get("KEYVAULT_SCOPES"))
    max_body = _int(env, "KEYVAULT_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
    csrf_minutes = _int(env, "KEYVAULT_CSRF_MINUTES", 12 * 60, minimum=1)
    base_url = _base_url(env.get("KEYVAULT_BASE_URL"))

    return {
        "KEYVAULT_ENV": environment,
        "SECRET_KEY": secret_key,
        "KEYVAULT_KEY_PEPPER": pepper,
        "KEYVAULT_KEY_PREFIX": prefix,
        "KEYVAULT_SCOPES": scopes,
        "KEYVAULT_SCOPE_DESCRIPTIONS": scope_descriptions,
        "KEYVAULT_MAX_KEYS_PER_USER": _int(env, "KEYVAULT_MAX_KEYS_PER_USER", 10, minimum=1),
        "KEYVAULT_MAX_KEYS_PER_SERVICE_ACCOUNT": _int(env, "KEYVAULT_MAX_KEYS_PER_SERVICE_ACCOUNT",
                                                      10, minimum=1),
        "KEYVAULT_MAX_KEY_LIFETIME_DAYS": _int(env, "KEYVAULT_MAX_KEY_LIFETIME_DAYS", None, 1),
        "KEYVAULT_SUDO_MINUTES": _int(env, "KEYVAULT_SUDO_MINUTES", 120, minimum=1),
        "KEYVAULT_LOGIN_MAX_FAILURES": _int(env, "KEYVAULT_LOGIN_MAX_FAILURES", 10),
        # Administrators without a second factor are sent to set one up after logging in and may
        # use no admin or settings page but that until they have (web.enrolment_required).
        "KEYVAULT_REQUIRE_2FA_FOR_ADMINS": _flag(env, "KEYVAULT_REQUIRE_2FA_FOR_ADMINS", False),
        # Sign-up mails a confirmation link and says the same for taken and free addresses
        # (service.signups); off, sign-up logs the person in at once, as `make run` wants.
        "KEYVAULT_REQUIRE_EMAIL_CONFIRMATION": _flag(env, "KEYVAULT_REQUIRE_EMAIL_CONFIRMATION",
                                                     production),
        "KEYVAULT_TRUSTED_PROXIES": _int(env, "KEYVAULT_TRUSTED_PROXIES", 0),
        "KEYVAULT_DATABASE_TIMEOUT": _int(env, "KEYVAULT_DATABASE_TIMEOUT", 2, minimum=1),
        "KEYVAULT_BODY_TIMEOUT": _int(env, "KEYVAULT_BODY_TIMEOUT", 30, minimum=1),
        "KEYVAULT_LISTEN_SOCKETS": _choice(env, "KEYVAULT_LISTEN_SOCKETS", "auto",
                                           ("auto", "per-worker", "shared")),
        "KEYVAULT_PIN_WORKERS": _choice(env, "KEYVAULT_PIN_WORKERS", "auto", ("auto", "off")),
        "KEYVAULT_LOG_FORMAT": _log_format(env, production),
        "KEYVAULT_RATELIMIT_STORAGE_URL": _ratelimit_storage(env),
        **_rate_limits(env),
        "KEYVAULT_USAGE_FLUSH_SECONDS": _int(env, "KEYVAULT_USAGE_FLUSH_SECONDS", 5, minimum=1),
        # The revocation stream (GET /api/verify/events): a comment this often on a quiet
        # stream, and how often each worker reads the database's new events.
        "KEYVAULT_STREAM_HEARTBEAT_SECONDS": _int(env, "KEYVAULT_STREAM_HEARTBEAT_SECONDS", 15,
                                                  minimum=1),
        "KEYVAULT_STREAM_POLL_MS": _int(env, "KEYVAULT_STREAM_POLL_MS", 200, minimum=10),
        "KEYVAULT_ARGON2": {},
        # E-mail (service.mail): no SMTP URL means the log in development, nothing in production.
        "KEYVAULT_SMTP_URL": _smtp_url(env.get("KEYVAULT_SMTP_URL")),
        "KEYVAULT_MAIL_FROM": env.get("KEYVAULT_MAIL_FROM", "").strip()
        or "KeyVault <keyvault@localhost>",
        "KEYVAULT_MAIL_SEND_SECONDS": _int(env, "KEYVAULT_MAIL_SEND_SECONDS", 5),
        "KEYVAULT_MAIL_MAX_ATTEMPTS": _int(env, "KEYVAULT_MAIL_MAX_ATTEMPTS", 8, minimum=1),
        "KEYVAULT_MAIL_RETRY_SECONDS": _int(env, "KEYVAULT_MAIL_RETRY_SECONDS", 60, minimum=1),
        "KEYVAULT_MAIL_LEASE_SECONDS": _int(env, "KEYVAULT_MAIL_LEASE_SECONDS", 300, minimum=1),
        # Webhooks (service.webhook_delivery): private, loopback and link-local addresses are
        # refused unless allowed (development allows them, so a receiver on this machine
        # works); production also takes https URLs only. Cloud metadata addresses never.
        "KEYVAULT_WEBHOOK_ALLOW_PRIVATE": _flag(env, "KEYVAULT_WEBHOOK_ALLOW_PRIVATE",
                                                not production),
        "KEYVAULT_WEBHOOK_SEND_SECONDS": _int(env, "KEYVAULT_WEBHOOK_SEND_SECONDS", 1),
        "KEYVAULT_WEBHOOK_LEASE_SECONDS": _int(env, "KEYVAULT_WEBHOOK_LEASE_SECONDS", 60,
                                               minimum=1),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "MAX_CONTENT_LENGTH": max_body,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": production,
        "KEYVAULT_BASE_URL": base_url,
        "KEYVAULT_DEVELOPMENT_URL": _development_url(env, production, base_url),
        # Passkeys (service.passkeys): the origin is KEYVAULT_BASE_URL's, so production needs
        # that set (over HTTPS); development without it uses the host each request came to.
        "KEYVAULT_WEBAUTHN_RP_ID": _webauthn_rp_id(env.get("KEYVAULT_WEBAUTHN_RP_ID"), base_url),
        "KEYVAULT_SECRET_SCANNING_KEYS": _secret_scanning_keys(
            env.get("KEYVAULT_SECRET_SCANNING_KEYS")),
        # A form's token works for this long after the page was shown (errors.py: a friendly
        # "form expired" page; nothing is done).
        "KEYVAULT_CSRF_MINUTES": csrf_minutes,
        "WTF_CSRF_TIME_LIMIT": csrf_minutes * 60,
        "WTF_CSRF_SSL_STRICT": production,
    }
