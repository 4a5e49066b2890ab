"""`python -m bench.key_limits`: what the limits an owner sets on a key cost verify (issue 25).

One seeded database, its rotating valid keys split in three: **none** (no limits), **rate** (a
rate never reached: 10^9 a minute) and **quota** (10^12 uses). Each round runs wrk once per
case against one `keyvault serve` counting rates in its shared memory (memory://) and, when
redis-server is installed, one counting them in Redis, starting one case later every round;
every ratio is against the **none** keys of the same server in the same round, then the
median of the rounds is reported. A fourth case, **quota_cost0**, presents the quota keys with
`"cost": 0` (verify answers where they stand without spending: no write, and no hand-off from
the event loop to a thread), so quota / quota_cost0 is what spending costs on the fast path;
an in-process timing of the spend alone (keyvault.meter: one conditional UPDATE) splits that
into the write and the hand-off.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
import timeit
from pathlib import Path

from sqlalchemy import select

from keyvault import clock, tokens
from keyvault.extensions import db as sqla
from keyvault.keystore import dispose
from keyvault.limit_models import KeyLimits
from keyvault.meter import meter
from keyvault.models import ApiKey
from keyvault.service.keys import pepper

from . import database, load, report, servers
from .__main__ import post_verify
from .ratelimit_cost import RESULTS_DIR

CASES = ("none", "rate", "quota", "quota_cost0")


def give_limits(app, values: list[str]) -> dict[str, list[str]]:
    """Split the rotating keys in three and give the second third a rate, the last a quota;
    the keys each case presents (quota_cost0: the quota keys)."""
    third = len(values) // 3
    groups = {"none": values[:third], "rate": values[third:2 * third],
              "quota": values[2 * third:3 * third]}
    key_pepper = pepper(app)
    with app.app_context():
        for case, terms in (("rate", {"rate_limit": 10**9, "rate_window": 60}),
                            ("quota", {"remaining": 10**12, "quota": 10**12})):
            digests = [tokens.digest_of(value, key_pepper) for value in groups[case]]
            ids = sqla.session.scalars(select(ApiKey.id).where(ApiKey.digest.in_(digests)))
            sqla.session.add_all(KeyLimits(api_key_id=key_id, period="", **terms)
                                 for key_id in ids)
        sqla.session.commit()
    return {**groups, "quota_cost0": groups["quota"]}


def spend_microseconds(app, count: int = 2000) -> float:
    """One spend of a quota in process (keyvault.meter's conditional UPDATE), in µs."""
    with app.app_context():
        held = sqla.session.scalars(select(KeyLimits).where(
            KeyLimits.remaining.is_not(None)).limit(1)).one().terms()
    spender, now = meter(app), clock.now()
    spender.spend([held], 1, now)  # the connection made
    seconds = timeit.timeit(lambda: spender.spend([held], 1, now), number=count)
    dispose(app)  # the keystore's connections, which the meter spends on
    return round(seconds / count * 1e6, 1)


def scripts(workdir: Path, caller: str, groups: dict[str, list[str]]) -> dict[str, Path]:
    made = {}
    for case, values in groups.items():
        path = load.write_post_script(workdir / f"{case}.lua", caller, values)
        if case == "quota_cost0":
            source = path.read_text()
            costless = source.replace("""'"}'""", """'", "cost": 0}'""")
            assert costless != source, "the wrk script's body changed shape"
            path.write_text(costless)
        made[case] = path
    return made


def check(candidates: dict[str, servers.Server], caller: str,
          groups: dict[str, list[str]]) -> None:
    """Each server answers each case's keys as valid, with the limits each case has."""
    for name, candidate in candidates.items():
        for case, values in groups.items():
            if case == "quota_cost0":
                continue
            status, body = post_verify(candidate.url, caller, values[0])
            shown = ("ratelimit" in body, "usage" in body)
            wanted = {"none": (False, False), "rate": (True, False), "quota": (False, True)}
            if status != 200 or body.get("code") != "valid" or shown != wanted[case]:
                raise SystemExit(f"{name}/{case}: verify answered {status} {body}")


def start_redis(workdir: Path):
    """A redis-server of the run's own on a free port, or None when it is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        print("redis-server not found: the Redis case is skipped")
        return None, None
    port = servers.free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save",
                                "", "--appendonly", "no", "--dir", str(workdir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    time.sleep(0.5)
    return f"redis://127.0.0.1:{port}/0", process


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.key_limits",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL server URL (default: a fresh SQLite file)")
    parser.add_argument("--duration", type=float, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-redis", dest="redis", action="store_false",
                        help="skip the server that counts rates in Redis")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, workdir: Path) -> dict:
    load.ensure_wrk()
    load_before = os.getloadavg()
    os.environ["KEYVAULT_INSTANCE_PATH"] = str(workdir / "instance")
    secret_key, key_pepper = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    db = database.create_database(args.database_url, workdir)
    started: list[servers.Server] = []
    redis_url, redis = start_redis(workdir) if args.redis else (None, None)
    try:
        app = database.make_app(db.url, secret_key, key_pepper)
        database.migrate(app)
        seeded = database.seed(app, args.keys)
        groups = give_limits(app, seeded.valid)
        spend_us = spend_microseconds(app)
        env = servers.server_env(db.url, secret_key, key_pepper, workdir / "instance")
        candidates = {"memory": servers.start_keyvault(env, workdir / "memory.log",
                                                       args.workers)}
        if redis_url is not None:
            candidates["redis"] = servers.start_keyvault(
                {**env, "KEYVAULT_RATELIMIT_STORAGE_URL": redis_url}, workdir / "redis.log",
                args.workers)
        started.extend(candidates.values())
        check(candidates, seeded.caller, groups)
        made = scripts(workdir, seeded.caller, groups)
        runs: dict[str, dict[str, list[load.Run]]] = {n: {c: [] for c in CASES}
                                                       for n in candidates}
        for candidate in candidates.values():  # warm-up, untimed
            for case in CASES:
                load.run_wrk(candidate.url + "/api/verify/", made[case], 1, args.connections,
                             args.threads)
        for number in range(args.rounds):
            shift = number % len(CASES)
            for name, candidate in candidates.items():
                for case in CASES[shift:] + CASES[:shift]:
                    result = load.run_wrk(candidate.url + "/api/verify/", made[case],
                                          args.duration, args.connections, args.threads)
                    if result.non_2xx or result.socket_errors["connect"] \
                            or result.socket_errors["timeout"]:
                        raise load.LoadError(f"{name}/{case}: {result.as_dict()}")
                    runs[name][case].append(result)
                    print(f"  round {number + 1}/{args.rounds}  {name:<7} {case:<12} "
                          f"{result.rps:>8,.0f} req/s  p99 {result.p99_ms:6.2f} ms", flush=True)
    finally:
        for candidate in started:
            candidate.stop()
        if redis is not None:
            redis.terminate()
            redis.wait(timeout=10)
        db.drop()

    def ratios(name: str, case: str, against: str = "none") -> list[float]:
        return [round(a.rps / b.rps, 3)
                for a, b in zip(runs[name][case], runs[name][against], strict=True)]

    per_round = {f"{name}: {case} / none": ratios(name, case)
                 for name in runs for case in CASES[1:]}
    per_round.update({f"{name}: quota / quota_cost0": ratios(name, "quota", "quota_cost0")
                      for name in runs})
    return {
        "settings": {**vars(args), "database": db.backend, "load_before": load_before,
                     "commit": report._git_commit()},
        "spend_in_process_us": spend_us,
        "medians": {name: {case: {"rps": round(statistics.median(r.rps for r in rs), 1),
                                  "p99_ms": round(statistics.median(r.p99_ms for r in rs), 2)}
                           for case, rs in cases.items()} for name, cases in runs.items()},
        "ratios_per_round": per_round,
        "ratios_median": {name: statistics.median(v) for name, v in per_round.items()},
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="keyvault-key-limits-"))
    workdir.chmod(0o755)
    try:
        results = run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = RESULTS_DIR / f"{stamp}-key-limits-{results['settings']['database']}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: results[k] for k in ("spend_in_process_us", "medians",
                                              "ratios_median")}, indent=2))
    print(f"Written to {path}")


if __name__ == "__main__":
    main()
