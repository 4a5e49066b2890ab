"""`python -m bench.instances`: verify on several `keyvault serve` instances (issue 28 item 4).

Deployed as the README's "Scaling out" says: N instances on one PostgreSQL, their rates counted
in one redis-server, behind nginx on loopback (`upstream` over the instances, keep-alive to
them). One seeded database (1,000 keys, as `python -m bench` seeds), then, in alternating
rounds, wrk through an nginx over the first instance only (N = 1) and through an nginx over all
of them (N = 2 by default): throughput, p99, and the CPU seconds per 1,000 verifies of every
process involved (instances, PostgreSQL, Redis, nginx; not wrk: bench.cpu). Every ratio is N
against 1 in the same round, then the median of the rounds.

Then the promise that makes scaling out safe: a key revoked through one instance is refused by
the very next verify at another. 200 times: create a key through instance 1's API, verify it at
instance 2 (valid), revoke it at instance 1, verify it at instance 2 at once (revoked).

On a 2-core machine N instances share the same two cores, so N = 2 measures what running
more processes costs, not what a second machine would add; CPU per verify is the figure that
carries over.
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
from pathlib import Path

import requests
from sqlalchemy.engine import make_url

from . import cpu, database, load, servers
from .ratelimit_cost import RESULTS_DIR

NGINX = """
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream keyvault {{
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://keyvault;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
        }}
    }}
}}
"""


def start_nginx(directory: Path, upstreams: list[str]) -> tuple[subprocess.Popen, str]:
    """nginx in the foreground with a config of its own, balancing over `upstreams`."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("nginx is not installed: apt-get install -y nginx")
    directory.mkdir(parents=True)
    for folder in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (directory / folder).mkdir()
    port = servers.free_port()
    lines = "\n".join(f"        server {url.removeprefix('http://')};" for url in upstreams)
    config = directory / "nginx.conf"
    config.write_text(NGINX.format(prefix=directory, port=port, servers=lines))
    process = subprocess.Popen([nginx, "-c", str(config), "-p", str(directory), "-g",
                                "daemon off;"], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            if requests.get(url + "/healthz", timeout=2).status_code == 200:
                return process, url
        except requests.ConnectionError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"nginx did not start:\n{(directory / 'error.log').read_text()}")
        time.sleep(0.1)


def start_redis(directory: Path) -> tuple[subprocess.Popen, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed: apt-get install -y redis-server")
    port = servers.free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save",
                                "", "--appendonly", "no", "--dir", str(directory)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                         check=False).stdout.strip() != b"PONG":
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("redis-server did not start")
        time.sleep(0.1)
    return process, f"redis://127.0.0.1:{port}/0"


def _verify(url: str, caller: str, value: str) -> str:
    answer = requests.post(f"{url}/api/verify/", json={"key": value},
                           headers={"Authorization": f"Bearer {caller}"}, timeout=10)
    answer.raise_for_status()
    return answer.json()["code"]


def revocations(creator: str, caller: str, first: str, second: str, trials: int) -> dict:
    """Create at `first`, verify at `second`, revoke at `first`, verify at `second` at once."""
    seen = 0
    answers: dict[str, int] = {}
    for number in range(trials):
        made = requests.post(f"{first}/api/personal_api_keys/",
                             json={"label": f"revoke {number}",
                                   "scopes": ["personal_api_key:write"]},
                             headers={"Authorization": f"Bearer {creator}"}, timeout=10)
        made.raise_for_status()
        value, key_id = made.json()["value"], made.json()["id"]

        if _verify(second, caller, value) != "valid":
            raise RuntimeError("a new key was not valid at the other instance")
        requests.delete(f"{first}/api/personal_api_keys/{key_id}/",
                        headers={"Authorization": f"Bearer {creator}"},
                        timeout=10).raise_for_status()
        code = _verify(second, caller, value)
        answers[code] = answers.get(code, 0) + 1
        seen += code == "revoked"
    return {"trials": trials, "refused_at_once": seen, "answers": answers}


def run(args: argparse.Namespace, workdir: Path) -> dict:
    wrk_version = load.ensure_wrk()
    secret_key, pepper = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    db = database.create_database(args.database_url, workdir)
    if db.backend != "postgresql":
        db.drop()
        raise SystemExit("several instances need PostgreSQL: --database-url postgresql+psycopg://…")
    started: list = []
    try:
        print(f"Seeding {args.keys:,} keys ...", flush=True)
        app = database.make_app(db.url, secret_key, pepper)
        database.migrate(app)
        seeded = database.seed(app, args.keys)
        redis, redis_url = start_redis(workdir)
        started.append(redis)
        env = {**servers.server_env(db.url, secret_key, pepper, workdir / "instance"),
               "KEYVAULT_RATELIMIT_STORAGE_URL": redis_url}
        instances = [servers.start_keyvault(env, workdir / f"keyvault{n}.log", args.workers)
                     for n in range(1, args.instances + 1)]
        started.extend(instances)
        balancers = {}
        for count in (1, args.instances):
            process, url = start_nginx(workdir / f"nginx{count}",
                                       [i.url for i in instances[:count]])
            started.append(process)
            balancers[count] = (process, url)
        postmaster = cpu.listener(make_url(db.url).port or 5432)
        if postmaster is None:
            print("NOTE: PostgreSQL's process was not found: its CPU is not counted", flush=True)
        script = load.write_post_script(workdir / "valid.lua", seeded.caller, seeded.valid)
        runs: dict[int, list[load.Run]] = {1: [], args.instances: []}
        order = [1, args.instances]
        print(f"Warming up, then {args.rounds} rounds of {args.duration:g} s ...", flush=True)
        for count in order:
            load.run_wrk(balancers[count][1] + "/api/verify/", script, 2, args.connections,
                         args.threads)
        for round_number in range(args.rounds):
            for count in order[round_number % 2:] + order[:round_number % 2]:
                roots = [i.process.pid for i in instances[:count]]
                processes = cpu.Processes([*roots, postmaster, redis.pid, balancers[count][0].pid])
                before = processes.seconds()
                result = load.run_wrk(balancers[count][1] + "/api/verify/", script,
                                      args.duration, args.connections, args.threads)
                result.cpu_s_per_1000 = cpu.per_thousand(processes.seconds() - before,
                                                         result.requests)
                if result.non_2xx or result.socket_errors["connect"]:
                    raise load.LoadError(f"N={count}: {result.non_2xx} non-2xx answers, "
                                         f"socket errors {result.socket_errors}")
                runs[count].append(result)
                print(f"  round {round_number + 1}/{args.rounds}  N={count}  "
                      f"{result.rps:>8,.0f} req/s  p99 {result.p99_ms:6.2f} ms  "
                      f"CPU {result.cpu_s_per_1000:.3f} s/1k", flush=True)
        print(f"Revocation across instances ({args.revocations} keys) ...", flush=True)
        revoked = revocations(seeded.creator, seeded.caller, instances[0].url,
                              instances[-1].url, args.revocations)
    finally:
        for thing in reversed(started):
            if isinstance(thing, servers.Server):
                thing.stop()
            elif thing.poll() is None:
                thing.terminate()
                thing.wait(timeout=30)
        db.drop()

    def median(count: int, field: str) -> float:
        return statistics.median(getattr(run, field) for run in runs[count])

    def ratio(field: str) -> dict:
        rounds = [getattr(b, field) / getattr(a, field)
                  for a, b in zip(runs[1], runs[args.instances], strict=True)]
        return {"median_of_rounds": round(statistics.median(rounds), 3),
                "per_round": [round(r, 3) for r in rounds]}

    return {
        "meta": {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wrk": wrk_version,
                 "load_average": os.getloadavg(), "cores": os.cpu_count()},
        "settings": {"instances": args.instances, "workers_per_instance": args.workers,
                     "keys": args.keys, "rounds": args.rounds, "duration_s": args.duration,
                     "connections": args.connections, "threads": args.threads},
        "results": {str(count): {"rps": round(median(count, "rps"), 1),
                                 "p99_ms": round(median(count, "p99_ms"), 3),
                                 "cpu_s_per_1000": round(median(count, "cpu_s_per_1000"), 4),
                                 "runs": [r.as_dict() for r in runs[count]]}
                    for count in runs},
        "ratios": {"rps": ratio("rps"), "p99_ms": ratio("p99_ms"),
                   "cpu_s_per_1000": ratio("cpu_s_per_1000")},
        "revocation": revoked,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True,
                        help="a PostgreSQL server URL (a fresh database is made on it)")
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="workers per instance")
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--revocations", type=int, default=200)
    args = parser.parse_args()
    if args.instances < 2:
        parser.error("--instances: at least 2 (1 is always measured beside it)")
    with tempfile.TemporaryDirectory(prefix="kv-instances-") as workdir:
        results = run(args, Path(workdir))
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-instances.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    for count, row in results["results"].items():
        print(f"N={count}: {row['rps']:>8,.0f} req/s  p99 {row['p99_ms']:.2f} ms  "
              f"CPU {row['cpu_s_per_1000']:.3f} s per 1,000 verifies")
    for name, entry in results["ratios"].items():
        print(f"N={args.instances} / N=1, {name}: {entry['median_of_rounds']:.2f} "
              f"(rounds: {', '.join(f'{r:.2f}' for r in entry['per_round'])})")
    revoked = results["revocation"]
    print(f"revoked at instance 1, refused by the very next verify at instance "
          f"{args.instances}: {revoked['refused_at_once']} of {revoked['trials']}")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
