"""Rate limits on every door (keyvault.ratelimit): the API per key, verify and forward_auth per
calling key, sign-up per address — 429 problem+json with Retry-After and the IETF draft's
RateLimit-Policy / RateLimit fields, a window that resets, counts shared through a real Redis
by two real servers, and a Redis outage that never stops KeyVault."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time

import pytest
import requests

from keyvault import ratelimit
from keyvault.ratelimit import RateLimiter, WindowCounts, parse_quota
from tests.conftest import AuthActions, _free_port, start_server, stop_server


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


def policy(response) -> tuple[str, str]:
    return response.headers["RateLimit-Policy"], response.headers["RateLimit"]


def remaining(response) -> int:
    return int(re.search(r";r=(\d+)", response.headers["RateLimit"]).group(1))


def assert_limited(response, door: str, amount: int, window: int) -> None:
    assert response.status_code == 429, response.get_data(as_text=True) \
        if hasattr(response, "get_data") else response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert 1 <= int(response.headers["Retry-After"]) <= window
    assert response.headers["RateLimit-Policy"] == f'"{door}";q={amount};w={window}'
    assert re.fullmatch(rf'"{door}";r=0;t=\d+', response.headers["RateLimit"])
    body = response.json() if callable(getattr(response, "json", None)) else response.json
    assert body["code"] == "rate_limited" and body["limit"] == door
    assert f"try again in {response.headers['Retry-After']} seconds" in body["detail"]


def wait_for_next_window(window: int) -> None:
    """Sleep into the next fixed window (they are aligned to the clock)."""
    time.sleep(window - time.time() % window + 0.05)


@pytest.mark.parametrize("text, expected", [
    ("600/minute", (600, 60)), ("10 per hour", (10, 3600)), ("5/10 seconds", (5, 10)),
    ("0", None), ("", None), ("off", None),
])
def test_quotas_are_read_in_the_limits_notation(text, expected):
    quota = parse_quota("api", text)
    assert (quota and (quota.amount, quota.window)) == expected


def test_a_bad_quota_is_refused_at_start(make_app):
    from keyvault.config import ConfigError

    with pytest.raises(ConfigError, match="KEYVAULT_RATELIMIT_API.*'lots'"):
        make_app(KEYVAULT_RATELIMIT_API="lots")


def test_the_api_is_limited_per_key_and_the_window_resets(make_app, make_user, make_key):
    app = make_app(KEYVAULT_RATELIMIT_API="3/2 seconds")
    client = app.test_client()
    with app.app_context():
        user = make_user("ada@example.com")
        _, first = make_key(user, scopes=["user:read"])
        _, second = make_key(user, scopes=["user:read"])
    wait_for_next_window(2)
    answers = [client.get("/api/users/@me/", headers=bearer(first)) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [remaining(a) for a in answers] == [2, 1, 0]
    assert answers[0].headers["RateLimit-Policy"] == '"api";q=3;w=2'
    assert_limited(client.get("/api/users/@me/", headers=bearer(first)), "api", 3, 2)
    # another key of the same person has its own count
    assert client.get("/api/users/@me/", headers=bearer(second)).status_code == 200
    wait_for_next_window(2)
    assert client.get("/api/users/@me/", headers=bearer(first)).status_code == 200


def test_a_refused_key_is_not_counted(make_app, make_user, make_key):
    """Invalid keys hear 401 (no count, no RateLimit fields): nobody can spend someone's quota
    without their key."""
    app = make_app(KEYVAULT_RATELIMIT_API="2/minute")
    client = app.test_client()
    with app.app_context():
        key, value = make_key(make_user("ada@example.com"), scopes=["user:read"])
    unauthorised = client.get("/api/users/@me/", headers=bearer(value[:-1] + "x"))
    assert unauthorised.status_code == 401 and "RateLimit" not in unauthorised.headers


@pytest.mark.parametrize("how", ["json (fast path)", "form (Flask view)"])
def test_verify_is_limited_per_calling_key_on_both_paths(make_app, make_user, make_key, how):
    app = make_app(KEYVAULT_RATELIMIT_VERIFY="4/5 seconds")
    client = app.test_client()
    with app.app_context():
        _, caller = make_key(make_user("svc@example.com"), scopes=["key:verify"])
        _, subject = make_key(make_user("ada@example.com"), scopes=["user:read"])

    def call():
        if how.startswith("json"):
            return client.post("/api/verify/", json={"key": subject}, headers=bearer(caller))
        return client.post("/api/verify/", data={"token": subject}, headers=bearer(caller))

    wait_for_next_window(5)
    answers = [call() for _ in range(4)]
    assert [a.json["active"] for a in answers] == [True] * 4
    assert [remaining(a) for a in answers] == [3, 2, 1, 0]
    limited = call()
    assert_limited(limited, "verify", 4, 5)
    assert "active" not in limited.json  # never a verdict past the limit


def test_forward_auth_counts_at_the_verify_door(make_app, make_user, make_key):
    app = make_app(KEYVAULT_RATELIMIT_VERIFY="2/minute")
    client = app.test_client()
    with app.app_context():
        _, value = make_key(make_user("ada@example.com"), scopes=["user:read"])
    if time.time() % 60 > 55:  # three calls must fall in one window
        wait_for_next_window(60)
    ok = client.get("/api/forward_auth/", headers=bearer(value))
    assert ok.status_code == 200 and policy(ok)[0] == '"verify";q=2;w=60'
    assert client.get("/api/forward_auth/", headers=bearer(value)).status_code == 200
    assert_limited(client.get("/api/forward_auth/", headers=bearer(value)), "verify", 2, 60)


def test_signup_is_limited_per_address(make_app):
    app = make_app(KEYVAULT_RATELIMIT_SIGNUP="2/hour")
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    auth = AuthActions(client)
    assert auth.signup(email="a@example.com").status_code == 302
    client.post("/logout", data={"csrf_token": auth.csrf("/settings/api-keys")})
    assert auth.signup(email="b@example.com").status_code == 302
    client.post("/logout", data={"csrf_token": auth.csrf("/settings/api-keys")})
    refused = auth.signup(email="c@example.com")
    assert refused.status_code == 429
    assert "Too many sign-ups from your address" in refused.get_data(as_text=True)
    assert refused.headers["RateLimit-Policy"] == '"signup";q=2;w=3600'
    assert int(refused.headers["Retry-After"]) <= 3600
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    assert AuthActions(other).signup(email="c@example.com").status_code == 302


# ---------------------------------------------------------------- many instances, one Redis


@pytest.fixture
def redis_url(tmp_path):
    """A real redis-server on a free port (apt: redis-server), for this test only."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is missing: apt-get install -y redis-server"
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert time.monotonic() < deadline and process.poll() is None, "redis did not start"
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0", process
    process.terminate()
    process.wait(timeout=10)


def test_two_instances_share_one_count_through_redis(database_url, tmp_path, redis_url, app,
                                                      make_user, make_key):
    """Two `keyvault serve` (two workers each) behind no balancer, one Redis: a key gets its
    quota once across all four workers, on the fast path, and not twice; then the window
    resets for both."""
    url, _ = redis_url
    env = {"KEYVAULT_RATELIMIT_STORAGE_URL": url, "KEYVAULT_RATELIMIT_VERIFY": "10/4 seconds"}
    _, caller = make_key(make_user("svc@example.com"), scopes=["key:verify"])
    _, subject = make_key(make_user("ada@example.com"), scopes=["user:read"])
    servers = [start_server(database_url, tmp_path / f"kv{n}.log", extra_env=env)
               for n in (1, 2)]
    try:
        wait_for_next_window(4)
        statuses = []
        for n in range(14):
            response = requests.post(f"{servers[n % 2].url}/api/verify/", json={"key": subject},
                                     headers=bearer(caller), timeout=5)
            statuses.append(response.status_code)
        assert statuses == [200] * 10 + [429] * 4
        wait_for_next_window(4)
        for server in servers:
            again = requests.post(f"{server.url}/api/verify/", json={"key": subject},
                                  headers=bearer(caller), timeout=5)
            assert again.status_code == 200 and again.json()["active"] is True
    finally:
        for server in servers:
            stop_server(server)


def test_a_redis_outage_lets_requests_through_and_is_logged_once(database_url, tmp_path,
                                                                redis_url, app, make_user,
                                                                make_key):
    url, redis = redis_url
    _, caller = make_key(make_user("svc@example.com"), scopes=["key:verify"])
    _, subject = make_key(make_user("ada@example.com"), scopes=["user:read"])
    server = start_server(database_url, tmp_path / "kv.log", workers=1,
                          extra_env={"KEYVAULT_RATELIMIT_STORAGE_URL": url,
                                     "KEYVAULT_RATELIMIT_VERIFY": "1000/minute"})
    try:
        def verify():
            return requests.post(f"{server.url}/api/verify/", json={"key": subject},
                                 headers=bearer(caller), timeout=10)

        assert "RateLimit" in verify().headers
        redis.terminate()
        redis.wait(timeout=10)
        for _ in range(5):
            answer = verify()
            assert answer.status_code == 200 and answer.json()["active"] is True
            assert "RateLimit" not in answer.headers  # not counted: said so by omission
        log = server.log()
        assert log.count("rate-limit storage unreachable") == 1
    finally:
        stop_server(server)


def test_memory_counts_are_exact_per_window_and_forget_finished_windows(monkeypatch):
    """memory:// counts each caller's hits in the current window exactly, starts the next
    window from zero, and drops a finished window's counts at the next sweep."""
    now = [60 * 16_667 + 20.0]  # 20 s into a minute window
    monkeypatch.setattr(ratelimit.time, "time", lambda: now[0])
    limits = RateLimiter("memory://", {"api": parse_quota("api", "3/minute")})
    assert isinstance(limits.storage, WindowCounts)
    answers = [limits.hit("api", "key-a") for _ in range(4)]
    assert [a.allowed for a in answers] == [True, True, True, False]
    assert [a.remaining for a in answers] == [2, 1, 0, 0]
    assert answers[0].reset == 40
    assert limits.hit("api", "key-b").remaining == 2  # another caller has its own count
    now[0] += 40  # the next window
    assert limits.hit("api", "key-a").remaining == 2
    assert len(limits.storage) == 3
    now[0] += WindowCounts.SWEEP_EVERY + 60
    limits.hit("api", "key-c")
    assert len(limits.storage) == 1  # only key-c's count in the current window is left


def test_memory_counts_start_no_threads(monkeypatch):
    """A hit is a dict update: no timer thread per hit, as limits' MemoryStorage starts one."""
    limits = RateLimiter("memory://", {"verify": parse_quota("verify", "100000/minute")})
    started = []
    original = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start",
                        lambda self: (started.append(self), original(self))[1])
    for _ in range(2000):
        limits.hit("verify", "caller")
    assert started == []
