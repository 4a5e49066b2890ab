"""Rate limits on every door (keyvault.ratelimit): the API per key, verify and forward_auth per
calling key, sign-up per address, reset links per address and client — 429 problem+json with
Retry-After and the IETF draft's RateLimit-Policy / RateLimit fields, a window that resets,
counts shared by the workers of one real `keyvault serve` without Redis (and kept across
SIGHUP), counts shared through a real Redis by two real servers, and a Redis outage that never
stops KeyVault."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select

from keyvault import ratelimit, service
from keyvault.extensions import db
from keyvault.models import MailOutbox
from keyvault.ratelimit import RateLimiter, parse_quota
from keyvault.service.limit_terms import RateTerms
from keyvault.window_counts import (
    SHARED_COUNTS_FD,
    SharedWindowCounts,
    WindowCounts,
    shared_between_workers,
)
from tests.conftest import (
    PASSWORD,
    AuthActions,
    _free_port,
    bad_checksum,
    csrf_from,
    start_server,
    stop_server,
)


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
    unauthorised = client.get("/api/users/@me/", headers=bearer(bad_checksum(value)))
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


@contextlib.contextmanager
def redis_server(directory):
    """A real redis-server on a free port (apt: redis-server): (its URL, its process)."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is missing: apt-get install -y redis-server"
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert time.monotonic() < deadline and process.poll() is None, "redis did not start"
        time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0", process
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def redis_url(tmp_path):
    """A real redis-server for this test only: (its URL, its process)."""
    with redis_server(tmp_path) as found:
        yield found


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
    ada = make_user("ada@example.com")
    subject_key, subject = make_key(ada, scopes=["user:read"])
    service.key_limits.set_key_limits(ada, subject_key.public_id, origin=service.Origin(),
                                      rate_limit=RateTerms(500, 60))  # counted in Redis too
    db.session.commit()
    server = start_server(database_url, tmp_path / "kv.log", workers=1,
                          extra_env={"KEYVAULT_RATELIMIT_STORAGE_URL": url,
                                     "KEYVAULT_RATELIMIT_VERIFY": "1000/minute"})
    try:
        def verify():
            return requests.post(f"{server.url}/api/verify/", json={"key": subject},
                                 headers=bearer(caller), timeout=10)

        counted = verify()
        assert "RateLimit" in counted.headers
        assert counted.json()["ratelimit"] == {"limit": 500, "remaining": 499,
                                               "reset": counted.json()["ratelimit"]["reset"]}
        redis.terminate()
        redis.wait(timeout=10)
        for _ in range(5):
            answer = verify()
            assert answer.status_code == 200 and answer.json()["active"] is True
            assert "RateLimit" not in answer.headers  # not counted: said so by omission
            # The subject key is still limited: its answer says so (a verifier that caches
            # must not keep it), with nothing counted.
            assert answer.json()["ratelimit"] == {"limit": 500, "remaining": None,
                                                  "reset": None}
        log = server.log()
        assert log.count("rate limits: storage unreachable") == 1
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


# ---------------------------------------------------------------- one server, many workers


def test_shared_counts_are_exact_across_processes_and_threads():
    """Four forked processes (as granian forks workers) of four threads each, 250 hits each on
    one key: every hit gets its own number, 1 to 4,000 — no increment is lost or doubled."""
    context = multiprocessing.get_context("fork")
    with shared_between_workers("memory://"):
        fd = int(os.environ[SHARED_COUNTS_FD])
        results = context.SimpleQueue()

        def worker():
            counts = SharedWindowCounts(fd)
            got = []

            def hits():
                got.extend(counts.incr("kv/api/1/key-a", 60) for _ in range(250))

            threads = [threading.Thread(target=hits) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            results.put(got)

        processes = [context.Process(target=worker) for _ in range(4)]
        for process in processes:
            process.start()
        numbers = [n for _ in processes for n in results.get()]
        for process in processes:
            process.join(timeout=30)
        assert sorted(numbers) == list(range(1, 4001))
        assert SharedWindowCounts(fd).incr("kv/api/1/key-a", 60) == 4001  # a worker started later


class SmallTable(SharedWindowCounts):
    SLOTS = 8
    PROBES = 4
    SIZE = SLOTS * SharedWindowCounts._SLOT.size


def test_shared_counts_reuse_finished_slots_and_keep_busy_counts_when_crowded(monkeypatch,
                                                                                caplog):
    """A finished window's slots are taken again; when every slot a new key may use is live,
    the smallest count gives way (logged), so a flood of one-hit callers cannot wipe a busy one."""
    now = [1_000_000.0]
    monkeypatch.setattr(ratelimit.time, "time", lambda: now[0])
    fd = os.memfd_create("test-counts")
    os.ftruncate(fd, SmallTable.SIZE)
    try:
        table = SmallTable(fd)
        assert [table.incr("busy", 60) for _ in range(5)] == [1, 2, 3, 4, 5]
        for n in range(7):
            assert table.incr(f"one-hit-{n}", 60) == 1
        now[0] += 61  # every window is over: all eight slots are free again
        assert [table.incr(f"next-{n}", 60) for n in range(8)] == [1] * 8
        assert [table.incr("busy", 60) for _ in range(50)][-1] == 50
        for n in range(20):  # more callers than slots, none of them ever dropped while busy
            table.incr(f"flood-{n}", 60)
        assert table.incr("busy", 60) == 51
        assert "rate limits: the table is crowded" in caplog.text
    finally:
        os.close(fd)


def within_one_hour_window() -> None:
    """Make sure the next minute of calls falls in one `…/hour` window."""
    if time.time() % 3600 > 3540:
        wait_for_next_window(3600)


def worker_pids(server) -> set[int]:
    return {int(line.split()[-1]) for line in server.log().splitlines()
            if "Spawning worker-" in line}


def test_an_api_limit_is_exact_across_the_workers_of_one_server(database_url, tmp_path, app,
                                                                make_user, make_key):
    """Without Redis, 30 parallel calls (each on a new connection, which the kernel spreads
    over the two workers' sockets) to a `20/hour` limit let exactly 20 through; the workers
    that SIGHUP puts in their place go on from the same count."""
    _, value = make_key(make_user("ada@example.com"), scopes=["user:read"])
    server = start_server(database_url, tmp_path / "kv.log", workers=2, extra_env={
        "KEYVAULT_RATELIMIT_API": "20/hour", "KEYVAULT_LISTEN_SOCKETS": "per-worker"})
    try:
        within_one_hour_window()

        def call(_):
            return requests.get(f"{server.url}/api/users/@me/", headers=bearer(value),
                                timeout=10)

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(call, range(30)))
        statuses = [answer.status_code for answer in answers]
        assert statuses.count(200) == 20 and statuses.count(429) == 10, statuses
        assert sorted(remaining(a) for a in answers if a.status_code == 200) == list(range(20))

        before = worker_pids(server)
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "Stopping old worker-2" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # and on through the old worker's exit
        assert len(worker_pids(server) - before) == 2, server.log()[-2000:]
        after = [call(n).status_code for n in range(6)]
        assert after == [429] * 6
    finally:
        stop_server(server)


def sign_up(url: str, email: str, headers: dict | None = None) -> int:
    browser = requests.Session()
    page = browser.get(f"{url}/signup", headers=headers, timeout=10)
    answer = browser.post(f"{url}/signup", headers=headers, timeout=10, allow_redirects=False,
                          data={"email": email, "password": PASSWORD, "confirm": PASSWORD,
                                "csrf_token": csrf_from(page.text)})
    return answer.status_code


def test_the_signup_limit_is_exact_across_the_workers_of_one_server(database_url, tmp_path,
                                                                    app):
    """Eight parallel sign-ups from one address, each a new browser, against `3/hour` on two
    workers: three accounts, five refusals."""
    server = start_server(database_url, tmp_path / "kv.log", workers=2, extra_env={
        "KEYVAULT_RATELIMIT_SIGNUP": "3/hour", "KEYVAULT_LISTEN_SOCKETS": "per-worker"})
    try:
        within_one_hour_window()
        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(lambda n: sign_up(server.url, f"user{n}@example.com"),
                                     range(8)))
        assert sorted(statuses) == [302] * 3 + [429] * 5, statuses
    finally:
        stop_server(server)


def test_nobody_elsewhere_can_spend_the_owners_reset_links(database_url, tmp_path, app,
                                                           make_user):
    """The reset rule (service.resets), on two workers behind a trusted proxy that names each
    client: a stranger spends only their own links for the address (2 an hour here); the
    owner's browser, logged in before, still gets one even from the stranger's very address;
    a second stranger is held by the address's total (3 an hour from all strangers), which
    the owner's browser is not."""
    make_user("ada@example.com")
    server = start_server(database_url, tmp_path / "kv.log", workers=2, extra_env={
        "KEYVAULT_RATELIMIT_RESET": "2/hour", "KEYVAULT_RATELIMIT_RESET_TOTAL": "3/hour",
        "KEYVAULT_TRUSTED_PROXIES": "1", "KEYVAULT_LISTEN_SOCKETS": "per-worker"})
    stranger, other_stranger = "198.51.100.7", "203.0.113.9"

    def ask(browser: requests.Session, address: str) -> requests.Response:
        via = {"X-Forwarded-For": address}
        page = browser.get(f"{server.url}/password/forgot", headers=via, timeout=10)
        return browser.post(f"{server.url}/password/forgot", headers=via, timeout=10,
                            data={"email": "Ada@example.com", "csrf_token": csrf_from(page.text)})

    def links_mailed() -> int:
        db.session.rollback()
        return db.session.scalar(select(func.count(MailOutbox.id)).where(
            MailOutbox.to_address == "ada@example.com", MailOutbox.kind == "password_reset"))

    try:
        within_one_hour_window()
        owner = requests.Session()
        page = owner.get(f"{server.url}/login", timeout=10)
        logged_in = owner.post(f"{server.url}/login", timeout=10, allow_redirects=False,
                               headers={"X-Forwarded-For": "192.0.2.50"},
                               data={"email": "ada@example.com", "password": PASSWORD,
                                     "next": "", "csrf_token": csrf_from(page.text)})
        assert logged_in.status_code == 302 and "kv_device" in owner.cookies
        owner.post(f"{server.url}/logout", timeout=10, data={
            "csrf_token": csrf_from(owner.get(f"{server.url}/settings/api-keys").text)})
        assert "kv_device" in owner.cookies  # logging out keeps the browser known

        assert [ask(requests.Session(), stranger).status_code for _ in range(2)] == [200, 200]
        refused = ask(requests.Session(), stranger)
        assert refused.status_code == 429
        assert "Too many reset links asked for this address from here" in refused.text
        assert refused.headers["RateLimit-Policy"] == '"reset";q=2;w=3600'

        assert ask(owner, stranger).status_code == 200  # the owner's browser, anywhere

        assert ask(requests.Session(), other_stranger).status_code == 200  # the third of 3
        total = ask(requests.Session(), other_stranger)
        assert total.status_code == 429
        assert total.headers["RateLimit-Policy"] == '"reset_total";q=3;w=3600'
        assert "can still ask for one" in total.text
        assert ask(requests.Session(), "192.0.2.99").status_code == 429  # any new stranger

        assert ask(owner, "192.0.2.50").status_code == 200
        assert links_mailed() == 5  # 2 + 1 for strangers, 2 for the owner
        assert ask(requests.Session(), stranger).status_code == 429
        assert links_mailed() == 5
    finally:
        stop_server(server)
