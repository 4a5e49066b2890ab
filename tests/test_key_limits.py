"""Limits an owner sets on a key (issue 25): a rate and a usage quota that refills, answered by
verify, forward_auth and KeyVault's own API, spent only when the request goes ahead."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from keyvault.extensions import db
from keyvault.limit_models import KeyLimits
from keyvault.service.limit_terms import RateTerms, UsageTerms


@pytest.fixture
def limited(make_user, make_key):
    """make(scopes=..., rate=RateTerms, usage=UsageTerms) -> the key's value."""
    owner = make_user("owner@example.com")

    def make(scopes=("*",), rate=None, usage=None):
        return make_key(owner, scopes=list(scopes), rate_limit=rate, usage_limit=usage)[1]

    return make


def check(client, verifier, value, **body):
    response = client.post("/api/verify/", json={"key": value, **body},
                           headers={"Authorization": f"Bearer {verifier}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json


def remaining_in_db() -> list[int]:
    """The quotas' durable counts, oldest key first."""
    db.session.expire_all()
    return [row.remaining for row in db.session.query(KeyLimits).order_by(KeyLimits.id)
            if row.remaining is not None]


def test_a_quota_is_spent_one_use_at_a_time_and_then_refused(client, verifier, limited):
    value = limited(usage=UsageTerms(3))
    answers = [check(client, verifier, value) for _ in range(4)]
    assert [(a["code"], a["usage"]["remaining"]) for a in answers] == [
        ("valid", 2), ("valid", 1), ("valid", 0), ("usage_exceeded", 0)]
    assert answers[-1]["active"] is False and answers[0]["usage"]["refills_at"] is None
    assert "ratelimit" not in answers[0]
    assert remaining_in_db() == [0]


def test_a_key_without_limits_answers_neither(client, verifier, limited):
    answer = check(client, verifier, limited())
    assert answer["code"] == "valid" and "usage" not in answer and "ratelimit" not in answer


def test_a_request_refused_for_anything_else_costs_nothing(client, verifier, limited):
    value = limited(scopes=["user:read"], usage=UsageTerms(3))
    refused = check(client, verifier, value, scopes=["key:verify"])
    assert refused["code"] == "insufficient_scope" and refused["usage"]["remaining"] == 3
    # a caller that is refused never gets the subject counted either
    response = client.post("/api/verify/", json={"key": value},
                           headers={"Authorization": "Bearer kv_wrong"})
    assert response.status_code == 401
    assert remaining_in_db() == [3]


@pytest.mark.parametrize(("cost", "first", "second"), [
    (2, ("valid", 1), ("usage_exceeded", 1)),  # all or nothing: 1 left is not taken for 2
    (0, ("valid", 3), ("valid", 3)),  # asks without spending
])
def test_cost_is_spent_whole_or_not_at_all(client, verifier, limited, cost, first, second):
    value = limited(usage=UsageTerms(3))
    answers = [check(client, verifier, value, cost=cost) for _ in range(2)]
    assert [(a["code"], a["usage"]["remaining"]) for a in answers] == [first, second]


@pytest.mark.parametrize("cost", [-1, 1001, "2", True, 1.5])
def test_a_bad_cost_is_a_clear_400(client, verifier, limited, cost):
    response = client.post("/api/verify/", json={"key": limited(), "cost": cost},
                           headers={"Authorization": f"Bearer {verifier}"})
    assert response.status_code == 400 and "cost" in response.get_data(as_text=True)


def test_a_rate_limited_use_answers_retry_after_and_spends_no_quota(client, verifier, limited):
    value = limited(rate=RateTerms(2, 3600), usage=UsageTerms(10))
    answers = [check(client, verifier, value) for _ in range(3)]
    assert [a["code"] for a in answers] == ["valid", "valid", "rate_limited"]
    assert [a["ratelimit"]["remaining"] for a in answers] == [1, 0, 0]
    assert answers[0]["ratelimit"]["limit"] == 2 and 0 < answers[2]["retry_after"] <= 3600
    assert answers[2]["usage"]["remaining"] == 8 and remaining_in_db() == [8]


def test_a_new_key_never_inherits_a_deleted_keys_window(client, verifier, make_user,
                                                         make_key):
    """SQLite hands the id of a deleted last row to the next row made: windows are counted
    under a key's public id, so the new key starts with its whole rate."""
    from keyvault import service

    gone = make_user("gone@example.com")
    old, old_value = make_key(gone, scopes=["*"], rate_limit=RateTerms(1, 3600))
    assert check(client, verifier, old_value)["code"] == "valid"
    assert check(client, verifier, old_value)["code"] == "rate_limited"
    old_row_id = old.id
    service.delete_account(gone, service.Origin("127.0.0.1", "pytest"))
    new, new_value = make_key(make_user("new@example.com"), scopes=["*"],
                              rate_limit=RateTerms(1, 3600))
    if db.engine.dialect.name == "sqlite":
        assert new.id == old_row_id  # the case this guards against
    assert check(client, verifier, new_value)["code"] == "valid"


def test_forward_auth_answers_429_with_headers_then_403_when_used_up(client, limited):
    rated = limited(rate=RateTerms(1, 3600))
    bearer = {"Authorization": f"Bearer {rated}"}
    first = client.get("/api/forward_auth/", headers=bearer)
    assert first.status_code == 200 and '"key";q=1;w=3600' in first.headers["RateLimit-Policy"]
    second = client.get("/api/forward_auth/", headers=bearer)
    assert second.status_code == 429 and int(second.headers["Retry-After"]) > 0
    assert '"key";r=0' in second.headers["RateLimit"]
    assert second.json["code"] == "rate_limited" and second.json["retry_after"] > 0
    costly = limited(usage=UsageTerms(5))
    headers = {"Authorization": f"Bearer {costly}", "X-KeyVault-Cost": "3"}
    assert client.get("/api/forward_auth/", headers=headers).status_code == 200
    refused = client.get("/api/forward_auth/", headers=headers)
    assert refused.status_code == 403 and refused.json["code"] == "usage_exceeded"
    assert refused.headers["Content-Type"] == "application/problem+json"
    bad = client.get("/api/forward_auth/", headers={**headers, "X-KeyVault-Cost": "lots"})
    assert bad.status_code == 400 and remaining_in_db() == [2]


def test_keyvaults_own_api_counts_the_key_and_answers_problem_json(client, limited):
    value = limited(usage=UsageTerms(1))
    bearer = {"Authorization": f"Bearer {value}"}
    assert client.get("/api/users/@me/", headers=bearer).status_code == 200
    refused = client.get("/api/users/@me/", headers=bearer)
    assert refused.status_code == 403 and refused.json["code"] == "usage_exceeded"


def test_create_and_edit_limits_through_the_api(client, limited):
    caller = {"Authorization": f"Bearer {limited()}"}
    response = client.post("/api/personal_api_keys/", headers=caller, json={
        "label": "trial", "scopes": ["user:read"],
        "rate_limit": {"limit": 100, "window_seconds": 60},
        "usage_limit": {"remaining": 1000,
                        "refill": {"amount": 1000, "interval": "monthly", "day_of_month": 1}}})
    assert response.status_code == 201, response.get_data(as_text=True)
    shown = response.json
    assert shown["rate_limit"] == {"limit": 100, "window_seconds": 60}
    assert shown["usage_limit"]["remaining"] == 1000
    assert shown["usage_limit"]["refill"] == {"amount": 1000, "interval": "monthly",
                                              "day_of_month": 1}
    key_id = shown["id"]
    edited = client.patch(f"/api/personal_api_keys/{key_id}/", headers=caller,
                          json={"rate_limit": None, "usage_limit": {"remaining": 5}})
    assert edited.status_code == 200, edited.get_data(as_text=True)
    assert edited.json["rate_limit"] is None
    assert edited.json["usage_limit"] == {"remaining": 5, "refill": None, "refills_at": None}


@pytest.mark.parametrize("limits", [
    {"rate_limit": {"limit": 0, "window_seconds": 60}},
    {"rate_limit": {"limit": 10, "window_seconds": 86401}},
    {"rate_limit": {"limit": 10}},
    {"usage_limit": {"remaining": -1}},
    {"usage_limit": {"remaining": 5, "refill": {"amount": 5, "interval": "weekly"}}},
    {"usage_limit": {"remaining": 5, "refill": {"amount": 5, "interval": "monthly",
                                                "day_of_month": 31}}},
    {"usage_limit": {"remaining": 5, "refill": {"amount": 5, "interval": "daily",
                                                "day_of_month": 3}}},
])
def test_bad_limits_are_a_clear_400_and_make_no_key(client, limited, limits):
    caller = {"Authorization": f"Bearer {limited()}"}
    response = client.post("/api/personal_api_keys/", headers=caller,
                           json={"label": "bad", "scopes": ["user:read"], **limits})
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/problem+json"
    assert remaining_in_db() == []


def test_a_quota_refills_once_per_period_across_the_boundary(client, verifier, limited, frozen):
    frozen.at = datetime(2030, 12, 31, 23, 59, tzinfo=UTC)
    value = limited(usage=UsageTerms(1, 3, "monthly", 1))
    first = check(client, verifier, value)
    assert first["usage"] == {"remaining": 0, "refills_at": "2031-01-01T00:00:00Z"}
    assert check(client, verifier, value)["code"] == "usage_exceeded"
    frozen.at = datetime(2031, 1, 1, 0, 0, tzinfo=UTC)
    answers = [check(client, verifier, value) for _ in range(4)]
    assert [(a["code"], a["usage"]["remaining"]) for a in answers] == [
        ("valid", 2), ("valid", 1), ("valid", 0), ("usage_exceeded", 0)]
    assert answers[0]["usage"]["refills_at"] == "2031-02-01T00:00:00Z"


def test_a_quota_is_spent_on_the_threads_own_hot_path_connection(app, verifier, limited):
    """Spending opens no connection of its own: a thread verifying keys with quotas holds one
    database connection, so an instance needs what the README plans (workers × 2 × threads on
    PostgreSQL), not half as many again (which ran two instances out of PostgreSQL's 100)."""
    values = [limited(usage=UsageTerms(100)) for _ in range(3)]
    check(app.test_client(), verifier, limited())  # the keystore's first connection: not counted
    opened = []

    def count(dbapi_connection, record):
        opened.append(dbapi_connection)

    def use_all(_):
        client = app.test_client()
        return [check(client, verifier, value)["code"] for value in values for _ in range(2)]

    event.listen(Engine, "connect", count)
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            codes = [code for codes in pool.map(use_all, range(3)) for code in codes]
    finally:
        event.remove(Engine, "connect", count)
    assert codes == ["valid"] * 18 and remaining_in_db() == [94, 94, 94]
    assert len(opened) <= 3  # one per new thread (keystore), none for the meter
