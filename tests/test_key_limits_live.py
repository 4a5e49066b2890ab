"""Key limits (issue 25) over the wire, on real `keyvault serve` instances: a quota exact under
200 racing verifies across two instances (SQLite or PostgreSQL: the session's database), kept
across a restart; a rate counted once across workers, and across instances through Redis."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests

from keyvault.service.limit_terms import RateTerms, UsageTerms
from tests.conftest import start_server, stop_server
from tests.test_rate_limits import redis_url  # noqa: F401 - the real redis-server fixture


def _keys(make_user, make_key, **limits):
    _, caller = make_key(make_user(), scopes=["key:verify"])
    _, subject = make_key(make_user(), scopes=["user:read"], **limits)
    return caller, subject


def _verify(url: str, caller: str, subject: str) -> tuple[int, str]:
    response = requests.post(f"{url}/api/verify/", json={"key": subject},
                             headers={"Authorization": f"Bearer {caller}"}, timeout=60)
    return response.status_code, (response.json().get("code") if response.status_code == 200
                                  else response.text)


def test_200_racing_verifies_spend_a_quota_of_50_exactly_and_a_restart_keeps_it(
        database_url, tmp_path, app, make_user, make_key):
    caller, subject = _keys(make_user, make_key, usage_limit=UsageTerms(50))
    servers = [start_server(database_url, tmp_path / f"kv{n}.log") for n in (1, 2)]
    try:
        with ThreadPoolExecutor(max_workers=32) as pool:
            answers = list(pool.map(lambda n: _verify(servers[n % 2].url, caller, subject),
                                    range(200)))
        codes = sorted(code for _, code in answers)
        assert [status for status, _ in answers] == [200] * 200, answers
        assert codes.count("valid") == 50 and codes.count("usage_exceeded") == 150
        stop_server(servers.pop())
        servers.append(start_server(database_url, tmp_path / "kv3.log"))
        assert _verify(servers[1].url, caller, subject) == (200, "usage_exceeded")
    finally:
        for server in servers:
            stop_server(server)


def test_a_rate_is_one_count_across_workers_and_across_instances_through_redis(
        database_url, tmp_path, app, make_user, make_key, redis_url):  # noqa: F811
    caller, subject = _keys(make_user, make_key, rate_limit=RateTerms(10, 3600))
    one = start_server(database_url, tmp_path / "kv.log", workers=2)
    try:  # memory://: the workers share one table of counts
        with ThreadPoolExecutor(max_workers=8) as pool:
            codes = sorted(pool.map(lambda n: _verify(one.url, caller, subject)[1], range(16)))
        assert codes == ["rate_limited"] * 6 + ["valid"] * 10
    finally:
        stop_server(one)
    caller, subject = _keys(make_user, make_key, rate_limit=RateTerms(10, 3600))
    url, _ = redis_url
    servers = [start_server(database_url, tmp_path / f"kv{n}.log",
                            extra_env={"KEYVAULT_RATELIMIT_STORAGE_URL": url}) for n in (1, 2)]
    try:
        codes = sorted(_verify(servers[n % 2].url, caller, subject)[1] for n in range(14))
        assert codes == ["rate_limited"] * 4 + ["valid"] * 10
    finally:
        for server in servers:
            stop_server(server)
