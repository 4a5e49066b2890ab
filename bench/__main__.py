"""`python -m bench`: KeyVault's verify against the stack's ceiling, measured in the same run.

Seeds a fresh database, starts KeyVault exactly as `keyvault serve` does (granian and KeyVault's
bridge), a minimal Flask app on that same server (the ceiling), the same Flask app under plain
gunicorn with 2 sync workers (issue 10's reference) and djangorestframework-api-key's guarded view
under plain gunicorn, alternates the wrk scenarios over several rounds, and reports the medians,
the ratios, the workers' memory and the in-process cost of the hot path.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from keyvault.server import DEFAULT_THREADS
from keyvault.service import usage

from . import cpu, database, inprocess, load, report, servers


@dataclass
class Scenario:
    name: str
    title: str
    server: servers.Server
    path: str
    script: Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1000, help="keys to seed (default 1000)")
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL server URL: the benchmark creates (and drops) its own "
                             "database there; default: a fresh SQLite file")
    parser.add_argument("--duration", type=float, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds over all scenarios; medians are reported")
    parser.add_argument("--workers", type=int, default=None,
                        help="workers of KeyVault, the ceiling app and the Django baseline "
                             "(default: what `keyvault serve` uses, one per core); the reference "
                             "always runs 2 gunicorn sync workers")
    parser.add_argument("--warmup", type=float, default=1,
                        help="untimed seconds per scenario (wrk counts whole seconds: rounded "
                             "up; 0 skips the warm-up)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folder (database, server logs, Lua scripts)")
    parser.add_argument("--no-django", dest="django", action="store_false",
                        help="skip scenario (e), djangorestframework-api-key's guarded view "
                             "(which needs the `bench` extra: Django, DRF and the library)")
    args = parser.parse_args(argv)
    if args.keys < 1 or args.rounds < 1 or args.duration <= 0:
        parser.error("--keys, --rounds and --duration must be positive")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    return args


def post_verify(url: str, caller: str, key: str, scheme: str = "Bearer") -> tuple[int, dict]:
    request = urllib.request.Request(
        url + "/api/verify/", data=json.dumps({"key": key}).encode(), method="POST",
        headers={"Authorization": f"{scheme} {caller}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:  # a 4xx is an answer to check, not a crash
        with error:
            body = error.read()
        try:
            return error.code, json.loads(body)
        except ValueError:
            return error.code, {"body": body[:200].decode(errors="replace")}


def check_answers(keyvault: servers.Server, ceilings: list[servers.Server],
                  seeded: database.Seeded) -> None:
    """Before measuring anything: each kind of key gets the right answer, and the do-nothing
    apps' fixed answer (the ceiling's, the reference's) has the same shape as KeyVault's `valid`
    one."""
    expected = [(seeded.valid[0], "valid"), (seeded.valid[-1], "valid"),
                (seeded.revoked[0], "revoked"), (seeded.unknown[0], "not_found")]
    shape = None
    for key, code in expected:
        status, body = post_verify(keyvault.url, seeded.caller, key)
        if status != 200 or body.get("code") != code:
            raise SystemExit(f"verify answered {status} {body.get('code')!r}, expected {code!r}")
        if code == "valid":  # `exp` (RFC 7662) is there only for a key that expires
            shape = sorted(set(body) - {"exp"})
    for ceiling in ceilings:
        status, body = post_verify(ceiling.url, seeded.caller, seeded.valid[0])
        if status != 200 or sorted(body) != shape:
            raise SystemExit(f"the {ceiling.name} app's answer {sorted(body)} is not shaped "
                             f"like {shape}")


def check_django_answers(django: servers.Server, ceiling: servers.Server,
                         seeded: database.DjangoSeeded) -> None:
    """The guarded view lets a valid key through (200, the ceiling's body shape) and refuses an
    unknown, a revoked and a wrong-secret key with 403. Each request presents its own key in the
    library's default header, `Authorization: Api-Key <key>`, as the scenario's Lua script does."""
    _, ceiling_body = post_verify(ceiling.url, "any", "any")
    expected = [(seeded.valid[0], 200), (seeded.valid[-1], 200), (seeded.unknown[0], 403),
                (seeded.revoked[0], 403), (seeded.wrong_secret, 403)]
    for key, code in expected:
        status, body = post_verify(django.url, key, key, scheme="Api-Key")
        if status != code:
            raise SystemExit(f"the Django guarded view answered {status} {body}, expected {code}")
        if code == 200 and sorted(body) != sorted(ceiling_body):
            raise SystemExit(f"the Django view's answer {sorted(body)} is not shaped like "
                             f"{sorted(ceiling_body)}")


def mixed_keys(seeded: database.Seeded) -> list[str]:
    """The valid rotation with every tenth key swapped for a revoked or an unknown one."""
    mixed, bad = [], 0
    for i, key in enumerate(seeded.valid):
        if i % 10 == 9:
            pool = seeded.revoked if bad % 2 == 0 else seeded.unknown
            key = pool[(bad // 2) % len(pool)]
            bad += 1
        mixed.append(key)
    return mixed


def measure(scenario: Scenario, args: argparse.Namespace, duration: float,
            others: tuple[int, ...] = ()) -> load.Run:
    """One wrk run, and the CPU it cost the server and `others` (the database's, Redis)."""
    processes = cpu.Processes([scenario.server.process.pid, *others])
    before = processes.seconds()
    run = load.run_wrk(scenario.server.url + scenario.path, scenario.script, duration,
                       args.connections, args.threads)
    run.cpu_s_per_1000 = cpu.per_thousand(processes.seconds() - before, run.requests)
    errors = run.socket_errors
    if run.non_2xx or errors["connect"] or errors["timeout"]:
        raise load.LoadError(
            f"{scenario.title}: {run.non_2xx} non-2xx answers, socket errors {errors} "
            f"out of {run.requests} requests.\n{scenario.server.name} log:\n"
            f"{scenario.server.log_tail()}")
    return run


def run(args: argparse.Namespace, workdir: Path) -> dict:
    started = time.time()
    wrk_version = load.ensure_wrk()
    workers = args.workers or os.cpu_count() or 1  # `keyvault serve`'s own default
    load_before = os.getloadavg()
    others_busy = [report.cpu_busy()]  # before anything of ours runs, and after the rounds
    os.environ["KEYVAULT_INSTANCE_PATH"] = str(workdir / "instance")
    secret_key, pepper = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    if args.django:
        database.require_django()  # before any database is created
    db = database.create_database(args.database_url, workdir)
    # The Django baseline's own database on the same backend: a second SQLite file, or a second
    # database on the same PostgreSQL server.
    django_db: database.BenchDatabase | None = None
    started_servers: list[servers.Server] = []
    app = None
    try:
        print(f"Seeding {args.keys:,} keys into a fresh {db.backend} database ...", flush=True)
        app = database.make_app(db.url, secret_key, pepper)
        database.migrate(app)
        seeded = database.seed(app, args.keys)
        print(f"  {seeded.keys:,} keys for {seeded.users:,} users in {seeded.seconds:.1f} s",
              flush=True)

        env = servers.server_env(db.url, secret_key, pepper, workdir / "instance")
        keyvault = servers.start_keyvault(env, workdir / "keyvault.log", workers)
        started_servers.append(keyvault)
        ceiling = servers.start_ceiling(env, workdir / "ceiling.log", workers)
        started_servers.append(ceiling)
        reference = servers.start_reference(env, workdir / "reference.log")
        started_servers.append(reference)
        granian = servers.start_granian_wsgi(env, workdir / "granian-wsgi.log", workers)
        started_servers.append(granian)
        check_answers(keyvault, [ceiling, reference, granian], seeded)
        django_seeded = None
        if args.django:
            django_db = database.create_database(args.database_url, workdir,
                                                 name_prefix="django_bench", sqlite_file="django.db")
            django_env = servers.django_env(env, django_db.url, secrets.token_urlsafe(48))
            print(f"Seeding {args.keys:,} djangorestframework-api-key keys into a fresh "
                  f"{django_db.backend} database ...", flush=True)
            django_seeded = database.seed_django(django_env, args.keys)
            if django_seeded.database != django_db.backend:
                raise RuntimeError(f"the Django baseline seeded a {django_seeded.database} "
                                   f"database, not the {django_db.backend} one it was given")
            print(f"  {django_seeded.rows:,} keys ({', '.join(django_seeded.hashers)} hashes) in "
                  f"{django_seeded.seconds:.1f} s", flush=True)
            django = servers.start_django(django_env, workdir / "django.log", workers)
            started_servers.append(django)
            check_django_answers(django, ceiling, django_seeded)

        valid = load.write_post_script(workdir / "valid.lua", seeded.caller, seeded.valid)
        mixed = load.write_post_script(workdir / "mixed.lua", seeded.caller, mixed_keys(seeded))
        get = load.write_get_script(workdir / "get.lua")
        scenarios = [
            Scenario("ceiling_get", "ceiling app: do-nothing GET", ceiling, "/healthz", get),
            Scenario("ceiling_post", "(a) ceiling app: verify-shaped POST", ceiling,
                     "/api/verify/", valid),
            Scenario("healthz", "(b) KeyVault GET /healthz", keyvault, "/healthz", get),
            Scenario("verify_valid", "(c) KeyVault verify, valid keys", keyvault,
                     "/api/verify/", valid),
            Scenario("verify_mixed", "(d) KeyVault verify, 10% revoked/unknown", keyvault,
                     "/api/verify/", mixed),
            Scenario("reference_post",
                     "(f) reference: do-nothing Flask on gunicorn sync, verify-shaped POST",
                     reference, "/api/verify/", valid),
            Scenario("granian_post",
                     "(g) server's limit: do-nothing Flask on granian's own WSGI, same POST",
                     granian, "/api/verify/", valid),
        ]
        if django_seeded is not None:
            # No caller key: each request presents its own key, the one HasAPIKey checks.
            django_script = load.write_post_script(workdir / "django.lua", None,
                                                   django_seeded.valid, scheme="Api-Key")
            scenarios.append(Scenario("django_guarded",
                                      "(e) djangorestframework-api-key guarded view", django,
                                      "/api/verify/", django_script))
        # CPU per request counts the database server's too (bench.cpu): PostgreSQL's postmaster
        # and its backends; SQLite runs inside the workers, already counted.
        others = ()
        if db.backend == "postgresql":
            postmaster = cpu.listener(make_url(db.url).port or 5432)
            if postmaster is None:
                print("NOTE: PostgreSQL's process was not found: its CPU is not counted",
                      flush=True)
            others = (postmaster,) if postmaster is not None else ()
        if args.warmup > 0:
            print(f"Warming up ({load.wrk_seconds(args.warmup)} s per scenario) ...", flush=True)
            for scenario in scenarios:
                measure(scenario, args, args.warmup)
        rss_before = {s.name: s.worker_rss_mib() for s in started_servers}

        runs: dict[str, list[load.Run]] = {s.name: [] for s in scenarios}
        for round_number in range(args.rounds):
            shift = round_number % len(scenarios)  # each scenario takes each slot in turn
            for scenario in scenarios[shift:] + scenarios[:shift]:
                result = measure(scenario, args, args.duration, others)
                runs[scenario.name].append(result)
                print(f"  round {round_number + 1}/{args.rounds}  {scenario.title:<70} "
                      f"{result.rps:>8,.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                      f"p99 {result.p99_ms:6.2f} ms  CPU {result.cpu_s_per_1000:.3f} s/1k",
                      flush=True)
        rss_after = {s.name: s.worker_rss_mib() for s in started_servers}
        others_busy.append(report.cpu_busy())
        for server in started_servers:
            server.stop()

        print("In-process micro-benchmarks ...", flush=True)
        micro = {
            **inprocess.hot_path(app, seeded.caller, seeded.valid[0]),
            **inprocess.api_create_and_list(app, seeded.creator, seeded.lister),
        }
        size = db.size_bytes()
        index_bytes = db.index_bytes("api_keys")
    finally:
        for server in started_servers:
            server.stop()
        if app is not None:  # the in-process runs' use counts, written while their database is
            usage.close(app)  # there (at exit they met a dropped one: an error in the log)
        try:
            if django_db is not None:
                django_db.drop()
        finally:
            db.drop()

    return report.build(
        args=args, backend=db.backend, workers=workers, threads=DEFAULT_THREADS,
        reference_workers=servers.REFERENCE_WORKERS, wrk_version=wrk_version,
        seeded=seeded, django_seeded=django_seeded,
        scenarios=[(s.name, s.title) for s in scenarios], runs=runs,
        rss_before=rss_before, rss_after=rss_after, micro=micro, database_bytes=size,
        index_bytes=index_bytes,
        load_before=load_before, others_busy=others_busy, started=started,
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="keyvault-bench-"))
    workdir.chmod(0o755)
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
    print(report.table(results))
    path = report.write(results)
    print(f"\nWrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
