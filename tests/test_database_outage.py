"""A real PostgreSQL stopped and started again under load, with `keyvault serve` in front: KeyVault
fails closed with 503 (never `active: true`, never a hang), logs the outage in a few lines
without tracebacks or SQL, and recovers by itself."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text

from keyvault import create_app, service
from tests.conftest import _free_port, _migrate, base_overrides, start_server, stop_server

PASSWORD = "outage-test-pw"


class Cluster:
    """A throw-away PostgreSQL cluster of this test's own, which the test may stop and start."""

    def __init__(self, root: Path):
        versions = sorted(Path("/usr/lib/postgresql").iterdir(), key=lambda p: float(p.name))
        self.bin = versions[-1] / "bin"
        self.root, self.port = root, _free_port()
        self.url = f"postgresql+psycopg://keyvault:{PASSWORD}@127.0.0.1:{self.port}/keyvault"

    def _as_postgres(self, *command: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True,
                       capture_output=True, timeout=60)

    def create(self) -> None:
        for folder, mode in (("data", 0o700), ("socket", 0o755)):
            path = self.root / folder
            path.mkdir(mode=mode)
            shutil.chown(path, "postgres", "postgres")
        (self.root / "server.log").touch()
        shutil.chown(self.root / "server.log", "postgres", "postgres")
        self._as_postgres(str(self.bin / "initdb"), "-D", str(self.root / "data"), "-U",
                          "postgres", "--auth-local=trust", "--auth-host=scram-sha-256",
                          "--no-sync", "-E", "UTF8", "--locale=C.UTF-8")
        self.start()
        self._as_postgres(str(self.bin / "psql"), "-h", str(self.root / "socket"), "-p",
                          str(self.port), "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-q",
                          "-c", f"CREATE ROLE keyvault LOGIN PASSWORD '{PASSWORD}'",
                          "-c", "CREATE DATABASE keyvault OWNER keyvault")

    def start(self) -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-l",
                          str(self.root / "server.log"), "-w", "start", "-o",
                          f"-p {self.port} -k {self.root / 'socket'} "
                          "-c listen_addresses=127.0.0.1 -c fsync=off")

    def stop(self) -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m",
                          "fast", "-w", "stop")


@pytest.fixture(scope="module")
def cluster():
    assert Path("/usr/lib/postgresql").is_dir(), "PostgreSQL is not installed (apt-get install " \
                                                 "postgresql): this test runs a cluster of its own"
    # Not under pytest's temporary folder, which is owner-only: the postgres user must enter.
    root = Path(tempfile.mkdtemp(prefix="keyvault-outage-"))
    os.chmod(root, 0o755)
    cluster = Cluster(root)
    try:
        cluster.create()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # a failed test may leave it down
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def keys(cluster):
    """A user's key and a service key, made in the cluster's database."""
    _migrate(cluster.url)
    app = create_app(base_overrides(cluster.url))
    with app.app_context():
        origin = service.Origin("127.0.0.1", "pytest")
        owner = service.sign_up("owner@example.com", "correct horse battery", origin)
        _, value = service.create_key(owner, label="used", scopes=["user:read"], origin=origin)
        _, caller = service.create_key(owner, label="service", scopes=["key:verify"],
                                       origin=origin)
        from keyvault.extensions import db

        db.engine.dispose()
    return value, caller


class Load:
    """Threads calling verify as fast as they can; every answer is kept."""

    def __init__(self, url: str, value: str, caller: str, threads: int = 4):
        self.url, self.value, self.caller = url, value, caller
        self.answers: list[tuple[float, float, int, dict | None, dict]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run) for _ in range(threads)]

    def run(self):
        with requests.Session() as session:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    response = session.post(
                        f"{self.url}/api/verify/", json={"key": self.value},
                        headers={"Authorization": f"Bearer {self.caller}",
                                 "Connection": "close"}, timeout=10)
                    body = response.json() if response.content else None
                    self.answers.append((started, time.monotonic() - started,
                                         response.status_code, body, response.headers))
                except requests.RequestException as error:
                    self.answers.append((started, time.monotonic() - started, 0,
                                         {"error": str(error)}, {}))

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=15)

    def since(self, moment: float) -> list:
        return [answer for answer in self.answers if answer[0] >= moment]


def test_an_outage_under_load_fails_closed_and_recovers(cluster, keys, tmp_path):
    value, caller = keys
    server = start_server(cluster.url, tmp_path / "serve.log")
    try:
        with Load(server.url, value, caller) as load:
            time.sleep(1.5)
            assert any(a[2] == 200 and a[3]["active"] for a in load.answers), load.answers[:3]
            cluster.stop()
            down = time.monotonic()
            time.sleep(4)
            during = load.since(down + 0.5)  # answers to requests sent once the server was gone
            readyz = requests.get(f"{server.url}/readyz", timeout=10)
            cluster.start()
            up = time.monotonic()
            deadline = up + 20
            while not any(a[2] == 200 for a in load.since(up)):
                assert time.monotonic() < deadline, "KeyVault did not recover"
                time.sleep(0.2)
        assert len(during) >= 10, during  # the load went on through the outage
        for _, elapsed, status, body, headers in during:
            assert status == 503, (status, body)
            assert headers["Content-Type"] == "application/problem+json"
            assert int(headers["Retry-After"]) > 0
            assert elapsed < 5, elapsed  # KEYVAULT_DATABASE_TIMEOUT is 2 s
        assert (readyz.status_code, readyz.headers["Retry-After"]) == (503, "5")
        recovered = [a for a in load.since(up) if a[2] == 200]
        assert all(a[3]["active"] is True for a in recovered)
        assert not [a for a in load.answers if a[2] not in (200, 503)], "only verdicts or 503"
        log = server.log()
        assert "Traceback" not in log and "SELECT" not in log
        outage_lines = [line for line in log.splitlines() if "database unavailable" in line]
        assert 1 <= len(outage_lines) <= 8, outage_lines  # per kind, per worker, per 30 s
    finally:
        stop_server(server)
    # Afterwards the same database still holds what it held: nothing was half-written.
    engine = create_engine(cluster.url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM api_keys")).scalar() == 2
    engine.dispose()


def test_a_restart_of_the_database_costs_keyvault_serve_no_failed_verify(cluster, keys, tmp_path):
    """A restart of PostgreSQL (every backend gone) between two requests: every verify and API
    call after it is answered, none with a 503. One worker, so the load leaves both of its event
    loop's connections open (server.lookups), and its threads theirs, all dead after the
    restart."""
    value, caller = keys
    server = start_server(cluster.url, tmp_path / "serve.log", workers=1)

    def verify(_=None):
        answer = requests.post(f"{server.url}/api/verify/", json={"key": value},
                               headers={"Authorization": f"Bearer {caller}"}, timeout=10)
        return answer.status_code, answer.json().get("active")

    def me(_=None):  # on the worker's threads: their own hot-path connections and the pool's
        answer = requests.get(f"{server.url}/api/users/@me/", timeout=10,
                              headers={"Authorization": f"Bearer {value}"})
        return answer.status_code, answer.json().get("email")

    try:
        with ThreadPoolExecutor(32) as pool:
            assert set(pool.map(verify, range(600))) == {(200, True)}
            assert set(pool.map(me, range(200))) == {(200, "owner@example.com")}
        cluster.stop()
        cluster.start()
        assert [verify() for _ in range(5)] == [(200, True)] * 5
        assert [me() for _ in range(40)] == [(200, "owner@example.com")] * 40
        assert "database unavailable" not in server.log()
    finally:
        stop_server(server)


def test_a_threads_first_lookup_after_a_restart_gets_a_live_connection(cluster, keys):
    """The usage timer writes held stamps on a pooled hot-path connection and returns it to the
    pool (keystore.write_pending: what every verify answered on the event loop leaves behind).
    After a restart of PostgreSQL that pooled connection is dead; a thread's first lookup then
    checks out a live one, instead of failing with a 503 on it, and on it again and again."""
    from keyvault import clock
    from keyvault.keystore import dispose, keystore
    from keyvault.service.keys import pepper
    from keyvault.tokens import digest_of

    value, _ = keys
    app = create_app(base_overrides(cluster.url))
    store = keystore(app)
    digest = digest_of(value, pepper(app))
    try:
        [row] = store.lookup([digest])
        store.stamp(row.id, row.public_id, clock.now(), write=False)
        assert store.write_pending()  # its connection is back in the pool, idle
        cluster.stop()
        cluster.start()
        found = []
        for _ in range(2):  # two threads, each checking out its first connection
            thread = threading.Thread(target=lambda: found.append(store.lookup([digest])))
            thread.start()
            thread.join(timeout=30)
        assert [[r.public_id for r in rows] for rows in found] == [[row.public_id]] * 2
    finally:
        dispose(app)


def test_background_tasks_log_an_outage_once_and_its_end(cluster, keys, tmp_path, smtp_server):
    """Through an outage of several seconds, each worker's mail sender (every second here) and
    usage flush (every second here, counts held from the load) write one line per kind of
    failure, not one per round, and one line when they work again."""
    value, caller = keys
    server = start_server(cluster.url, tmp_path / "serve.log", smtp=smtp_server,
                          extra_env={"KEYVAULT_USAGE_FLUSH_SECONDS": "1"})
    try:
        with Load(server.url, value, caller) as load:
            time.sleep(1.5)
            cluster.stop()  # uses of the last second are still held: the flush meets the outage
            time.sleep(8)
            cluster.start()
            up = time.monotonic()
            deadline = up + 30
            while not (any(a[2] == 200 for a in load.since(up))
                       and server.log().count("mail sender: working again") == 2
                       and "key usage: working again" in server.log()):
                assert time.monotonic() < deadline, server.log()[-3000:]
                time.sleep(0.2)
        lines = server.log().splitlines()
        for task in ("mail sender", "key usage"):
            failures = [line for line in lines if f"{task}: " in line and "at most every" in line]
            kinds = {re.sub(r"\d+", "N", line.split(f"{task}: ", 1)[1].split(";")[0])
                     for line in failures}
            # ~8 rounds per worker before: now at most one line per kind per worker (2 workers)
            assert 1 <= len(failures) <= 2 * len(kinds), failures
            assert all("more since the last line" not in line for line in failures)
            recovered = [line for line in lines if f"{task}: working again" in line]
            assert 1 <= len(recovered) <= 2, recovered
            assert any("more not written" in line for line in recovered), recovered
        assert "Traceback" not in server.log()
    finally:
        stop_server(server)


def test_the_event_loops_lookup_reads_what_a_threads_does_and_fails_and_recovers_alike(cluster,
                                                                                       keys):
    """keyvault serve's loop sends verify's lookup on connections of its own (server.lookups):
    its rows become the very KeyRow a thread's lookup makes; the lookups of requests waiting at
    once go in one statement, each request getting the rows of its own keys; with the server
    down it hands back the thread's error (SQLAlchemy's OperationalError: 503) within
    KEYVAULT_DATABASE_TIMEOUT; and the connections the restarted server dropped are replaced
    without a failed lookup."""
    import asyncio

    from sqlalchemy.exc import OperationalError

    from keyvault.handoff import Fetched, FetchFirst, fetched_on_the_loop
    from keyvault.keystore import DIGEST_COLUMNS, dispose, keystore
    from keyvault.server.lookups import Lookups
    from keyvault.service.keys import pepper
    from keyvault.tokens import digest_of

    value, caller = keys
    app = create_app(base_overrides(cluster.url))
    store = keystore(app)
    digests = [digest_of(value, pepper(app)), digest_of(caller, pepper(app))]

    def on_the_loop(fetched: Fetched):
        token = fetched_on_the_loop.set(fetched)
        try:
            return store.lookup(digests)
        finally:
            fetched_on_the_loop.reset(token)

    with pytest.raises(FetchFirst) as asked:
        on_the_loop(Fetched())  # nothing fetched yet: the loop must not wait here
    need = asked.value
    assert need.digests == tuple(digests)

    class Counting(Lookups):
        statements = 0

        async def _rows(self, wanted):
            self.statements += 1
            return await super()._rows(wanted)

    lookups = Counting.of(app)
    unknown = digest_of("kv_" + "x" * 40, pepper(app))

    async def scenario():
        first = await lookups.fetch(need)
        assert first.error is None and len(first.rows) == 2
        by_thread = sorted(store.lookup(digests))
        assert sorted(on_the_loop(first)) == by_thread
        assert {row.label for row in by_thread} == {"used", "service"}
        asked = [(digests[0],), (digests[1],), (unknown,), (digests[1], unknown)] * 3
        statements = lookups.statements
        each = await asyncio.gather(*(lookups.fetch(FetchFirst(wanted)) for wanted in asked))
        assert lookups.statements == statements + 1  # twelve requests, one statement
        assert [sorted(labels_of(f.rows)) for f in each] == [
            ["used"], ["service"], [], ["service"]] * 3
        assert all(f.digests == wanted for f, wanted in zip(each, asked, strict=True))
        cluster.stop()
        try:
            started = time.monotonic()
            down = await lookups.fetch(need)
            assert time.monotonic() - started < 3  # KEYVAULT_DATABASE_TIMEOUT is 2 s
            with pytest.raises(OperationalError):
                on_the_loop(down)
            assert lookups._idle == []  # the failed connection is not kept
        finally:
            cluster.start()
        again = await lookups.fetch(need)  # a new connection, by itself
        assert sorted(on_the_loop(again)) == by_thread
        lookups._idle.append(await lookups._connect())  # as after two senders' statements
        cluster.stop()  # the idle connections die with the server ...
        cluster.start()
        assert len(lookups._idle) == 2
        restarted = await lookups.fetch(need)  # ... and are replaced within the same lookup
        assert restarted.error is None and sorted(on_the_loop(restarted)) == by_thread
        await lookups.close()

    def labels_of(rows):
        names = {row.digest: row.label for row in by_thread_rows}
        return [names[row[DIGEST_COLUMNS[0]]] for row in rows]

    by_thread_rows = store.lookup(digests)
    try:
        # A loop of its own, on a thread of its own: in the whole suite, the browser tests'
        # Playwright keeps an event loop running on this thread (asyncio.run would refuse).
        with ThreadPoolExecutor(1) as apart:
            apart.submit(lambda: asyncio.run(scenario())).result()
    finally:
        dispose(app)


def test_one_lookup_at_a_time_but_a_stuck_one_does_not_hold_up_the_rest(cluster, keys):
    """The loop sends one statement at a time (the requests that come meanwhile go in the next,
    together), but when the one in flight has been out longer than SLOW_SECONDS (a connection
    the network dropped silently), a second goes out for the requests that keep coming."""
    import asyncio

    from keyvault.handoff import FetchFirst
    from keyvault.keystore import dispose
    from keyvault.server.lookups import SLOW_SECONDS, Lookups
    from keyvault.service.keys import pepper
    from keyvault.tokens import digest_of

    value, caller = keys
    app = create_app(base_overrides(cluster.url))
    need = FetchFirst((digest_of(value, pepper(app)), digest_of(caller, pepper(app))))

    class FirstOneStuck(Lookups):
        statements = 0

        async def _rows(self, wanted):
            self.statements += 1
            if self.statements == 1:
                await asyncio.sleep(1.5)  # stuck, yet inside KEYVAULT_DATABASE_TIMEOUT (2 s)
            return await super()._rows(wanted)

    lookups = FirstOneStuck.of(app)

    async def timed(delay: float) -> tuple[float, int]:
        await asyncio.sleep(delay)
        started = time.monotonic()
        fetched = await lookups.fetch(need)
        assert fetched.error is None and len(fetched.rows) == 2
        return time.monotonic() - started, lookups.statements

    async def scenario():
        # Both connections open first: what is timed is the wait, not a connection's setup
        # (which a loaded machine can stretch past a second).
        lookups._idle.extend([await lookups._connect(), await lookups._connect()])
        try:
            early = [timed(0), timed(0.001), timed(0.002)]  # the first goes out; two wait
            late = [timed(SLOW_SECONDS * 4 + 0.1 * n) for n in range(3)]  # it is slow by then
            waited = await asyncio.gather(*early, *late)
            assert waited[0][0] >= 1.3  # the stuck one
            # A second statement went out: each late request was answered well before the
            # stuck one came back (1.5 s after it went out, 1.3 s and less after they came).
            assert all(seconds < 1.0 for seconds, _ in waited[3:]), waited
            # Statements: the stuck one, the one that caught the early and late waiters, then
            # at most one each for the rest: never one per request while none is slow.
            assert lookups.statements <= 5, waited
        finally:
            await lookups.close()
        assert lookups._senders == set() and lookups._sent_at == {}

    try:
        with ThreadPoolExecutor(1) as apart:  # a loop of its own (see the test above)
            apart.submit(lambda: asyncio.run(scenario())).result()
    finally:
        dispose(app)


def test_the_event_loop_fetches_verifys_rows_first_and_answers_in_one_pass(cluster, keys):
    """On PostgreSQL the worker's loop reads which keys a verify presents (api.fastlane.lookup_of)
    and fetches their rows before answering it, so the pipeline runs once: one lookup per verify,
    the same answer. A request whose lookup the guess gets wrong (a body the model refuses looks
    up the caller alone) is still answered right, after a second fetch."""
    import asyncio
    import json

    from keyvault import keystore as keystore_module
    from keyvault.api.fastlane import lookup_of, takes
    from keyvault.keystore import dispose
    from keyvault.server import BufferedWSGI
    from keyvault.server.lookups import Lookups
    from keyvault.service import usage

    value, caller = keys
    app = create_app(base_overrides(cluster.url))
    lookups = Lookups.of(app)
    bridge = BufferedWSGI(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"], threads=2,
                          inline=takes, lookups=lookups,
                          lookup_of=lambda environ: lookup_of(environ, app),
                          on_stop=lambda: usage.close(app))  # the use counts, written
    passes: list[int] = []
    original = keystore_module.KeyStore.lookup

    def counted(store, digests):
        passes.append(len(digests))
        return original(store, digests)

    async def post(body: dict) -> tuple[int, dict]:
        raw = json.dumps(body).encode()
        scope = {"type": "http", "method": "POST", "path": "/api/verify/",
                 "raw_path": b"/api/verify/", "query_string": b"", "http_version": "1.1",
                 "scheme": "http", "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 80),
                 "headers": [(b"host", b"keyvault.test"),
                             (b"authorization", f"Bearer {caller}".encode()),
                             (b"content-type", b"application/json"),
                             (b"content-length", str(len(raw)).encode())]}
        sent = []

        async def receive():
            return {"type": "http.request", "body": raw, "more_body": False}

        async def send(message):
            sent.append(message)

        await bridge._serve(scope, receive, send)
        return sent[0]["status"], json.loads(sent[1]["body"])

    async def scenario():
        bridge._start(asyncio.get_running_loop())
        try:
            answers = await asyncio.gather(*(post({"key": value}) for _ in range(8)))
            assert [(status, body["active"]) for status, body in answers] == [(200, True)] * 8
            assert passes == [2] * 8  # caller and subject, looked up once per verify
            passes.clear()
            status, body = await post({"key": value, "scopes": "user:read"})  # not a list
            assert status == 400 and body["status"] == 400
            assert passes == [1, 1]  # the guess had two keys; the pipeline wanted the caller's
        finally:
            bridge._stop()
            await lookups.close()

    keystore_module.KeyStore.lookup = counted
    try:
        with ThreadPoolExecutor(1) as apart:  # a loop of its own (see the test above)
            apart.submit(lambda: asyncio.run(scenario())).result()
    finally:
        keystore_module.KeyStore.lookup = original
        dispose(app)
