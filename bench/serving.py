"""`python -m bench.serving`: the same do-nothing Flask app under each candidate server.

Issue 10 asks for a serving model chosen with figures. Each candidate serves
bench/ceiling_app.py's app (a verify-shaped POST, a do-nothing GET, no access log anywhere):

- gunicorn sync, 2 workers (the reference a typical Flask user deploys);
- gunicorn gthread, 2 workers x 8 threads;
- granian's own WSGI interface, 2 workers (its defaults otherwise);
- granian + KeyVault's bridge (keyvault.server.BufferedWSGI through keyvault.server.serve),
  2 workers x 8 threads: what `keyvault serve` runs;
- waitress, one process x 8 threads (it has no worker processes).

Measured, in this order:
1. throughput and latency with wrk (keep-alive), POST and GET, several short rounds that
   alternate the servers (each round starts one server later), medians; ratios against gunicorn
   sync in the same round;
2. memory: VmRSS of each worker after the rounds;
3. 50 slow-body clients: connections that send a POST head with `Content-Length: 100` and then
   one byte a second; meanwhile a probe asks GET /healthz and then the verify-shaped POST (a new
   connection each time, 5 s timeout) every 0.2 s for ~10 s: answered / asked, p50 and max
   latency of /healthz, answered / asked and max of the POST; then the clients hang up and the
   time until /healthz answers again;
4. a graceful restart under load: 4 client threads loop over the POST (a new connection per
   request, 10 s timeout); SIGHUP to the master 2 s in; the loop runs on until every worker has
   been replaced, then 2 s more: failed requests (an error or a non-200) out of the total, and
   the slowest answer.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from . import load, report, servers

WORKERS = 2
THREADS = 8
SLOW_CLIENTS = 50
POST_BODY = b'{"key": "kv_bench_key"}'


@dataclass
class Candidate:
    name: str
    title: str
    start: Callable[[dict, Path], servers.Server]
    workers: int
    reloads: bool  # graceful restart on SIGHUP
    server: servers.Server | None = None
    runs: dict = field(default_factory=lambda: {"post": [], "get": []})
    extra: dict = field(default_factory=dict)


def _waitress(env: dict, log_path: Path) -> servers.Server:
    port = servers.free_port()
    argv = [sys.executable, "-m", "waitress", "--host=127.0.0.1", f"--port={port}",
            f"--threads={THREADS}", "bench.ceiling_app:app"]
    return servers.launch("waitress", argv, env, log_path, 1, port, "single")


def candidates() -> list[Candidate]:
    app = "bench.ceiling_app:app"
    return [
        Candidate("gunicorn_sync", f"gunicorn sync, {WORKERS} workers",
                  lambda env, log: servers.start_gunicorn("gunicorn-sync", app, env, log, WORKERS),
                  WORKERS, True),
        Candidate("gunicorn_gthread", f"gunicorn gthread, {WORKERS} x {THREADS} threads",
                  lambda env, log: servers.start_gunicorn("gunicorn-gthread", app, env, log,
                                                          WORKERS, "gthread", THREADS),
                  WORKERS, True),
        Candidate("granian_wsgi", f"granian WSGI, {WORKERS} workers",
                  lambda env, log: servers.start_granian_wsgi(env, log, WORKERS), WORKERS, True),
        Candidate("granian_bridge", f"granian + KeyVault bridge, {WORKERS} x {THREADS}",
                  lambda env, log: servers.start_ceiling(env, log, WORKERS, access_log=False,
                                                         name="granian-bridge"),
                  WORKERS, True),
        Candidate("waitress", f"waitress, 1 process x {THREADS} threads", _waitress, 1, False),
    ]


# ---------------------------------------------------------------- one request, a new connection

def request(url: str, method: str, path: str, timeout: float) -> int:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        body = POST_BODY if method == "POST" else None
        headers = {"Content-Type": "application/json",
                   "Authorization": "Bearer kv_bench_caller"} if body else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# ---------------------------------------------------------------- 3. slow-body clients

def slow_clients(server: servers.Server, count: int = SLOW_CLIENTS, seconds: float = 10.0,
                 interval: float = 0.2) -> dict:
    parts = urlsplit(server.url)
    head = (b"POST /api/verify/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n")
    sockets, refused = [], 0
    for _ in range(count):
        try:
            sock = socket.create_connection((parts.hostname, parts.port), timeout=5)
            sock.sendall(head)
            sockets.append(sock)
        except OSError:
            refused += 1
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(1.0):
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.send(b" ")

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    time.sleep(1.0)  # the server has picked them up
    probes = {"GET": ([], []), "POST": ([], [])}  # (answered, failed) seconds
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for method, path in (("GET", "/healthz"), ("POST", "/api/verify/")):
            started = time.perf_counter()
            try:
                ok = request(server.url, method, path, timeout=5) == 200
            except OSError:
                ok = False
            probes[method][0 if ok else 1].append(time.perf_counter() - started)
            time.sleep(interval / 2)
    stop.set()
    trickler.join()
    for sock in sockets:
        sock.close()
    # After they hang up: how long until /healthz answers again (0 if it never stopped).
    gone = time.perf_counter()
    recovered = None
    while time.perf_counter() - gone < 40:
        try:
            if request(server.url, "GET", "/healthz", timeout=5) == 200:
                recovered = time.perf_counter() - gone
                break
        except OSError:
            pass
        time.sleep(0.2)
    answered, failed = probes["GET"]
    post_answered, post_failed = probes["POST"]
    return {
        "slow_clients": count - refused, "refused": refused,
        "probes": len(answered) + len(failed), "answered": len(answered),
        "p50_ms": None if not answered else round(statistics.median(answered) * 1000, 2),
        "max_ms": round(max(answered + failed) * 1000, 1) if answered or failed else None,
        "post_probes": len(post_answered) + len(post_failed),
        "post_answered": len(post_answered),
        "post_max_ms": round(max(post_answered + post_failed) * 1000, 1)
        if post_answered or post_failed else None,
        "recovered_after_s": None if recovered is None else round(recovered, 2),
    }


# ---------------------------------------------------------------- 4. graceful restart

def restart_under_load(server: servers.Server, workers: int, clients: int = 4,
                       before: float = 2.0, after: float = 2.0, limit: float = 45.0) -> dict:
    old = set(server.worker_pids())
    stop = threading.Event()
    outcomes: list[tuple[bool, float, str | None]] = []
    lock = threading.Lock()

    def loop() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                status = request(server.url, "POST", "/api/verify/", timeout=10)
                error = None if status == 200 else f"HTTP {status}"
            except OSError as exc:
                error = type(exc).__name__
            with lock:
                outcomes.append((error is None, time.perf_counter() - started, error))

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(before)
    os.kill(server.process.pid, signal.SIGHUP)
    hup = time.monotonic()
    replaced_after = None
    while time.monotonic() - hup < limit:
        now = set(server.worker_pids())
        if len(now) == workers and not now & old:
            replaced_after = time.monotonic() - hup
            break
        time.sleep(0.1)
    time.sleep(after)
    stop.set()
    for thread in threads:
        thread.join()
    errors: dict[str, int] = {}
    for ok, _, error in outcomes:
        if not ok:
            errors[error] = errors.get(error, 0) + 1
    return {
        "requests": len(outcomes), "failed": sum(errors.values()), "errors": errors,
        "max_ms": round(max(s for _, s, _ in outcomes) * 1000, 1) if outcomes else None,
        "workers_replaced_after_s": None if replaced_after is None else round(replaced_after, 2),
        "alive": server.process.poll() is None,
    }


# ---------------------------------------------------------------- the run

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.serving",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--only", nargs="*", default=None,
                        help="candidates to run (names as in the table's JSON); gunicorn_sync "
                             "always runs, the ratios need it")
    parser.add_argument("--keep", action="store_true", help="keep the folder with the logs")
    return parser.parse_args(argv)


def _wrk(candidate: Candidate, kind: str, scripts: dict, args, duration: float) -> load.Run:
    path = "/api/verify/" if kind == "post" else "/healthz"
    return load.run_wrk(candidate.server.url + path, scripts[kind], duration, args.connections,
                        args.threads)


def run(args: argparse.Namespace, workdir: Path) -> dict:
    started = time.time()
    wrk_version = load.ensure_wrk()
    chosen = [c for c in candidates()
              if args.only is None or c.name in args.only or c.name == "gunicorn_sync"]
    scripts = {
        "post": load.write_post_script(workdir / "post.lua", "kv_bench_caller",
                                       [f"kv_bench_key_{i}" for i in range(100)]),
        "get": load.write_get_script(workdir / "get.lua"),
    }
    env = dict(os.environ)
    others_busy = [report.cpu_busy()]
    try:
        for candidate in chosen:
            print(f"Starting {candidate.title} ...", flush=True)
            candidate.server = candidate.start(env, workdir / f"{candidate.name}.log")
        print("Warming up ...", flush=True)
        for candidate in chosen:
            for kind in ("post", "get"):
                _wrk(candidate, kind, scripts, args, 1)
        for round_number in range(args.rounds):
            shift = round_number % len(chosen)
            for candidate in chosen[shift:] + chosen[:shift]:
                for kind in ("post", "get"):
                    result = _wrk(candidate, kind, scripts, args, args.duration)
                    candidate.runs[kind].append(result)
                    errors = result.non_2xx + sum(result.socket_errors.values())
                    print(f"  round {round_number + 1}/{args.rounds}  {candidate.title:<36} "
                          f"{kind.upper():<4} {result.rps:>8,.0f} req/s  p99 "
                          f"{result.p99_ms:7.2f} ms  errors {errors}", flush=True)
        for candidate in chosen:
            candidate.extra["rss_mib"] = [round(r, 1) for r in candidate.server.worker_rss_mib()]
        others_busy.append(report.cpu_busy())
        for candidate in chosen:
            print(f"{candidate.title}: {SLOW_CLIENTS} slow-body clients ...", flush=True)
            candidate.extra["slow"] = slow_clients(candidate.server)
            print(f"  {candidate.extra['slow']}", flush=True)
        for candidate in chosen:
            if not candidate.reloads:
                candidate.extra["restart"] = None
                continue
            print(f"{candidate.title}: SIGHUP under load ...", flush=True)
            candidate.extra["restart"] = restart_under_load(candidate.server, candidate.workers)
            print(f"  {candidate.extra['restart']}", flush=True)
    finally:
        for candidate in chosen:
            if candidate.server is not None:
                candidate.server.stop()
    return build(args, chosen, wrk_version, started, others_busy)


def build(args, chosen: list[Candidate], wrk_version: str, started: float,
          others_busy: list) -> dict:
    base = next(c for c in chosen if c.name == "gunicorn_sync")
    rows = {}
    for candidate in chosen:
        row = {"title": candidate.title, "workers": candidate.workers}
        for kind in ("post", "get"):
            runs = candidate.runs[kind]
            per_round = [a.rps / b.rps for a, b in zip(runs, base.runs[kind], strict=True)]
            p99_rounds = [a.p99_ms / b.p99_ms for a, b in zip(runs, base.runs[kind], strict=True)]
            row[kind] = {
                "rps": round(statistics.median(r.rps for r in runs), 1),
                "p50_ms": round(statistics.median(r.p50_ms for r in runs), 3),
                "p99_ms": round(statistics.median(r.p99_ms for r in runs), 3),
                "errors": sum(r.non_2xx + sum(r.socket_errors.values()) for r in runs),
                "rps_vs_sync_rounds": [round(r, 2) for r in per_round],
                "rps_vs_sync": round(statistics.median(per_round), 2),
                "p99_vs_sync": round(statistics.median(p99_rounds), 2),
                "runs": [r.as_dict() for r in runs],
            }
        row |= candidate.extra
        rows[candidate.name] = row
    return {
        "meta": {
            "date": dt.datetime.fromtimestamp(started).astimezone().isoformat(timespec="seconds"),
            "command": "python -m bench.serving" + "".join(f" {a}" for a in sys.argv[1:]),
            "cores": os.cpu_count(), "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "cpu_busy_while_idle": others_busy, "wrk": wrk_version,
            "versions": report._versions(),
            "seconds": round(time.time() - started, 1),
        },
        "settings": {"duration_s": args.duration, "rounds": args.rounds,
                     "connections": args.connections, "wrk_threads": args.threads,
                     "slow_clients": SLOW_CLIENTS},
        "servers": rows,
    }


def table(results: dict) -> str:
    s = results["settings"]
    lines = [f"Serving the do-nothing Flask app: wrk {s['wrk_threads']} threads x "
             f"{s['connections']} connections (keep-alive), median of {s['rounds']} x "
             f"{s['duration_s']:g} s; ratios against gunicorn sync in the same round", ""]
    busy = [b for b in results["meta"]["cpu_busy_while_idle"] if b is not None]
    if busy and max(busy) > 0.25:
        lines.insert(1, f"NOTE: other processes kept {max(busy):.0%} of the CPU busy while this "
                        "run was idle: absolute figures are noisy; the ratios suffer less.")
    header = (f"{'server':<36}{'POST r/s':>9}{'x sync':>7}{'p99 ms':>8}{'GET r/s':>9}{'x sync':>7}"
              f"{'RSS/wkr':>8}  {'slow: /healthz ok, p50, max':<28}{'POST ok':>9}"
              f"{'restart: failed, max':>24}")
    lines += [header, "-" * len(header)]
    for row in results["servers"].values():
        post, get, slow, restart = row["post"], row["get"], row["slow"], row["restart"]
        rss = statistics.mean(row["rss_mib"]) if row["rss_mib"] else float("nan")
        p50 = "-" if slow["p50_ms"] is None else f"{slow['p50_ms']:.1f} ms"
        slow_text = f"{slow['answered']}/{slow['probes']}, {p50}, {slow['max_ms']:.0f} ms"
        post_ok = f"{slow['post_answered']}/{slow['post_probes']}"
        restart_text = ("n/a" if restart is None
                        else f"{restart['failed']}/{restart['requests']}, {restart['max_ms']:.0f} ms")
        lines.append(f"{row['title']:<36}{post['rps']:>9,.0f}{post['rps_vs_sync']:>7.2f}"
                     f"{post['p99_ms']:>8.2f}{get['rps']:>9,.0f}{get['rps_vs_sync']:>7.2f}"
                     f"{rss:>8.1f}  {slow_text:<28}{post_ok:>9}{restart_text:>24}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="keyvault-serving-"))
    try:
        results = run(args, workdir)
    except load.LoadError as error:
        raise SystemExit(f"FAILED: {error}") from None
    finally:
        if args.keep:
            print(f"Kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(table(results))
    report.RESULTS_DIR.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = report.RESULTS_DIR / f"{stamp}-serving.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nWrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
