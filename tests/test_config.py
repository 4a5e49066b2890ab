"""Configuration from KEYVAULT_* variables: defaults, first-run secrets, and refusals."""

from __future__ import annotations

import stat
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from keyvault import config, create_app
from keyvault.config import ConfigError

SECRETS = {"KEYVAULT_SECRET_KEY": "s" * 40, "KEYVAULT_KEY_PEPPER": "p" * 40}


@pytest.mark.parametrize("missing", ["KEYVAULT_SECRET_KEY", "KEYVAULT_KEY_PEPPER"])
def test_production_without_a_secret_refuses_to_start(tmp_path, missing):
    """KEYVAULT_ENV=production with a secret missing is an error naming that variable."""
    env = {"KEYVAULT_ENV": "production", **SECRETS}
    del env[missing]
    with pytest.raises(ConfigError, match=missing):
        config.load(tmp_path, env)
    assert not (tmp_path / "secret_key").exists()
    assert not (tmp_path / "key_pepper").exists()


@pytest.mark.parametrize("missing", ["KEYVAULT_SECRET_KEY", "KEYVAULT_KEY_PEPPER"])
def test_create_app_in_production_without_a_secret_refuses(tmp_path, monkeypatch, missing):
    """The app factory itself refuses, so `keyvault serve` cannot start half-configured."""
    monkeypatch.setenv("KEYVAULT_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("KEYVAULT_ENV", "production")
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(missing)
    with pytest.raises(ConfigError, match=missing):
        create_app()


def test_production_with_secrets_uses_them_and_secure_cookies(tmp_path):
    """Given both secrets, production uses them and marks cookies Secure."""
    loaded = config.load(tmp_path, {"KEYVAULT_ENV": "production", **SECRETS})
    assert loaded["SECRET_KEY"] == SECRETS["KEYVAULT_SECRET_KEY"]
    assert loaded["KEYVAULT_KEY_PEPPER"] == SECRETS["KEYVAULT_KEY_PEPPER"]
    assert loaded["SESSION_COOKIE_SECURE"] is True
    assert list(tmp_path.iterdir()) == []  # nothing generated


def test_first_run_generates_owner_only_secrets_and_reuses_them(tmp_path):
    """Without variables, a secret key and a pepper are made once under instance/ (mode 0600)."""
    instance = tmp_path / "instance"
    first = config.load(instance, {})
    for name in ("secret_key", "key_pepper"):
        path = instance / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
        assert len(path.read_text().strip()) >= 32
    assert first["SECRET_KEY"] == (instance / "secret_key").read_text().strip()
    assert first["KEYVAULT_KEY_PEPPER"] == (instance / "key_pepper").read_text().strip()
    assert first["SECRET_KEY"] != first["KEYVAULT_KEY_PEPPER"]

    second = config.load(instance, {})
    assert second["SECRET_KEY"] == first["SECRET_KEY"]
    assert second["KEYVAULT_KEY_PEPPER"] == first["KEYVAULT_KEY_PEPPER"]


def test_first_run_defaults_to_sqlite_under_instance(tmp_path):
    """With nothing set the database is SQLite in instance/ and cookies are not Secure."""
    loaded = config.load(tmp_path, {})
    assert loaded["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'keyvault.db'}"
    assert loaded["KEYVAULT_ENV"] == "development"
    assert loaded["SESSION_COOKIE_SECURE"] is False
    assert loaded["SESSION_COOKIE_HTTPONLY"] is True
    assert loaded["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert loaded["KEYVAULT_KEY_PREFIX"] == "kv"
    assert loaded["KEYVAULT_MAX_KEYS_PER_USER"] == 10
    assert loaded["KEYVAULT_LOGIN_MAX_FAILURES"] == 10


def test_create_app_first_run_writes_instance_secrets(tmp_path, monkeypatch):
    """The factory with no variables at all just works, making the instance secrets."""
    monkeypatch.setenv("KEYVAULT_INSTANCE_PATH", str(tmp_path))
    for name in (*SECRETS, "KEYVAULT_ENV", "KEYVAULT_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    app = create_app()
    assert app.config["SECRET_KEY"] == (tmp_path / "secret_key").read_text().strip()
    assert app.config["KEYVAULT_KEY_PEPPER"] == (tmp_path / "key_pepper").read_text().strip()


def test_an_empty_instance_secret_file_is_an_error(tmp_path):
    """A truncated secret file is reported, never silently replaced (that would void every key)."""
    (tmp_path / "key_pepper").write_text("")
    with pytest.raises(ConfigError, match="key_pepper"):
        config.load(tmp_path, {"KEYVAULT_SECRET_KEY": "s" * 40})


@pytest.mark.parametrize(("name", "value"), [
    ("KEYVAULT_KEY_PREFIX", "k_v"),
    ("KEYVAULT_KEY_PREFIX", "kv-live"),
    ("KEYVAULT_KEY_PREFIX", "ké"),
    ("KEYVAULT_MAX_KEYS_PER_USER", "ten"),
    ("KEYVAULT_MAX_KEYS_PER_USER", "2.5"),
    ("KEYVAULT_MAX_KEYS_PER_USER", "0"),
    ("KEYVAULT_MAX_BODY_BYTES", "1MB"),
    ("KEYVAULT_LOGIN_MAX_FAILURES", "-1"),
    ("KEYVAULT_LOGIN_MAX_FAILURES", "ten"),
    ("KEYVAULT_SCOPES", "feature_flag"),
    ("KEYVAULT_SCOPES", "a:b:c"),
    ("KEYVAULT_SCOPES", "a:b="),
    ("KEYVAULT_SCOPES", "a:b=" + "x" * 201),
    ("KEYVAULT_SCOPES", "a b:c=words"),
    ("KEYVAULT_USAGE_FLUSH_SECONDS", "0"),
    ("KEYVAULT_USAGE_FLUSH_SECONDS", "soon"),
    ("KEYVAULT_SECRET_SCANNING_KEYS", "http://keys.example.com/public_keys"),
    ("KEYVAULT_SECRET_SCANNING_KEYS", "ftp://keys.example.com/public_keys"),
    ("KEYVAULT_SECRET_SCANNING_KEYS", "/no/such/public_keys.json"),
    ("KEYVAULT_LISTEN_SOCKETS", "reuseport"),
    ("KEYVAULT_PIN_WORKERS", "on"),
])
def test_bad_values_are_errors_naming_the_variable(tmp_path, name, value):
    """A value KeyVault cannot use stops start-up with the variable's name in the message."""
    with pytest.raises(ConfigError, match=name):
        config.load(tmp_path, {**SECRETS, name: value})


@pytest.mark.parametrize(("name", "value", "key", "expected"), [
    ("KEYVAULT_KEY_PREFIX", "acme", "KEYVAULT_KEY_PREFIX", "acme"),
    ("KEYVAULT_MAX_KEYS_PER_USER", "3", "KEYVAULT_MAX_KEYS_PER_USER", 3),
    ("KEYVAULT_MAX_KEYS_PER_USER", " ", "KEYVAULT_MAX_KEYS_PER_USER", 10),
    ("KEYVAULT_MAX_BODY_BYTES", "4096", "MAX_CONTENT_LENGTH", 4096),
    ("KEYVAULT_DATABASE_URL", "postgresql+psycopg://u@h/d", "SQLALCHEMY_DATABASE_URI",
     "postgresql+psycopg://u@h/d"),
    ("KEYVAULT_SECRET_SCANNING_KEYS", "https://api.github.com/meta/public_keys/secret_scanning",
     "KEYVAULT_SECRET_SCANNING_KEYS", "https://api.github.com/meta/public_keys/secret_scanning"),
    ("KEYVAULT_SECRET_SCANNING_KEYS", "http://127.0.0.1:8080/keys",
     "KEYVAULT_SECRET_SCANNING_KEYS", "http://127.0.0.1:8080/keys"),
    ("KEYVAULT_SECRET_SCANNING_KEYS", "", "KEYVAULT_SECRET_SCANNING_KEYS", None),
    ("KEYVAULT_LISTEN_SOCKETS", " Per-Worker ", "KEYVAULT_LISTEN_SOCKETS", "per-worker"),
    ("KEYVAULT_LISTEN_SOCKETS", "", "KEYVAULT_LISTEN_SOCKETS", "auto"),
    ("KEYVAULT_PIN_WORKERS", " OFF ", "KEYVAULT_PIN_WORKERS", "off"),
    ("KEYVAULT_PIN_WORKERS", "", "KEYVAULT_PIN_WORKERS", "auto"),
])
def test_good_values_are_used(tmp_path, name, value, key, expected):
    """Valid variables end up in the app's configuration."""
    assert config.load(tmp_path, {**SECRETS, name: value})[key] == expected


def test_scopes_variable_adds_to_the_catalogue(tmp_path):
    """KEYVAULT_SCOPES adds services' scopes after KeyVault's own, without duplicates."""
    loaded = config.load(tmp_path, {**SECRETS,
                                    "KEYVAULT_SCOPES": " feature_flag:read, insight:write,,"
                                                       "user:read"})
    assert loaded["KEYVAULT_SCOPES"] == (
        "personal_api_key:read", "personal_api_key:write", "user:read", "key:verify",
        "metrics:read", "organization:read", "organization:write", "webhook:read",
        "webhook:write", "feature_flag:read", "insight:write",
    )
    assert config.load(tmp_path, SECRETS)["KEYVAULT_SCOPES"] == config.DEFAULT_SCOPES


def test_scopes_may_carry_descriptions(tmp_path):
    """An entry may be `scope=what it lets a key do`; one per line, a description may hold
    commas. Entries without one are as before."""
    loaded = config.load(tmp_path, {**SECRETS, "KEYVAULT_SCOPES":
                                    "feature_flag:read=See which flags are on, insight:write"})
    assert loaded["KEYVAULT_SCOPES"][-2:] == ("feature_flag:read", "insight:write")
    assert loaded["KEYVAULT_SCOPE_DESCRIPTIONS"] == {"feature_flag:read": "See which flags are on"}
    lines = config.load(tmp_path, {**SECRETS, "KEYVAULT_SCOPES": (
        "feature_flag:read = See flags, their rules and their history,\n"
        "billing:write=Change   the plan\n\n"
        "insight:read\n")})
    assert lines["KEYVAULT_SCOPES"][-3:] == ("feature_flag:read", "billing:write", "insight:read")
    assert lines["KEYVAULT_SCOPE_DESCRIPTIONS"] == {
        "feature_flag:read": "See flags, their rules and their history",
        "billing:write": "Change the plan"}
    assert config.load(tmp_path, SECRETS)["KEYVAULT_SCOPE_DESCRIPTIONS"] == {}


def test_every_built_in_scope_is_described(app):
    """KeyVault's own scopes and `*` have built-in words; others get a reading of the name."""
    from keyvault.service import scopes

    for scope in (*scopes.BUILT_IN, scopes.FULL_ACCESS):
        assert scopes.describe(scope) == scopes.DESCRIPTIONS[scope]
    assert scopes.describe("report:read") == "Read report"
    assert scopes.describe("report_page:write") == "Change report page (and read it)"
    assert scopes.describe("deploy:run") == "Run deploy"


def test_added_scopes_can_be_granted(make_app, make_user):
    """A scope from KEYVAULT_SCOPES can be put on a key; one outside the catalogue cannot."""
    from keyvault import service

    app = make_app(KEYVAULT_SCOPES="feature_flag:read")
    with app.app_context():
        owner = make_user()
        key, _ = service.create_key(owner, label="flags", scopes=["feature_flag:read"],
                                    origin=service.Origin())
        assert key.scopes == ["feature_flag:read"]
        with pytest.raises(service.InvalidInput, match="insight:read"):
            service.create_key(owner, label="x", scopes=["insight:read"], origin=service.Origin())


@pytest.mark.parametrize("environment", ["prod", "Production", "staging"])
def test_an_unknown_environment_is_refused_by_name(tmp_path, environment):
    """A typo must not quietly run production with generated secrets and non-Secure cookies."""
    with pytest.raises(ConfigError, match="KEYVAULT_ENV"):
        config.load(tmp_path, {"KEYVAULT_ENV": environment})


def test_racing_first_starts_share_one_complete_secret(tmp_path):
    """Processes starting together all read the same, whole secret (no empty file)."""
    with ProcessPoolExecutor(4) as pool:
        secrets_seen = set(pool.map(_first_run_secret, [str(tmp_path)] * 8))
    assert len(secrets_seen) == 1 and all(len(s) > 40 for s in secrets_seen)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key_pepper", "secret_key"]


def _first_run_secret(folder: str) -> str:
    return config.load(Path(folder), {})["SECRET_KEY"]


@pytest.mark.parametrize("secrets_from", ["instance", "environment"])
def test_a_new_instance_folder_is_private(tmp_path, secrets_from):
    """The folder KeyVault makes for its secrets and embedded database is the owner's alone
    (SQLite creates the database file with the umask's 0644); an existing one is left as is."""
    env = {} if secrets_from == "instance" else {
        "KEYVAULT_SECRET_KEY": "s" * 40, "KEYVAULT_KEY_PEPPER": "p" * 40}
    fresh = tmp_path / "deep" / "instance"
    config.load(fresh, env)
    assert fresh.stat().st_mode & 0o777 == 0o700

    existing = tmp_path / "existing"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    config.load(existing, env)
    assert existing.stat().st_mode & 0o777 == 0o755


def test_postgresql_without_its_driver_names_the_extra(tmp_path, monkeypatch):
    """SQLite needs no driver; a PostgreSQL URL without psycopg installed is a start-up error
    that says which extra to install."""
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "psycopg" else real_find_spec(name, *args))
    with pytest.raises(ConfigError, match=r"keyvault\[postgres\]"):
        config.load(tmp_path, {"KEYVAULT_DATABASE_URL": "postgresql+psycopg://u@h/d"})
    assert config.load(tmp_path, {})["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")
