"""The Makefile: `make run` installs only what running needs and listens where it is told;
`make test` adds the test tools. Read from `make -n -B` (what make would run from nothing)."""

from __future__ import annotations

import shutil
import subprocess

from tests.conftest import PROJECT_ROOT


def planned(*args: str) -> list[str]:
    """The commands `make` would run for a fresh checkout (-B: every target out of date)."""
    assert shutil.which("make"), "make is missing: apt-get install -y make"
    # --no-print-directory: under `make test` the inherited MAKEFLAGS would add
    # "make[1]: Entering directory" lines
    result = subprocess.run(["make", "--no-print-directory", "-n", "-B", *args], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=60, check=True)
    return result.stdout.splitlines()


def installs(lines: list[str]) -> list[str]:
    return [line for line in lines if "pip install" in line and "--upgrade pip" not in line]


def test_make_run_installs_no_test_tools():
    """Running needs KeyVault and at most the PostgreSQL driver: no test extra, no client."""
    lines = planned("run")
    assert installs(lines) == [".venv/bin/python -m pip install --quiet -e '.[postgres]'"]
    assert not any("test" in line for line in installs(lines))


def test_make_run_listens_on_port_and_host():
    """5000 on 127.0.0.1 unless PORT= and HOST= say otherwise."""
    assert planned("run")[-1].endswith("serve --host 127.0.0.1 --port 5000 --workers 2")
    moved = planned("run", "PORT=8123", "HOST=0.0.0.0")
    assert moved[-1].endswith("serve --host 0.0.0.0 --port 8123 --workers 2")
    assert ".venv/bin/keyvault db upgrade" in moved


def test_make_run_prints_the_address_to_open():
    """localhost, where passkeys work (browsers refuse them at 127.0.0.1), with the port."""
    assert "KeyVault: open http://localhost:5000/ in your browser" in planned("run")[-2]
    assert "http://localhost:8123/" in planned("run", "PORT=8123", "HOST=0.0.0.0")[-2]
    assert "http://keys.lan:5000/" in planned("run", "HOST=keys.lan")[-2]


def test_make_test_adds_the_rest():
    """`make test` installs the test extra and the Python client on top, then runs pytest."""
    lines = planned("test", "PYTEST_ARGS=-q")
    assert ".venv/bin/python -m pip install --quiet -e '.[test,postgres]'" in installs(lines)
    assert ".venv/bin/python -m pip install --quiet -e 'clients/python'" in installs(lines)
    assert lines[-1] == ".venv/bin/python -m pytest -q"
