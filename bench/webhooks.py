"""Webhook delivery latency: from the commit of a key's change to the receiver's 2xx.

`python -m bench.webhooks [--events N] [--database-url URL] [--workers W]`: a `keyvault serve`
(its background senders as configured by default: every KEYVAULT_WEBHOOK_SEND_SECONDS in each
worker) sends to a receiver on loopback; this process creates keys one at a time, at random
moments, and notes when each creation committed. The receiver notes when it answers each
delivery (204); the difference, per event, is the latency. Prints p50/p90/p99/max as JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.database import create_database, make_app, migrate
from bench.servers import server_env, start_keyvault
from keyvault import service
from keyvault.extensions import db

ORIGIN = service.Origin("127.0.0.1", "bench")


class Receiver:
    """Answers every POST with 204 and notes, per key id, when it answered."""

    def __init__(self):
        self.answered: dict[str, float] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                self.send_response(204)
                self.end_headers()
                key_id = json.loads(body)["data"]["key"]["id"]
                receiver.answered.setdefault(key_id, time.time())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(events: int, database_url: str | None, workers: int, gap: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="kv-bench-webhooks-") as folder:
        workdir = Path(folder)
        database = create_database(database_url, workdir, name_prefix="kv_bench_hooks")
        secret_key, pepper = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        server = None
        try:
            app = make_app(database.url, secret_key, pepper)
            migrate(app)
            receiver = Receiver()
            server = start_keyvault(server_env(database.url, secret_key, pepper, workdir),
                                    workdir / "serve.log", workers)
            committed: dict[str, float] = {}
            with app.app_context():
                person = service.sign_up("bench@example.com", "correct horse battery", ORIGIN,
                                         confirmed=True)
                service.webhooks.create_webhook(person, receiver.url, ["key.created"],
                                                origin=ORIGIN)
                for number in range(events):
                    key, _ = service.create_key(person, label=f"bench {number}",
                                                scopes=["user:read"], origin=ORIGIN)
                    committed[key.public_id] = time.time()  # create_key has committed
                    service.revoke_key(person, key.public_id, ORIGIN)  # stay under the limit
                    time.sleep(random.uniform(0, 2 * gap))
                db.session.remove()
            deadline = time.monotonic() + 30
            while len(receiver.answered) < events and time.monotonic() < deadline:
                time.sleep(0.05)
            latencies = [(receiver.answered[key] - at) * 1000 for key, at in committed.items()
                         if key in receiver.answered]
            receiver.server.shutdown()
            receiver.server.server_close()
        finally:
            if server is not None:
                server.stop()
            database.drop()
    return {"backend": database.backend, "workers": workers, "events": events,
            "delivered": len(latencies),
            "latency_ms": {"p50": round(statistics.median(latencies), 1),
                           "p90": round(percentile(latencies, 0.90), 1),
                           "p99": round(percentile(latencies, 0.99), 1),
                           "max": round(max(latencies), 1)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200, help="Key changes to send (200).")
    parser.add_argument("--database-url", default=None,
                        help="A PostgreSQL server URL (a database is made and dropped there); "
                             "default: a fresh SQLite file.")
    parser.add_argument("--workers", type=int, default=2, help="keyvault serve workers (2).")
    parser.add_argument("--gap", type=float, default=0.1,
                        help="Mean seconds between two key changes (0.1).")
    args = parser.parse_args()
    print(json.dumps(run(args.events, args.database_url, args.workers, args.gap), indent=2))


if __name__ == "__main__":
    main()
