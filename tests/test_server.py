"""`keyvault serve` itself, run as operators run it: slow clients, graceful stops and restarts,
scrubbed access logs, and instances side by side."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from keyvault import tokens
from keyvault.server import kernel_migrates_requests
from tests.conftest import start_server, stop_server

pytestmark = pytest.mark.live_server


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname, parts.port


def verify(url: str, caller: str, value: str, timeout: float = 5) -> tuple[float, requests.Response]:
    started = time.monotonic()
    response = requests.post(f"{url}/api/verify/", json={"key": value}, headers=bearer(caller),
                             timeout=timeout)
    return time.monotonic() - started, response


@pytest.fixture
def service_key(make_user, make_key):
    _, value = make_key(make_user("service@example.com"), label="service", scopes=["key:verify"])
    return value


@pytest.fixture
def own_server(database_url, tmp_path, app):
    """A `keyvault serve` of this test's own, to stop, restart or signal as the test likes."""
    servers = []

    def start(**extra_env):
        server = start_server(database_url, tmp_path / f"serve-{len(servers)}.log",
                              extra_env=extra_env or None)
        servers.append(server)
        return server

    yield start
    for server in servers:
        stop_server(server)


class SlowBody:
    """A connection that sent a request head announcing a body, then sends it a byte a second."""

    def __init__(self, host: str, port: int, length: int = 10_000):
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.sendall(
            b"POST /api/verify/ HTTP/1.1\r\nHost: keyvault\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {length}\r\n\r\n".encode())

    def trickle(self) -> None:
        self.sock.sendall(b" ")

    def close(self) -> None:
        self.sock.close()


def test_fifty_slow_clients_do_not_starve_verify(live_server, user, make_key, service_key):
    """50 connections trickle their bodies a byte a second; meanwhile every verify is answered,
    each in well under a second, and /healthz answers too."""
    _, value = make_key(user, scopes=["user:read"])
    host, port = address(live_server.url)
    slow = [SlowBody(host, port) for _ in range(50)]
    stop = threading.Event()

    def trickle():
        while not stop.wait(1.0):
            for client in slow:
                client.trickle()

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        time.sleep(1.5)  # every slow client has its head in and a byte or so of its body
        timings = []
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            elapsed, response = verify(live_server.url, service_key, value)
            assert response.status_code == 200 and response.json()["active"] is True
            timings.append(elapsed)
            health = requests.get(f"{live_server.url}/healthz", timeout=5)
            assert health.status_code == 200
            time.sleep(0.05)
    finally:
        stop.set()
        trickler.join()
        for client in slow:
            client.close()
    assert len(timings) >= 20
    assert max(timings) < 1.0, f"slowest verify took {max(timings):.2f} s"


def test_a_body_that_never_finishes_gets_408_not_a_thread(own_server):
    """A client that announces a body and stalls is answered 408 after the body timeout; it
    never held a thread (see the slow-client test), and the server frees its connection."""
    server = own_server(KEYVAULT_BODY_TIMEOUT="1")
    host, port = address(server.url)
    client = SlowBody(host, port, length=100)
    try:
        client.sock.settimeout(10)
        started = time.monotonic()
        head = client.sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 408 "), head[:200]
        assert 0.9 < time.monotonic() - started < 8
        body = json.loads(head.split(b"\r\n\r\n", 1)[1])
        assert body["status"] == 408 and "did not arrive" in body["detail"]
    finally:
        client.close()


def test_sigterm_lets_requests_in_flight_finish(own_server, user, make_key, service_key):
    """SIGTERM: the server stops taking connections, answers the request it is reading, then exits."""
    _, value = make_key(user, scopes=["user:read"])
    server = own_server()
    host, port = address(server.url)
    body = json.dumps({"key": value}).encode()
    sock = socket.create_connection((host, port), timeout=10)
    try:
        sock.sendall(b"POST /api/verify/ HTTP/1.1\r\nHost: keyvault\r\nContent-Type: application/json\r\n"
                     + f"Authorization: Bearer {service_key}\r\nContent-Length: {len(body)}\r\n"
                       "Connection: close\r\n\r\n".encode() + body[:10])
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        sock.sendall(body[10:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["active"] is True
    assert server.process.wait(timeout=30) == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/healthz", timeout=2)


def require_migrating_kernel() -> None:
    """Per-worker sockets lose no restart only where the kernel migrates a closing socket's
    queue: .ci/run sets it, as the README tells operators to."""
    assert kernel_migrates_requests(), (
        "net.ipv4.tcp_migrate_req is not 1: run `sysctl -w net.ipv4.tcp_migrate_req=1` "
        "(as root; .ci/run does) for keyvault serve's per-worker sockets")


@pytest.mark.parametrize("sockets", ["shared", "per-worker"])
def test_sighup_replaces_the_workers_without_losing_a_request(own_server, user, make_key,
                                                              service_key, sockets):
    """SIGHUP starts a new worker before stopping each old one: four clients that verify in a
    loop the whole time, each on a new connection (so there are always connections waiting to
    be accepted), and four that pause between connecting and sending, see no error, and both
    workers are replaced — with one shared listening socket, and with a socket per worker."""
    if sockets == "per-worker":
        require_migrating_kernel()
    _, value = make_key(user, scopes=["user:read"])
    server = own_server(KEYVAULT_LISTEN_SOCKETS=sockets)

    def worker_pids() -> set[int]:
        return {int(line.split()[-1]) for line in server.log().splitlines()
                if "Spawning worker-" in line}

    before = worker_pids()
    failures, answered = [], []
    done = threading.Event()

    def client():
        while not done.is_set():
            try:
                response = requests.post(f"{server.url}/api/verify/", json={"key": value},
                                         headers=bearer(service_key), timeout=5)
                if response.status_code != 200 or response.json()["active"] is not True:
                    failures.append(response.status_code)
                answered.append(1)
            except requests.RequestException as error:
                failures.append(repr(error))

    def hesitant_client():
        """Connects, then takes 20 ms to send its request: a worker that stops in between must
        not close the connection unanswered (granian closes what it accepted but has not read)."""
        host, port = address(server.url)
        body = json.dumps({"key": value}).encode()
        request = (b"POST /api/verify/ HTTP/1.1\r\nHost: keyvault\r\n"
                   b"Content-Type: application/json\r\nConnection: close\r\n"
                   + f"Authorization: Bearer {service_key}\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        while not done.is_set():
            try:
                with socket.create_connection((host, port), timeout=5) as sock:
                    time.sleep(0.02)
                    sock.sendall(request)
                    answer = b""
                    while chunk := sock.recv(65536):
                        answer += chunk
                if not answer.startswith(b"HTTP/1.1 200 "):
                    failures.append(answer[:100] or "closed unanswered")
                answered.append(1)
            except OSError as error:
                failures.append(repr(error))

    clients = [threading.Thread(target=client) for _ in range(4)]
    clients += [threading.Thread(target=hesitant_client) for _ in range(4)]
    for thread in clients:
        thread.start()
    try:
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while "Stopping old worker-2" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # and on through the old worker's exit
    finally:
        done.set()
        for thread in clients:
            thread.join()
    assert failures == []
    assert len(answered) > 50
    assert len(worker_pids() - before) == 2, server.log()[-2000:]


def test_keys_stay_out_of_the_access_log(live_server, user, make_key):
    """A key put in the URL (any parameter name, percent-encoded too), the Referer, the
    User-Agent or as a Basic-auth user name never reaches the access log."""
    _, value = make_key(user, scopes=["user:read"])
    marker = tokens.generate()[-12:]
    basic = base64.b64encode(f"{value}:x".encode()).decode()
    requests.get(f"{live_server.url}/api/users/@me/?personal%5Fapi%5Fkey={value}", timeout=5)
    requests.get(f"{live_server.url}/healthz?anything={value}", timeout=5,
                 headers={"Referer": f"https://example.com/?token={value}",
                          "User-Agent": f"my-script {value}"})
    requests.get(f"{live_server.url}/api/users/@me/", headers={"Authorization": f"Basic {basic}"},
                 timeout=5)
    requests.get(f"{live_server.url}/healthz?probe={marker}", timeout=5)
    for _ in range(50):  # the access line is written just after the response
        if marker in live_server.log():
            break
        time.sleep(0.05)
    log = live_server.log()
    assert marker in log
    assert value not in log
    assert log.count("[redacted]") >= 4
    assert '"my-script [redacted]"' in log


def test_two_instances_on_one_host_each_serve(own_server, tmp_path):
    """Nothing per user or per host is shared (gunicorn's control socket was): a second
    instance leaves the first one serving, and neither writes into $HOME."""
    home = tmp_path / "home"
    home.mkdir()
    first = own_server(HOME=str(home), XDG_RUNTIME_DIR=str(home))
    second = own_server(HOME=str(home), XDG_RUNTIME_DIR=str(home))
    for server in (first, second, first):
        assert requests.get(f"{server.url}/readyz", timeout=5).status_code == 200
    assert list(home.iterdir()) == []


def _children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


def _connections_per_worker(server, port: int) -> list[int]:
    """Established connections to `port` held by each worker process (/proc, no tools)."""
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                established.add(fields[9])  # the socket's inode
    counts = []
    for worker in _children(server.process.pid):
        inodes = set()
        for fd in Path(f"/proc/{worker}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        counts.append(len(inodes & established))
    return counts


def test_a_socket_per_worker_spreads_a_burst_of_connections_over_the_workers(own_server):
    """32 keep-alive connections opened at once (a benchmark's, a proxy's pool) land on both
    workers: with one shared socket, whichever worker was awake took them all in some runs and
    kept them, leaving a core idle."""
    require_migrating_kernel()
    server = own_server(KEYVAULT_LISTEN_SOCKETS="per-worker")
    host, port = address(server.url)
    connections = [socket.create_connection((host, port), timeout=5) for _ in range(32)]
    try:
        for connection in connections:
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: keyvault\r\n\r\n")
        for connection in connections:
            assert connection.recv(4096).startswith(b"HTTP/1.1 200")
        counts = _connections_per_worker(server, port)
        assert len(counts) == 2 and sum(counts) == 32, counts
        assert min(counts) >= 4, counts  # an even split is 16/16; 3 or fewer: p < 1e-5
    finally:
        for connection in connections:
            connection.close()


def allowed_cpus(pid: int) -> dict[int, str]:
    """Each thread of a process -> the CPUs it may run on (Cpus_allowed_list)."""
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                threads[int(task.name)] = line.split(":", 1)[1].strip()
    return threads


def spawned_workers(server) -> list[int]:
    return [int(line.split()[-1]) for line in server.log().splitlines()
            if "Spawning worker-" in line]


@pytest.mark.parametrize("setting", ["auto", "off"])
def test_one_worker_per_cpu_keeps_each_worker_on_its_own_cpu(database_url, tmp_path, user,
                                                             make_key, service_key, setting):
    """With as many workers as CPUs on SQLite, `auto` gives each worker (every thread of it:
    the event loop, granian's I/O thread, the app's threads) a CPU of its own, a different one
    each; on PostgreSQL, or with `off`, they are free to run anywhere. Either way they answer."""
    cpus = sorted(os.sched_getaffinity(0))
    _, value = make_key(user, scopes=["user:read"])
    server = start_server(database_url, tmp_path / "serve.log", workers=len(cpus),
                          extra_env={"KEYVAULT_PIN_WORKERS": setting})
    try:
        for _ in range(4 * len(cpus)):  # new connections: each worker gets some
            _, response = verify(server.url, service_key, value)
            assert response.json()["active"] is True
        workers = spawned_workers(server)
        assert len(workers) == len(cpus)
        placed = [set(allowed_cpus(pid).values()) for pid in workers]
        everywhere = allowed_cpus(os.getpid())[os.getpid()]
        if setting == "auto" and database_url.startswith("sqlite"):
            assert all(len(threads) == 1 for threads in placed), placed
            assert sorted(int(threads.pop()) for threads in placed) == cpus
            assert "One worker per CPU: each keeps to a CPU of its own" in server.log()
        else:
            assert placed == [{everywhere}] * len(cpus), placed
    finally:
        stop_server(server)


def test_workers_are_pinned_only_one_to_a_cpu():
    """More or fewer workers than CPUs, PostgreSQL, or `off`: nobody is pinned (instances side
    by side would otherwise pile onto the first CPUs)."""
    from keyvault.server import pins_workers

    cpus = len(os.sched_getaffinity(0))
    assert pins_workers("auto", cpus, sqlite=True)
    assert not pins_workers("auto", cpus, sqlite=False)  # PostgreSQL's backends need the CPUs
    assert not pins_workers("auto", cpus + 1, sqlite=True)
    assert not pins_workers("off", cpus, sqlite=True)
    if cpus > 1:
        assert not pins_workers("auto", cpus - 1, sqlite=True)


def test_every_worker_runs_its_event_loop_on_uvloop(live_server, user, make_key, service_key):
    """Every request passes through a worker's event loop; asyncio's own cost verify 13% of its
    throughput on the benchmark, so `keyvault serve` names uvloop (supervisor.event_loop) and
    each worker says which loop it runs when it is ready."""
    _, value = make_key(user, scopes=["user:read"])
    _, response = verify(live_server.url, service_key, value)
    assert response.json()["active"] is True
    ready = {int(pid): loop for pid, loop in
             re.findall(r"worker (\d+) ready: (\w+) event loop", live_server.log())}
    assert ready == {pid: "uvloop" for pid in spawned_workers(live_server)}
