"""`python -m bench.ratelimit_cost`: what sharing rate-limit counts between workers costs verify.

A same-run A/B under `keyvault serve`, on one seeded database: verify with the counts every
worker shares (`keyvault serve` as it is: window_counts.SharedWindowCounts), verify with each
worker counting alone (what memory:// was before: window_counts.WindowCounts), and verify with the
verify limit off (what counting costs at all). The servers run side by side; each round runs
wrk once against each, starting one later every round; the ratios are taken per round, and
their median reported.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from keyvault import create_app, metrics, server, window_counts
from keyvault.server import DEFAULT_THREADS

from . import database, load, report, servers
from .__main__ import post_verify

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def per_worker_application() -> server.BufferedWSGI:
    """keyvault.server.application, but each worker counts alone (not told of the shared
    table), as every memory:// worker did before the counts were shared."""
    os.environ.pop(window_counts.SHARED_COUNTS_FD, None)
    return server.application()


def serve_per_worker(port: int, workers: int) -> None:
    """keyvault.server.run without the shared table: the same server, bridge and settings."""
    app = create_app()
    with metrics.multiprocess_dir():
        server.serve("bench.ratelimit_cost:per_worker_application", "127.0.0.1", port, workers,
                     DEFAULT_THREADS, app.config["KEYVAULT_LOG_FORMAT"],
                     app.config["KEYVAULT_LISTEN_SOCKETS"], app.config["KEYVAULT_PIN_WORKERS"],
                     app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"))


def start_per_worker(env: dict, log_path: Path, workers: int) -> servers.Server:
    port = servers.free_port()
    argv = [sys.executable, "-m", "bench.ratelimit_cost", "--serve-per-worker",
            "--port", str(port), "--workers", str(workers)]
    return servers.launch("per_worker", argv, env, log_path, workers, port, "granian")


def maps_shared_table(pid: int) -> bool:
    return "memfd:keyvault-ratelimit" in Path(f"/proc/{pid}/maps").read_text()


def check(variants: dict[str, servers.Server], seeded: database.Seeded) -> None:
    """Each server answers verify, and the two that count are what they claim to be: the
    shared one's workers map the table, the per-worker one's do not."""
    for name, candidate in variants.items():
        status, body = post_verify(candidate.url, seeded.caller, seeded.valid[0])
        if status != 200 or body.get("code") != "valid":
            raise SystemExit(f"{name}: verify answered {status} {body}")
        mapped = [maps_shared_table(pid) for pid in candidate.worker_pids()]
        if name != "off" and (not mapped or mapped != [name == "shared"] * len(mapped)):
            raise SystemExit(f"{name}: workers mapping the shared table: {mapped}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ratelimit_cost",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL server URL (default: a fresh SQLite file)")
    parser.add_argument("--duration", type=float, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--keep", action="store_true", help="keep the servers' logs")
    parser.add_argument("--serve-per-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run(args: argparse.Namespace, workdir: Path) -> dict:
    load.ensure_wrk()
    load_before = os.getloadavg()
    os.environ["KEYVAULT_INSTANCE_PATH"] = str(workdir / "instance")
    secret_key, pepper = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    db = database.create_database(args.database_url, workdir)
    started: list[servers.Server] = []
    try:
        app = database.make_app(db.url, secret_key, pepper)
        database.migrate(app)
        seeded = database.seed(app, args.keys)
        env = servers.server_env(db.url, secret_key, pepper, workdir / "instance")
        variants = {
            "shared": servers.start_keyvault(env, workdir / "shared.log", args.workers),
            "per_worker": start_per_worker(env, workdir / "per_worker.log", args.workers),
            "off": servers.start_keyvault({**env, "KEYVAULT_RATELIMIT_VERIFY": "0"},
                                          workdir / "off.log", args.workers),
        }
        started.extend(variants.values())
        check(variants, seeded)
        script = load.write_post_script(workdir / "valid.lua", seeded.caller, seeded.valid)
        names = list(variants)
        for name in names:  # warm-up, untimed
            load.run_wrk(variants[name].url + "/api/verify/", script, 1, args.connections,
                         args.threads)
        runs: dict[str, list[load.Run]] = {name: [] for name in names}
        for number in range(args.rounds):
            shift = number % len(names)
            for name in names[shift:] + names[:shift]:
                result = load.run_wrk(variants[name].url + "/api/verify/", script,
                                      args.duration, args.connections, args.threads)
                if result.non_2xx or result.socket_errors["connect"] \
                        or result.socket_errors["timeout"]:
                    raise load.LoadError(f"{name}: {result.as_dict()}")
                runs[name].append(result)
                print(f"  round {number + 1}/{args.rounds}  {name:<10} {result.rps:>8,.0f} "
                      f"req/s  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms",
                      flush=True)
    finally:
        for candidate in started:
            candidate.stop()
        db.drop()

    def ratios(name: str, against: str, attribute: str) -> list[float]:
        return [round(getattr(a, attribute) / getattr(b, attribute), 3)
                for a, b in zip(runs[name], runs[against], strict=True)]

    summary = {
        "shared / per_worker, req/s": ratios("shared", "per_worker", "rps"),
        "shared / per_worker, p99": ratios("shared", "per_worker", "p99_ms"),
        "shared / off, req/s": ratios("shared", "off", "rps"),
        "per_worker / off, req/s": ratios("per_worker", "off", "rps"),
    }
    return {
        "settings": {**{k: v for k, v in vars(args).items() if k not in ("serve_per_worker",
                                                                          "port")},
                     "database": db.backend, "load_before": load_before,
                     "commit": report._git_commit()},
        "medians": {name: {"rps": round(statistics.median(r.rps for r in rs), 1),
                           "p99_ms": round(statistics.median(r.p99_ms for r in rs), 2)}
                    for name, rs in runs.items()},
        "ratios_per_round": summary,
        "ratios_median": {name: statistics.median(values) for name, values in summary.items()},
        "runs": {name: [r.as_dict() for r in rs] for name, rs in runs.items()},
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.serve_per_worker:
        serve_per_worker(args.port, args.workers)
        return
    workdir = Path(tempfile.mkdtemp(prefix="keyvault-ratelimit-cost-"))
    workdir.chmod(0o755)
    try:
        results = run(args, workdir)
    finally:
        if args.keep:
            print(f"Kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = RESULTS_DIR / f"{stamp}-ratelimit-{results['settings']['database']}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({"medians": results["medians"],
                      "ratios_median": results["ratios_median"],
                      "ratios_per_round": results["ratios_per_round"]}, indent=2))
    print(f"Written to {path}")


if __name__ == "__main__":
    main()
