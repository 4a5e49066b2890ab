"""The wheel is a complete KeyVault: templates, static files and migrations ship inside it."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from tests.conftest import PROJECT_ROOT

# What a checkout has that is not the project (or is made by building and testing it).
NOT_SOURCE = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "instance",
                                    "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis",
                                    "test-results", "bench")
# Top-level folder in the checkout -> where the wheel must carry it.
SHIPPED_FOLDERS = {"templates": "keyvault/templates", "static": "keyvault/static",
                   "migrations": "keyvault/migrations"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """`pip wheel` of a clean copy of the checkout (no stale build/ folder can leak in)."""
    source = tmp_path_factory.mktemp("source") / "keyvault"
    shutil.copytree(PROJECT_ROOT, source, ignore=NOT_SOURCE)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                    "--disable-pip-version-check", "-w", str(out), str(source)],
                   check=True, capture_output=True, text=True, timeout=300)
    (built,) = out.glob("keyvault-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel_names(wheel) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def source_files(folder: str) -> list[str]:
    root = PROJECT_ROOT / folder
    return sorted(str(path.relative_to(root)) for path in root.rglob("*")
                  if path.is_file() and "__pycache__" not in path.parts)


@pytest.mark.parametrize("path", [
    "keyvault/templates/base.html",
    "keyvault/templates/settings/api_keys.html",
    "keyvault/templates/auth/login.html",
    "keyvault/templates/errors/error.html",
    "keyvault/static/js/app.js",
    "keyvault/static/css/app.css",
    "keyvault/migrations/env.py",
    "keyvault/migrations/alembic.ini",
    "keyvault/migrations/script.py.mako",
    "keyvault/confusables.txt",  # keyvault/mailbox.py reads it
])
def test_wheel_contains(wheel_names, path):
    """The files the app opens at run time are in the wheel, inside the package."""
    assert path in wheel_names


@pytest.mark.parametrize("folder", sorted(SHIPPED_FOLDERS))
def test_wheel_carries_every_file_of(wheel_names, folder):
    """Nothing in templates/, static/ or migrations/ (every revision included) is left behind."""
    files = source_files(folder)
    assert files
    missing = [name for name in files if f"{SHIPPED_FOLDERS[folder]}/{name}" not in wheel_names]
    assert missing == []


def test_wheel_installs_only_the_keyvault_package(wheel_names):
    """No stray top-level folders (templates/, tests/, ...) land in site-packages."""
    tops = {name.split("/", 1)[0] for name in wheel_names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"keyvault"}


CHECK_INSTALLED_APP = """
import json, keyvault
from keyvault import create_app
app = create_app()
client = app.test_client()
login = client.get("/login")
script = client.get("/static/js/app.js")
print(json.dumps({
    "package": keyvault.__file__, "templates": app.template_folder, "static": app.static_folder,
    "login_status": login.status_code, "login": login.get_data(as_text=True),
    "script_status": script.status_code,
}))
"""


def test_installed_wheel_migrates_and_serves(wheel, tmp_path):
    """Installed from the wheel alone (no checkout in sight), `keyvault db upgrade` builds the
    schema and the app renders its pages from the templates and static files the wheel carries."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet",
                    "--disable-pip-version-check", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, text=True, timeout=120)
    database = tmp_path / "fresh.db"
    # `-S` and the environment's packages on PYTHONPATH: the checkout's editable install hooks
    # in through a .pth file, and would quietly supply any module the wheel left out.
    site_packages = sysconfig.get_paths()["purelib"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), site_packages]),
           "PYTHONNOUSERSITE": "1",
           "KEYVAULT_DATABASE_URL": f"sqlite:///{database}",
           "KEYVAULT_INSTANCE_PATH": str(tmp_path / "instance")}
    env.pop("KEYVAULT_TEST_DATABASE_URL", None)
    run = {"env": env, "cwd": tmp_path, "capture_output": True, "text": True, "timeout": 60}

    assert (target / "bin" / "keyvault").is_file()  # the console script ships too
    upgrade = subprocess.run([sys.executable, "-S", "-m", "keyvault", "db", "upgrade"],
                             check=False, **run)
    assert upgrade.returncode == 0, upgrade.stderr
    head = ScriptDirectory(str(PROJECT_ROOT / "migrations")).get_current_head()
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"users", "api_keys", "security_events"} <= tables

    served = subprocess.run([sys.executable, "-S", "-c", CHECK_INSTALLED_APP], check=False,
                            **run)
    assert served.returncode == 0, served.stderr
    result = json.loads(served.stdout.strip().splitlines()[-1])
    for where in ("package", "templates", "static"):
        assert Path(result[where]).is_relative_to(target), (where, result[where])
    assert result["login_status"] == 200
    assert 'name="csrf_token"' in result["login"] and 'name="password"' in result["login"]
    assert result["script_status"] == 200
