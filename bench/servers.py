"""The servers under test, started as operators start them, and their workers' memory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def worker_pids(self) -> list[int]:
        """gunicorn's workers: the children of the master, which is the process we started."""
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
            if int(stat.rpartition(")")[2].split()[1]) == self.process.pid:
                children.append(int(entry.name))
        return sorted(children)

    def worker_rss_mib(self) -> list[float]:
        return [rss for pid in self.worker_pids() if (rss := rss_mib(pid)) is not None]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # gunicorn: graceful shutdown of master and workers
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _start(name: str, argv: list[str], env: dict, log_path: Path, workers: int) -> Server:
    port = free_port()
    argv = [*argv, "--port", str(port), "--workers", str(workers)]
    # gunicorn's access log goes to stdout under `keyvault serve`: both servers send it to a file.
    log = open(log_path, "w")  # noqa: SIM115 - the child holds it open, we close our copy below
    try:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=PROJECT_ROOT)
    finally:
        log.close()
    server = Server(name, f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url + "/healthz", timeout=2) as response:
                if response.status == 200 and len(server.worker_pids()) >= workers:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{name} did not become ready:\n{server.log_tail()}")


def start_keyvault(env: dict, log_path: Path, workers: int) -> Server:
    """Exactly `keyvault serve --port P --workers W`: KeyVault's gunicorn defaults."""
    return _start("keyvault", [sys.executable, "-m", "keyvault.cli", "serve"], env, log_path,
                  workers)


def start_ceiling(env: dict, log_path: Path, workers: int) -> Server:
    """bench/ceiling_app.py under the same gunicorn options and application class."""
    return _start("ceiling", [sys.executable, "-m", "bench.ceiling_app"], env, log_path, workers)


def start_django(env: dict, log_path: Path, workers: int) -> Server:
    """bench/django_baseline under the same gunicorn options and application class; env from
    django_env (its settings module, its database)."""
    return _start("django", [sys.executable, "-m", "bench.django_baseline"], env, log_path,
                  workers)


def django_env(base: dict, database_url: str, secret_key: str) -> dict:
    """The Django baseline's environment: its settings module and its database, from the SQLAlchemy
    URL of a database.create_database (a SQLite file, or a PostgreSQL database)."""
    from .django_baseline import (
        CONNECTION_ENV,
        DATABASE_ENV,
        ENGINE_ENV,
        OPTIONS_ENV,
        SECRET_KEY_ENV,
        SETTINGS_MODULE,
    )

    url = make_url(database_url)
    env = {**base, "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE, SECRET_KEY_ENV: secret_key,
           DATABASE_ENV: url.database or ""}
    for name in (*CONNECTION_ENV.values(), OPTIONS_ENV):
        env.pop(name, None)  # nothing inherited from the caller's environment
    backend = url.get_backend_name()
    if backend == "sqlite":
        return env | {ENGINE_ENV: "sqlite"}
    if backend != "postgresql":
        raise ValueError(f"the Django baseline runs on SQLite or PostgreSQL, not {backend}")
    options = {}
    for key, value in url.query.items():
        if not isinstance(value, str):  # ?a=1&a=2: libpq takes one value per parameter
            raise SystemExit(f"--database-url: {key} is given more than once")
        options[key] = value
    settings = {"HOST": url.host, "PORT": url.port, "USER": url.username,
                "PASSWORD": url.password}
    return env | {ENGINE_ENV: "postgresql", OPTIONS_ENV: json.dumps(options)} | {
        CONNECTION_ENV[setting]: "" if value is None else str(value)
        for setting, value in settings.items()}


def server_env(database_url: str, secret_key: str, pepper: str, instance_dir: Path) -> dict:
    return {**os.environ, "KEYVAULT_DATABASE_URL": database_url,
            "KEYVAULT_SECRET_KEY": secret_key, "KEYVAULT_KEY_PEPPER": pepper,
            "KEYVAULT_INSTANCE_PATH": str(instance_dir)}
