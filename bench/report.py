"""The benchmark's results: medians, ratios, the printed table and the JSON file."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Issue 5's goals, printed next to the figures (the benchmark reports; it never fails on them).
RATIO_GOAL = {"sqlite": 0.80, "postgresql": 0.65}
P99_GOAL = 1.5
# KeyVault's verify against djangorestframework-api-key's guarded view, throughput.
DJANGO_GOAL = 2.5
# Issue 10's goals: verify against the do-nothing Flask app under gunicorn with 2 sync workers
# (the reference), throughput and p99 (SQLite, 1,000 keys).
REFERENCE_GOAL = 1.3
REFERENCE_P99_GOAL = 1.0
# Issue 28's goals, by database: verify against the reference and against the server's own limit
# (the do-nothing app under granian's own WSGI interface), throughput; p99 as issue 10's.
ISSUE_28_REFERENCE_GOAL = {"sqlite": 2.0, "postgresql": 1.0}
ISSUE_28_SERVER_GOAL = {"sqlite": 0.8, "postgresql": 0.4}
ISSUE_28_DJANGO_GOAL = 4.0
WIDTH = 70  # the scenario and ratio labels' column


def _cpu_ticks() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def cpu_busy(seconds: float = 1.0) -> float | None:
    """The share of all cores busy over the next `seconds`: while the benchmark itself is idle,
    this is what other processes take from it."""
    try:
        busy_0, total_0 = _cpu_ticks()
        time.sleep(seconds)
        busy_1, total_1 = _cpu_ticks()
    except (OSError, ValueError, IndexError):
        return None
    return round((busy_1 - busy_0) / max(1, total_1 - total_0), 2)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=False, cwd=Path(__file__).resolve().parent)
    except OSError:
        return None
    return done.stdout.strip() or None


def _versions() -> dict:
    names = ("flask", "granian", "gunicorn", "waitress", "sqlalchemy", "psycopg", "werkzeug", "django",
             "djangorestframework", "djangorestframework-api-key")
    found = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def _median(runs, attribute: str) -> float:
    return statistics.median(getattr(run, attribute) for run in runs)


def build(*, args, backend, workers, threads, reference_workers, wrk_version, seeded,
          django_seeded, scenarios, runs, rss_before, rss_after, micro, database_bytes,
          index_bytes, load_before, others_busy, started) -> dict:
    summary = {}
    for name, title in scenarios:
        summary[name] = {
            "title": title,
            "rps": round(_median(runs[name], "rps"), 1),
            "p50_ms": round(_median(runs[name], "p50_ms"), 3),
            "p99_ms": round(_median(runs[name], "p99_ms"), 3),
            "cpu_s_per_1000": round(_median(runs[name], "cpu_s_per_1000"), 4),
            "runs": [run.as_dict() for run in runs[name]],
        }

    def ratio(top: str, bottom: str, field: str) -> dict:
        per_round = [getattr(a, field) / getattr(b, field)
                     for a, b in zip(runs[top], runs[bottom], strict=True)]
        return {"of_medians": round(summary[top][field] / summary[bottom][field], 3),
                "per_round": [round(r, 3) for r in per_round],
                "median_of_rounds": round(statistics.median(per_round), 3)}

    ratios = {
        "verify_vs_reference_rps": ratio("verify_valid", "reference_post", "rps"),
        "verify_vs_reference_p99": ratio("verify_valid", "reference_post", "p99_ms"),
        "goal_reference_rps": REFERENCE_GOAL, "goal_reference_p99": REFERENCE_P99_GOAL,
        "mixed_vs_reference_rps": ratio("verify_mixed", "reference_post", "rps"),
        "ceiling_vs_reference_rps": ratio("ceiling_post", "reference_post", "rps"),
        "verify_vs_ceiling_rps": ratio("verify_valid", "ceiling_post", "rps"),
        "verify_vs_ceiling_p99": ratio("verify_valid", "ceiling_post", "p99_ms"),
        "mixed_vs_ceiling_rps": ratio("verify_mixed", "ceiling_post", "rps"),
        "mixed_vs_ceiling_p99": ratio("verify_mixed", "ceiling_post", "p99_ms"),
        "healthz_vs_ceiling_get_rps": ratio("healthz", "ceiling_get", "rps"),
        "verify_vs_ceiling_cpu": ratio("verify_valid", "ceiling_post", "cpu_s_per_1000"),
        "verify_vs_reference_cpu": ratio("verify_valid", "reference_post", "cpu_s_per_1000"),
        "verify_vs_granian_rps": ratio("verify_valid", "granian_post", "rps"),
        "verify_vs_granian_p99": ratio("verify_valid", "granian_post", "p99_ms"),
        "verify_vs_granian_cpu": ratio("verify_valid", "granian_post", "cpu_s_per_1000"),
        "granian_vs_reference_rps": ratio("granian_post", "reference_post", "rps"),
        "goal_28_reference_rps": ISSUE_28_REFERENCE_GOAL.get(backend),
        "goal_28_server_rps": ISSUE_28_SERVER_GOAL.get(backend),
        "goal_rps": RATIO_GOAL.get(backend), "goal_p99": P99_GOAL,
    }
    memory = {
        "keyvault_workers_after_warmup": [round(r, 1) for r in rss_before["keyvault"]],
        "keyvault_workers_after_run": [round(r, 1) for r in rss_after["keyvault"]],
        "ceiling_workers_after_run": [round(r, 1) for r in rss_after["ceiling"]],
        "reference_workers_after_run": [round(r, 1) for r in rss_after["reference"]],
        "granian_workers_after_run": [round(r, 1) for r in rss_after["granian-wsgi"]],
    }
    django = None
    if django_seeded is not None:
        ratios |= {
            "verify_vs_django_rps": ratio("verify_valid", "django_guarded", "rps"),
            "django_vs_ceiling_rps": ratio("django_guarded", "ceiling_post", "rps"),
            "goal_verify_vs_django_rps": DJANGO_GOAL,
        }
        memory["django_workers_after_run"] = [round(r, 1) for r in rss_after["django"]]
        django = {"database": django_seeded.database, "rows": django_seeded.rows,
                  "rotating_valid_keys": len(django_seeded.valid),
                  "hashers": django_seeded.hashers, "seed_seconds": django_seeded.seconds,
                  "header": "Authorization: Api-Key <key>"}

    command = "python -m bench" + "".join(f" {a}" for a in sys.argv[1:])
    return {
        "meta": {
            "date": dt.datetime.fromtimestamp(started).astimezone().isoformat(timespec="seconds"),
            "command": command,
            "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(),
                        "system": platform.platform(),
                        "load_average_before": [round(x, 2) for x in load_before],
                        "load_average_after": [round(x, 2) for x in os.getloadavg()],
                        "cpu_busy_while_idle": others_busy},
            "python": platform.python_version(),
            "versions": _versions(),
            "wrk": wrk_version,
            "git_commit": _git_commit(),
            "seconds": round(time.time() - started, 1),
        },
        "settings": {
            "database": backend, "keys": args.keys, "rows": seeded.keys, "users": seeded.users,
            "seed_seconds": round(seeded.seconds, 1), "database_mib":
                round(database_bytes / 2**20, 1) if database_bytes is not None else None,
            "index_mib": {name: round(size / 2**20, 2) for name, size in index_bytes.items()},
            "rotating_valid_keys": len(seeded.valid), "workers": workers, "threads_per_worker":
                threads, "reference": f"gunicorn --workers {reference_workers} --worker-class sync",
            "connections": args.connections, "threads": args.threads,  # wrk's
            "duration_s": args.duration, "rounds": args.rounds, "warmup_s": args.warmup,
            "django_baseline": django,
        },
        "scenarios": summary,
        "ratios": ratios,
        "memory_rss_mib": memory,
        "in_process": micro,
    }


def _goal(sign: str, goal: float | None) -> str:
    return f"  goal {sign} {goal:.2f}" if goal is not None else ""


def table(results: dict) -> str:
    settings, ratios, micro = results["settings"], results["ratios"], results["in_process"]
    title = (f"KeyVault benchmark: {settings['database']}, {settings['keys']:,} keys, "
             f"wrk {settings['threads']} threads x {settings['connections']} connections, "
             f"median of {settings['rounds']} x {settings['duration_s']:g} s")
    lines = [title, (f"KeyVault and the ceiling app: keyvault serve (granian + bridge), "
                     f"{settings['workers']} workers x {settings['threads_per_worker']} threads; "
                     f"reference and Django: {settings['reference']}")]
    machine = results["meta"]["machine"]
    samples = [b for b in machine["cpu_busy_while_idle"] if b is not None]
    if samples and max(samples) > 0.25:
        lines.append(f"NOTE: other processes kept {max(samples):.0%} of the CPU busy while the "
                     "benchmark was idle: absolute figures are low and noisy; the ratios, "
                     "measured in alternation, suffer less.")
    size = f", {settings['database_mib']:,.0f} MiB" if settings["database_mib"] else ""
    lines.append(f"database: {settings['rows']:,} keys for {settings['users']:,} users, seeded in "
                 f"{settings['seed_seconds']:g} s{size}; wrk rotates over "
                 f"{settings['rotating_valid_keys']:,} valid keys")
    if settings.get("index_mib"):
        lines.append("api_keys' indexes (MiB): " + ", ".join(
            f"{name} {size:,.2f}" for name, size in settings["index_mib"].items()))
    django = settings.get("django_baseline")
    if django:
        where = {"sqlite": "its own SQLite file",
                 "postgresql": "its own PostgreSQL database on KeyVault's server"}
        lines.append(f"Django baseline: {django['rows']:,} keys in "
                     f"{where.get(django['database'], django['database'])} "
                     f"({', '.join(django['hashers'])} hashes), wrk presents "
                     f"{django['rotating_valid_keys']:,} of them in `{django['header']}`")
    lines += ["", f"{'scenario':<{WIDTH}}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}"
                  f"{'CPU s/1k':>10}"]
    for row in results["scenarios"].values():
        lines.append(f"{row['title']:<{WIDTH}}{row['rps']:>10,.0f}{row['p50_ms']:>10.2f}"
                     f"{row['p99_ms']:>10.2f}{row['cpu_s_per_1000']:>10.3f}")
    lines.append("CPU s/1k: CPU seconds per 1,000 requests of the server's processes and the "
                 "database server's (not wrk's)")

    def show(name: str, label: str, goal: str = "") -> str:
        entry = ratios[name]
        rounds = ", ".join(f"{r:.2f}" for r in entry["per_round"])
        return (f"{label:<{WIDTH}}{entry['of_medians']:>10.2f}   (rounds: {rounds}; their "
                f"median {entry['median_of_rounds']:.2f}){goal}")

    def mib(values: list[float]) -> str:
        return ", ".join(f"{v:.1f}" for v in values)

    goal_rps = f"  goal >= {ratios['goal_rps']:.2f}" if ratios["goal_rps"] else ""
    goal_p99 = f"  goal <= {ratios['goal_p99']:.2f}"
    memory = results["memory_rss_mib"]
    create, listed = micro["create_key"], micro["list_10_keys"]
    lines += [
        "",
        "Issue 10 (reference: the do-nothing app on gunicorn, 2 sync workers):",
        show("verify_vs_reference_rps", "verify / reference, throughput",
             f"  goal >= {ratios['goal_reference_rps']:.2f}"),
        show("verify_vs_reference_p99", "verify p99 / reference p99",
             f"  goal <= {ratios['goal_reference_p99']:.2f}"),
        show("mixed_vs_reference_rps", "verify 10% bad / reference, throughput"),
        show("ceiling_vs_reference_rps", "ceiling (KeyVault's server) / reference, throughput"),
        "",
        "Against the ceiling (the same app on KeyVault's own server):",
        show("verify_vs_ceiling_rps", "verify / ceiling, throughput", goal_rps),
        show("verify_vs_ceiling_p99", "verify p99 / ceiling p99", goal_p99),
        show("mixed_vs_ceiling_rps", "verify 10% bad / ceiling, throughput"),
        show("mixed_vs_ceiling_p99", "verify 10% bad p99 / ceiling p99"),
        show("healthz_vs_ceiling_get_rps", "/healthz / do-nothing GET, throughput"),
        show("verify_vs_ceiling_cpu", "verify / ceiling, CPU per request"),
        show("verify_vs_reference_cpu", "verify / reference, CPU per request"),
        "",
        "Issue 28 (the server's limit: the same app on granian's own WSGI interface):",
        show("verify_vs_reference_rps", "verify / reference, throughput",
             _goal(">=", ratios.get("goal_28_reference_rps"))),
        show("verify_vs_granian_rps", "verify / granian's own no-op, throughput",
             _goal(">=", ratios.get("goal_28_server_rps"))),
        show("verify_vs_reference_p99", "verify p99 / reference p99",
             _goal("<=", ratios["goal_reference_p99"])),
        show("verify_vs_granian_p99", "verify p99 / granian's own no-op p99"),
        show("verify_vs_granian_cpu", "verify / granian's own no-op, CPU per request"),
        show("granian_vs_reference_rps", "granian's own no-op / reference, throughput"),
    ]
    if "verify_vs_django_rps" in ratios:
        lines += [
            show("verify_vs_django_rps", "verify / Django guarded view, throughput",
                 f"  goal >= {ratios['goal_verify_vs_django_rps']:.2f} (issue 5), "
                 f">= {ISSUE_28_DJANGO_GOAL:.2f} (issue 28)"),
            show("django_vs_ceiling_rps", "Django guarded view / ceiling, throughput"),
        ]
    django_rss = (f"; Django baseline: {mib(memory['django_workers_after_run'])}"
                  if "django_workers_after_run" in memory else "")
    lines += [
        "",
        (f"KeyVault worker RSS (MiB): after warm-up {mib(memory['keyvault_workers_after_warmup'])}"
         f"; after the run {mib(memory['keyvault_workers_after_run'])}"
         f" (ceiling app: {mib(memory['ceiling_workers_after_run'])}; reference: "
         f"{mib(memory['reference_workers_after_run'])}; granian's own WSGI: "
         f"{mib(memory['granian_workers_after_run'])}{django_rss})"),
        "",
        "In process (app context, no HTTP):",
        (f"  service.verify_key        {micro['verify_key']['median_us']:>9.1f} us"
         f"   (median of {micro['verify_key']['calls']:,} calls)"),
        (f"  service.check_keys x2     {micro['check_keys']['median_us']:>9.1f} us"
         "   (caller + subject, as /api/verify/ calls it)"),
        f"  API create key            {create['median_ms']:>9.2f} ms  (p90 {create['p90_ms']:.2f})",
        f"  API list 10 keys          {listed['median_ms']:>9.2f} ms  (p90 {listed['p90_ms']:.2f})",
    ]
    return "\n".join(lines)


def write(results: dict) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{stamp}-{results['settings']['database']}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path
