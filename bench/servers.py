"""The servers under test, started as operators start them, and their workers' memory.

Every gunicorn in bench/ is started by `start_gunicorn` (its command line by `gunicorn_argv`).
"""

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


# How each kind of server arranges its processes (Server.worker_pids):
# - "gunicorn": a master that forks its workers; the workers are its children;
# - "granian": a main process that starts its workers through multiprocessing (fork on Linux,
#   each worker a child with the main process's command line); any multiprocessing helper
#   process (resource tracker, forkserver) is not a worker;
# - "single": one process serves every request itself (waitress).
KINDS = ("gunicorn", "granian", "single")
_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen
    log_path: Path
    kind: str = "gunicorn"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def worker_pids(self) -> list[int]:
        """The processes that serve requests (see KINDS)."""
        if self.kind == "single":
            return [self.process.pid] if self.process.poll() is None else []
        workers = []
        for pid in children(self.process.pid):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue  # gone meanwhile
            if not any(helper.encode() in command for helper in _HELPERS):
                workers.append(pid)
        return workers

    def worker_rss_mib(self) -> list[float]:
        return [rss for pid in self.worker_pids() if (rss := rss_mib(pid)) is not None]

    def workers_started(self, workers: int) -> bool:
        """Every worker is up: `workers` of them exist, and (granian, which spawns a worker
        before it imports the app) each has logged that it started."""
        if len(self.worker_pids()) < workers:
            return False
        if self.kind != "granian":
            return True
        text = self.log_path.read_text(errors="replace")
        return all(f"Started worker-{number}\n" in text for number in range(1, workers + 1))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # gunicorn and granian: a graceful shutdown of all workers
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def children(parent: int) -> list[int]:
    """The processes whose parent is `parent`, from /proc/<pid>/stat."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        if int(stat.rpartition(")")[2].split()[1]) == parent:
            found.append(int(entry.name))
    return sorted(found)


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def launch(name: str, argv: list[str], env: dict, log_path: Path, workers: int, port: int,
           kind: str, timeout: float = 60) -> Server:
    """Start `argv` (already bound to `port`), its stdout and stderr to `log_path`, and wait
    until GET /healthz answers 200 and all its workers are up."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of server {kind!r}")
    log = open(log_path, "w")  # noqa: SIM115 - the child holds it open, we close our copy below
    try:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=PROJECT_ROOT)
    finally:
        log.close()
    server = Server(name, f"http://127.0.0.1:{port}", process, log_path, kind)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url + "/healthz", timeout=2) as response:
                if response.status == 200 and server.workers_started(workers):
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{name} did not become ready:\n{server.log_tail()}")


def gunicorn_argv(app: str, port: int, workers: int, worker_class: str = "sync",
                  threads: int | None = None) -> list[str]:
    """gunicorn as a typical Flask (or Django) user deploys it: `gunicorn -w W --worker-class
    sync MODULE:APP` on a port, every other setting at gunicorn's default (keep-alive 2 s, which
    sync workers ignore: they close each connection; timeout 30 s; no access log). The one place
    the benchmark's gunicorn command lines are built."""
    # --no-control-socket: gunicorn's control socket is one path per user (~/.gunicorn), and each
    # new instance takes it over (issue 10); several gunicorns run at once here, and other
    # people's on a shared machine. It has no part in serving a request.
    argv = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--worker-class", worker_class, "--no-control-socket"]
    if threads is not None:
        argv += ["--threads", str(threads)]
    return [*argv, app]


def start_gunicorn(name: str, app: str, env: dict, log_path: Path, workers: int,
                   worker_class: str = "sync", threads: int | None = None) -> Server:
    port = free_port()
    return launch(name, gunicorn_argv(app, port, workers, worker_class, threads), env, log_path,
                  workers, port, "gunicorn")


def start_keyvault(env: dict, log_path: Path, workers: int) -> Server:
    """Exactly `keyvault serve --port P --workers W`: granian, KeyVault's bridge, its default
    threads per worker, its access log on stdout."""
    port = free_port()
    argv = [sys.executable, "-m", "keyvault", "serve", "--port", str(port),
            "--workers", str(workers)]
    return launch("keyvault", argv, env, log_path, workers, port, "granian")


def start_ceiling(env: dict, log_path: Path, workers: int, access_log: bool = True,
                  name: str = "ceiling") -> Server:
    """bench/ceiling_app.py on KeyVault's own server (`keyvault.server.serve`, the same bridge,
    threads and, unless access_log is False, the same access log)."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.ceiling_app", "--port", str(port),
            "--workers", str(workers), *([] if access_log else ["--no-access-log"])]
    return launch(name, argv, env, log_path, workers, port, "granian")


def start_granian_wsgi(env: dict, log_path: Path, workers: int,
                       name: str = "granian-wsgi") -> Server:
    """bench/ceiling_app.py's app under granian's own WSGI interface, as its users start it
    (its defaults otherwise): what the server itself can do, without KeyVault's bridge."""
    port = free_port()
    argv = [sys.executable, "-m", "granian", "--interface", "wsgi", "--workers", str(workers),
            "--host", "127.0.0.1", "--port", str(port), "--http", "1", "--no-ws",
            "bench.ceiling_app:app"]
    return launch(name, argv, env, log_path, workers, port, "granian")


# The reference of issue 10: the do-nothing app under gunicorn with 2 sync workers.
REFERENCE_WORKERS = 2


def start_reference(env: dict, log_path: Path) -> Server:
    """bench/ceiling_app.py's app under plain gunicorn, 2 sync workers (gunicorn_argv)."""
    return start_gunicorn("reference", "bench.ceiling_app:app", env, log_path, REFERENCE_WORKERS)


def start_django(env: dict, log_path: Path, workers: int) -> Server:
    """bench/django_baseline under plain gunicorn sync workers (gunicorn_argv), as a Django user
    deploys it; env from django_env (its settings module, its database)."""
    return start_gunicorn("django", "bench.django_baseline.wsgi:application", env, log_path,
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
            "KEYVAULT_INSTANCE_PATH": str(instance_dir),
            # One caller key drives every verify here, far past the default quota: the limit
            # stays on (each call is counted, as in production) but is never reached.
            "KEYVAULT_RATELIMIT_VERIFY": "1000000000/minute",
            "KEYVAULT_RATELIMIT_API": "1000000000/minute"}
