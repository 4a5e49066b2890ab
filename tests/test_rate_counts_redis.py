"""The rates on a request counted in one round trip to a real redis-server (issue 25 item 6: a key
with a rate within 10% of one without): the door's count, the rate its owner set on the calling
key, and a verify subject's, one script call per request, stopping at the first refusal so that
nothing after it is counted."""

from __future__ import annotations

import pytest
import redis

from keyvault.service.limit_terms import RateTerms
from tests.test_rate_limits import redis_server


@pytest.fixture
def redis_app(make_app, tmp_path):
    """An app counting its rates in a redis-server of its own, and that server's client."""
    with redis_server(tmp_path) as (url, _):
        yield make_app(KEYVAULT_RATELIMIT_STORAGE_URL=url), redis.Redis.from_url(url)


def scripts_run(server: redis.Redis) -> int:
    """Script calls the server has run (each one round trip; a first EVALSHA that finds the
    script not yet loaded fails, then the client loads it and calls again)."""
    stats = server.info("commandstats")
    return sum(stats.get(name, {}).get("calls", 0) - stats.get(name, {}).get("failed_calls", 0)
               for name in ("cmdstat_evalsha", "cmdstat_eval"))


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


def test_a_verify_counts_the_door_and_the_subjects_rate_in_one_round_trip(redis_app, make_user,
                                                                         make_key):
    app, server = redis_app
    _, caller = make_key(make_user("service@example.com"), scopes=["key:verify"])
    _, subject = make_key(make_user("ada@example.com"), scopes=["user:read"],
                          rate_limit=RateTerms(3, 3600))
    client = app.test_client()
    before, answers = scripts_run(server), []
    for _ in range(5):
        response = client.post("/api/verify/", json={"key": subject}, headers=bearer(caller))
        assert response.status_code == 200
        answers.append((response.json["code"], response.json["ratelimit"]["remaining"]))
    assert answers == [("valid", 2), ("valid", 1), ("valid", 0), ("rate_limited", 0),
                       ("rate_limited", 0)]
    assert scripts_run(server) - before == 5  # one per verify: door and key together


def test_a_refused_door_counts_nothing_after_it(make_app, tmp_path, make_user, make_key):
    with redis_server(tmp_path) as (url, _):
        app = make_app(KEYVAULT_RATELIMIT_STORAGE_URL=url, KEYVAULT_RATELIMIT_VERIFY="2/hour")
        _, caller = make_key(make_user("service@example.com"), scopes=["key:verify"])
        _, other = make_key(make_user("other@example.com"), scopes=["key:verify"])
        _, subject = make_key(make_user("ada@example.com"), scopes=["user:read"],
                              rate_limit=RateTerms(10, 3600))
        client = app.test_client()
        statuses = [client.post("/api/verify/", json={"key": subject},
                                headers=bearer(caller)).status_code for _ in range(4)]
        assert statuses == [200, 200, 429, 429]
        # the two refused at the door did not count against the subject's rate
        answer = client.post("/api/verify/", json={"key": subject}, headers=bearer(other)).json
        assert answer["code"] == "valid" and answer["ratelimit"]["remaining"] == 7


def test_keyvaults_own_api_counts_its_door_and_the_keys_rate_in_one_round_trip(
        redis_app, make_user, make_key):
    app, server = redis_app
    _, value = make_key(make_user("ada@example.com"), scopes=["user:read"],
                        rate_limit=RateTerms(2, 3600))
    client = app.test_client()
    before = scripts_run(server)
    responses = [client.get("/api/users/@me/", headers=bearer(value)) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[2].json["code"] == "rate_limited"
    assert '"key";r=0' in responses[2].headers["RateLimit"]
    assert '"api";r=' in responses[0].headers["RateLimit"]  # the door's count, answered too
    assert scripts_run(server) - before == 3


def test_a_redis_outage_lets_the_keys_rate_through(redis_app, make_user, make_key):
    """The counting store failing is the instance limits' choice for rates too: let through."""
    app, server = redis_app
    _, caller = make_key(make_user("service@example.com"), scopes=["key:verify"])
    _, subject = make_key(make_user("ada@example.com"), scopes=["user:read"],
                          rate_limit=RateTerms(1, 3600))
    server.shutdown(nosave=True)
    client = app.test_client()
    answers = [client.post("/api/verify/", json={"key": subject}, headers=bearer(caller)).json
               for _ in range(3)]
    assert [a["code"] for a in answers] == ["valid"] * 3
