"""Key limits (issue 25) over the wire, on real `keyvault serve` instances: a quota exact under
200 racing verifies across two instances (SQLite or PostgreSQL: the session's database), kept
across a restart; a rate counted once across workers, and across instances through Redis.

The module starts its three instances once and shares them between its tests, each
test with keys of its own: `memory` (two workers, rates counted in their shared memory) and
`redis1` / `redis2` (rates counted in one redis-server)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from keyvault.service.limit_terms import RateTerms, UsageTerms
from tests.conftest import start_server, stop_server
from tests.test_rate_limits import redis_server


@pytest.fixture(scope="module")
def servers(database_url, tmp_path_factory):
    logs = tmp_path_factory.mktemp("key-limits-live")
    with redis_server(logs) as (redis_url, _):
        redis = {"KEYVAULT_RATELIMIT_STORAGE_URL": redis_url}
        plans = {"memory": {"workers": 2}, "redis1": {"extra_env": redis},
                 "redis2": {"extra_env": redis}}
        started = {"_plans": plans, "_logs": logs}
        try:  # one after another: three starting at once miss start_server's deadline when busy
            for name, plan in plans.items():
                started[name] = start_server(database_url, logs / f"{name}.log", **plan)
            yield started
        finally:
            for name in plans:
                if name in started:
                    stop_server(started[name])


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
        servers, database_url, app, make_user, make_key):
    caller, subject = _keys(make_user, make_key, usage_limit=UsageTerms(50))
    racing = [servers["memory"].url, servers["redis1"].url]  # two instances
    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(lambda n: _verify(racing[n % 2], caller, subject), range(200)))
    codes = sorted(code for _, code in answers)
    assert [status for status, _ in answers] == [200] * 200, answers
    assert codes.count("valid") == 50 and codes.count("usage_exceeded") == 150
    stop_server(servers["redis1"])  # restarted: the count was never in its memory
    servers["redis1"] = start_server(database_url, servers["_logs"] / "redis1-again.log",
                                     **servers["_plans"]["redis1"])
    assert _verify(servers["redis1"].url, caller, subject) == (200, "usage_exceeded")


def test_a_rate_is_one_count_across_the_workers_of_one_instance(servers, app, make_user,
                                                                make_key):
    caller, subject = _keys(make_user, make_key, rate_limit=RateTerms(10, 3600))
    url = servers["memory"].url  # memory://: its two workers share one table of counts
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = sorted(pool.map(lambda n: _verify(url, caller, subject)[1], range(16)))
    assert codes == ["rate_limited"] * 6 + ["valid"] * 10


def test_a_rate_is_one_count_across_instances_through_redis(servers, app, make_user, make_key):
    caller, subject = _keys(make_user, make_key, rate_limit=RateTerms(10, 3600))
    urls = [servers["redis1"].url, servers["redis2"].url]
    codes = sorted(_verify(urls[n % 2], caller, subject)[1] for n in range(14))
    assert codes == ["rate_limited"] * 4 + ["valid"] * 10
