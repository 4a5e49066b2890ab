"""keyvault-client installs into a fresh virtual environment on its own: httpx and nothing of the
server (no Flask, no SQLAlchemy), and it imports and runs there."""

from __future__ import annotations

import os
import subprocess
import venv

from tests.conftest import PROJECT_ROOT

CLIENT = PROJECT_ROOT / "clients" / "python"


def test_installs_and_imports_in_a_fresh_venv(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}

    def run(*args: str) -> subprocess.CompletedProcess:
        # From tmp_path, so that no source folder on the current directory shadows the install.
        return subprocess.run(args, cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=240)

    installed = run(str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    str(CLIENT))
    assert installed.returncode == 0, installed.stderr
    probe = run(str(python), "-c", "\n".join([
        "import importlib.util, keyvault_client",
        "from keyvault_client import KeyVaultClient, AsyncKeyVaultClient, is_well_formed",
        "import keyvault_client.wsgi, keyvault_client.asgi",  # framework-free guards
        "assert 'site-packages' in keyvault_client.__file__, keyvault_client.__file__",
        "missing = [m for m in ('flask', 'sqlalchemy', 'keyvault', 'starlette')",
        "           if importlib.util.find_spec(m) is not None]",
        "assert missing == [], missing",
        "KeyVaultClient('http://127.0.0.1:1', 'kv_service').close()",
        "print('imported')",
    ]))
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "imported"
    # The Flask guard needs the flask extra: without it, the import says so plainly.
    flask_guard = run(str(python), "-c", "import keyvault_client.flask")
    assert "No module named 'flask'" in flask_guard.stderr
    script = run(str(env_dir / "bin" / "keyvault-client"), "verify", "--help")
    assert script.returncode == 0 and "--service-key" in script.stdout
