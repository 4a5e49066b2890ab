"""`keyvault-client verify`, run as a subprocess: JSON on stdout, and the exit-status table it
shares with `keyvault` (README, "Exit status"): 0 active, 1 not active, 2 usage, 3 KeyVault
unreachable, 4 no verdict for another reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keyvault import tokens
from tests.client.conftest import OTHER_SCOPE, SCOPE

COMMAND = str(Path(sys.executable).parent / "keyvault-client")


def run(*args: str, env: dict | None = None, stdin: str = "") -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KEYVAULT_")}
    return subprocess.run([COMMAND, *args], env={**clean, **(env or {})}, input=stdin,
                          capture_output=True, text=True, timeout=30)


@pytest.fixture
def at(live_server, service_key) -> list[str]:
    return ["--url", live_server.url, "--service-key", service_key]


def test_active_key_exits_0_with_the_answer(at, keys):
    done = run("verify", keys.valid, "--scope", SCOPE, *at)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert (answer["active"], answer["code"], answer["user"]["email"]) == (True, "valid", "alice@example.com")
    assert answer["scopes"] == [SCOPE]


@pytest.mark.parametrize(("state", "scopes", "code"), [
    ("revoked", [], "revoked"),
    ("expired", [], "expired"),
    ("unknown", [], "not_found"),
    ("valid", [SCOPE, OTHER_SCOPE], "insufficient_scope"),
])
def test_inactive_key_exits_1_with_its_code(at, keys, state, scopes, code):
    scope_args = [arg for scope in scopes for arg in ("--scope", scope)]
    done = run("verify", getattr(keys, state), *scope_args, *at)
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout) == {"active": False, "code": code}


def test_malformed_key_exits_1_without_asking(down_url):
    """Answered locally: even with KeyVault down the verdict is `malformed`."""
    done = run("verify", "kv_" + "A" * 46, "--url", down_url, "--service-key", "kv_service")
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout) == {"active": False, "code": "malformed"}


def test_configuration_from_the_environment_and_the_key_from_stdin(live_server, service_key, keys):
    done = run("verify", "-", stdin=keys.valid + "\n",
               env={"KEYVAULT_URL": live_server.url, "KEYVAULT_SERVICE_KEY": service_key})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["active"] is True


def test_keyvault_down_exits_3(down_url):
    done = run("verify", tokens.generate(), "--url", down_url, "--service-key", "kv_service")
    assert done.returncode == 3
    assert done.stdout == ""
    assert "unreachable" in done.stderr


def test_keyvault_too_slow_exits_3(silent_server):
    done = run("verify", tokens.generate(), "--url", silent_server.url, "--service-key", "kv_service",
               "--timeout", "0.3")
    assert done.returncode == 3
    assert "timed out" in done.stderr


def test_rejected_service_key_exits_4(live_server, keys):
    done = run("verify", keys.valid, "--url", live_server.url, "--service-key", tokens.generate())
    assert done.returncode == 4
    assert done.stdout == ""
    assert "401" in done.stderr


@pytest.mark.parametrize("args", [
    ["verify", "kv_x"],  # no URL
    ["verify", "kv_x", "--url", "http://127.0.0.1:1"],  # no service key
    ["verify"],  # no key
    ["frobnicate"],
    ["verify", "kv_x", "--url", "http://127.0.0.1:1", "--service-key", "kv_y", "--cost", "-1"],
    ["verify", "kv_x", "--url", "http://127.0.0.1:1", "--service-key", "kv_y", "--cost", "1.5"],
    ["verify", "kv_x", "--url", "http://127.0.0.1:1", "--service-key", "kv_y", "--cost", "1001"],
])
def test_usage_errors_exit_2_as_keyvaults_do(args):
    """A wrong command line is 2, as for `keyvault` (click) and most Unix tools."""
    done = run(*args)
    assert done.returncode == 2
    assert "error" in done.stderr
    assert done.stdout == ""


def test_help_states_the_exit_status_table():
    done = run("--help")
    assert done.returncode == 0
    assert ("Exit status: 0 active, 1 not active, 2 usage, 3 KeyVault unreachable"
            in " ".join(done.stdout.split()))
