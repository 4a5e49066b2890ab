"""`python -m bench.events` (`make bench-events`): keyvault-client's verdict cache and the
revocation stream, against real `keyvault serve` instances.

1. In-process verify through the client: with a warm cache (`cache_seconds`) against uncached
   calls in the same run (p50/p99 µs, calls/s on one core).
2. Revocation propagation: from the DELETE's answer (through one instance) to a cached client
   (on the other) refusing the key, over `--revocations` keys, while another client verifies at
   full speed. SQLite: one instance with two workers; PostgreSQL (--database-url): two.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from keyvault_client import KeyVaultClient

from keyvault import create_app, service
from keyvault.extensions import db

RESULTS = Path(__file__).parent / "results"
ORIGIN = service.Origin("127.0.0.1", "bench")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"p50": ordered[len(ordered) // 2], "p99": ordered[int(len(ordered) * 0.99) - 1],
            "n": len(ordered)}


def seed(env: dict, revocations: int) -> dict:
    from flask_migrate import upgrade

    app = create_app()
    with app.app_context():
        upgrade()
        person = service.sign_up("bench@example.com", "a long bench password", ORIGIN,
                                 confirmed=True)

        def key(label, scopes):
            return service.create_key(person, label=label, scopes=scopes, origin=ORIGIN)

        keys = {"verifier": key("verifier", ["key:verify"])[1],
                "manager": key("manager", ["personal_api_key:write"])[1],
                "busy": key("busy", ["user:read"])[1],
                "subjects": [(k.public_id, v) for k, v in
                             (key(f"subject {n}", ["user:read"]) for n in range(revocations))]}
        db.engine.dispose()
    return keys


def start(env: dict, workers: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "keyvault", "serve", "--port", str(port),
                                "--workers", str(workers)], env=env, stdout=log.open("w"),
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            if requests.get(url + "/readyz", timeout=5).status_code == 200:
                return process, url
        except requests.RequestException:  # not listening yet, or still starting
            pass
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError(log.read_text())


def in_process(url: str, keys: dict, calls: int) -> dict:
    value = keys["busy"]
    timings = {}
    for name, seconds in (("uncached", 0), ("cached", 300)):
        with KeyVaultClient(url, keys["verifier"], cache_seconds=seconds) as client:
            while seconds and client.cache.ticket() is None:
                time.sleep(0.01)
            client.verify(value, ["user:read"])  # warm
            count = calls if seconds else max(calls // 20, 500)
            samples = []
            began = time.perf_counter()
            for _ in range(count):
                started = time.perf_counter_ns()
                client.verify(value, ["user:read"])
                samples.append((time.perf_counter_ns() - started) / 1000)
            timings[name] = {**percentiles(samples),
                             "calls_per_s": round(count / (time.perf_counter() - began))}
    timings["p50_ratio"] = round(timings["uncached"]["p50"] / timings["cached"]["p50"])
    return timings


def propagation(cached_url: str, delete_url: str, keys: dict) -> dict:
    stop = threading.Event()

    def hammer():  # another service verifying at full speed meanwhile
        with KeyVaultClient(cached_url, keys["verifier"]) as busy:
            while not stop.is_set():
                busy.verify(keys["busy"], ["user:read"])

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    delays = []
    with KeyVaultClient(cached_url, keys["verifier"], cache_seconds=300) as client, \
            requests.Session() as http:
        while client.cache.ticket() is None:
            time.sleep(0.01)
        http.headers["Authorization"] = f"Bearer {keys['manager']}"
        for public_id, value in keys["subjects"]:
            assert client.verify(value, ["user:read"]).active
            assert http.delete(f"{delete_url}/api/personal_api_keys/{public_id}/").ok
            answered = time.perf_counter()
            while client.verify(value, ["user:read"]).active:
                time.sleep(0.001)
            delays.append((time.perf_counter() - answered) * 1000)
    stop.set()
    thread.join()
    return {**{k: round(v, 1) if isinstance(v, float) else v
               for k, v in percentiles(delays).items()}, "unit": "ms"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL: two instances (default: SQLite, one)")
    parser.add_argument("--revocations", type=int, default=200, help="keys revoked and timed")
    parser.add_argument("--calls", type=int, default=50_000, help="cached in-process calls")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="kv-bench-events-"))
    env = {**os.environ, "KEYVAULT_INSTANCE_PATH": str(folder), "KEYVAULT_MAIL_SEND_SECONDS": "0",
           "KEYVAULT_MAX_KEYS_PER_USER": str(args.revocations + 10),
           "KEYVAULT_RATELIMIT_VERIFY": "100000000/minute",
           "KEYVAULT_DATABASE_URL": args.database_url or f"sqlite:///{folder / 'kv.db'}"}
    os.environ.update(env)
    keys = seed(env, args.revocations)
    postgres = bool(args.database_url)
    started = [start(env, 1, folder / f"serve{n}.log") for n in (1, 2)] if postgres \
        else [start(env, 2, folder / "serve.log")]
    urls = [url for _, url in started] * (2 // len(started))
    try:
        result = {"database": "postgresql" if postgres else "sqlite",
                  "instances": len(started), "in_process_us": in_process(urls[0], keys, args.calls),
                  "propagation": propagation(urls[0], urls[1], keys)}
    finally:
        for process, _ in started:
            process.terminate()
            process.wait(timeout=30)
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"events-{result['database']}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
