"""Prometheus metrics: verify outcomes, latency by route, 429s, database errors and live keys,
at /metrics for an administrator's `metrics:read` key only; summed over the workers of a real
`keyvault serve` (multi-process mode), dead workers marked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from keyvault import clock, create_app, metrics, service, tokens
from keyvault.extensions import db
from keyvault.models import ApiKey
from tests.conftest import base_overrides, start_server, stop_server

SYSTEM = service.Origin("127.0.0.1", "pytest")
OUTCOMES = ("valid", "expired", "revoked", "not_found", "malformed", "user_inactive",
            "insufficient_scope")


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of an exposition, by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def metrics_key(make_user, make_key):
    admin = make_user("ops@example.com", is_admin=True)
    return make_key(admin, label="prometheus", scopes=["metrics:read"])[1]


@pytest.fixture
def subjects(app, make_user, make_key):
    """One key for each verify outcome: {code: (value, scopes to ask for)}."""
    owner = make_user("owner@example.com")
    gone = make_user("gone@example.com")
    valid = make_key(owner, label="valid", scopes=["personal_api_key:read"])
    expired = make_key(owner, label="expired", expires_at=clock.now() + timedelta(days=1))
    revoked = make_key(owner, label="revoked")
    inactive = make_key(gone, label="inactive")
    service.revoke_key(owner, revoked[0].public_id, SYSTEM)
    db.session.execute(update(ApiKey).where(ApiKey.id == expired[0].id)
                       .values(expires_at=clock.now() - timedelta(minutes=1)))
    gone.is_active = False
    db.session.commit()
    return {
        "valid": (valid[1], []),
        "expired": (expired[1], []),
        "revoked": (revoked[1], []),
        "not_found": (tokens.generate(app.config["KEYVAULT_KEY_PREFIX"]), []),
        "malformed": ("not-a-key", []),
        "user_inactive": (inactive[1], []),
        "insufficient_scope": (valid[1], ["personal_api_key:write"]),
    }


def test_verify_counts_each_outcome_through_flask(client, verifier, metrics_key, subjects):
    scrape = {"Authorization": f"Bearer {metrics_key}"}
    before = samples(client.get("/metrics", headers=scrape).get_data(as_text=True))
    for code, (subject, scopes) in subjects.items():
        # A form body goes to the Flask view, never the fast path.
        answer = client.post("/api/verify/", data={"token": subject, "scopes": " ".join(scopes)},
                             headers={"Authorization": f"Bearer {verifier}"})
        assert answer.status_code == 200
        assert answer.json["active"] is (code == "valid")
    client.post("/api/verify/", json={"key": "x"}, headers={"Authorization": "Bearer nope"})
    client.post("/api/verify/", data="{", content_type="application/json",
                headers={"Authorization": f"Bearer {verifier}"})
    after = samples(client.get("/metrics", headers=scrape).get_data(as_text=True))
    for code in (*OUTCOMES, "caller_refused", "bad_request"):
        assert (value(after, "keyvault_verify_total", endpoint="verify", code=code)
                - value(before, "keyvault_verify_total", endpoint="verify", code=code)) == 1, code


def test_forward_auth_counts_its_verdicts(client, metrics_key, subjects):
    scrape = {"Authorization": f"Bearer {metrics_key}"}
    before = samples(client.get("/metrics", headers=scrape).get_data(as_text=True))
    client.get("/api/forward_auth/", headers={"Authorization": f"Bearer {subjects['valid'][0]}"})
    client.get("/api/forward_auth/", headers={"Authorization": f"Bearer {subjects['revoked'][0]}"})
    client.get("/api/forward_auth/")
    after = samples(client.get("/metrics", headers=scrape).get_data(as_text=True))
    for code in ("valid", "revoked", "no_key"):
        assert (value(after, "keyvault_verify_total", endpoint="forward_auth", code=code)
                - value(before, "keyvault_verify_total", endpoint="forward_auth", code=code)) == 1


def test_metrics_refuses_anonymous_callers_and_keys_without_the_scope(
        client, make_user, make_key, metrics_key):
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.mimetype == "application/problem+json"
    assert "metrics:read" in anonymous.json["detail"]
    assert "keyvault_" not in anonymous.get_data(as_text=True)

    wrong = client.get("/metrics", headers={"Authorization": "Bearer kv_nonsense"})
    assert wrong.status_code == 401

    admin = service.find_user("ops@example.com")
    no_scope = make_key(admin, label="reader", scopes=["personal_api_key:read"])[1]
    refused = client.get("/metrics", headers={"Authorization": f"Bearer {no_scope}"})
    assert refused.status_code == 403
    assert refused.mimetype == "application/problem+json"
    assert refused.json["required_scope"] == "metrics:read"

    # Sign-up is open: a scope anyone can give their own key is not enough.
    someone = make_key(make_user("someone@example.com"), label="m", scopes=["metrics:read"])[1]
    not_admin = client.get("/metrics", headers={"Authorization": f"Bearer {someone}"})
    assert not_admin.status_code == 403
    assert not_admin.mimetype == "application/problem+json"
    assert "keyvault_" not in not_admin.get_data(as_text=True)

    # The key belongs in the Authorization header, not the URL.
    assert client.get(f"/metrics?personal_api_key={metrics_key}").status_code == 401

    allowed = client.get("/metrics", headers={"Authorization": f"Bearer {metrics_key}"})
    assert allowed.status_code == 200
    assert allowed.mimetype == "text/plain"
    assert allowed.headers["Cache-Control"] == "no-store"


def test_latency_is_labelled_by_route_never_by_raw_path(client, user, make_key, metrics_key):
    key, value_ = make_key(user, scopes=["personal_api_key:read"])
    headers = {"Authorization": f"Bearer {value_}"}
    assert client.get(f"/api/personal_api_keys/{key.public_id}/", headers=headers).status_code == 200
    assert client.get("/no/such/page-7f3a").status_code == 404
    text = client.get("/metrics", headers={"Authorization": f"Bearer {metrics_key}"}
                      ).get_data(as_text=True)
    found = samples(text)
    assert value(found, "keyvault_request_duration_seconds_count",
                 route="/api/personal_api_keys/<key_id:public_id>/", method="GET") >= 1
    assert value(found, "keyvault_request_duration_seconds_count",
                 route="<unmatched>", method="GET") >= 1
    assert key.public_id not in text
    assert "page-7f3a" not in text


def test_rate_limited_counts_by_limit(client, metrics_key):
    scrape = {"Authorization": f"Bearer {metrics_key}"}
    before = samples(client.get("/metrics", headers=scrape).get_data(as_text=True))
    metrics.record_rate_limited("api_key")
    metrics.record_rate_limited("api_key")
    metrics.record_rate_limited("login_address")
    after = samples(client.get("/metrics", headers=scrape).get_data(as_text=True))
    for limit, moved in (("api_key", 2), ("login_address", 1)):
        assert (value(after, "keyvault_rate_limited_total", limit=limit)
                - value(before, "keyvault_rate_limited_total", limit=limit)) == moved


def test_database_errors_are_counted(tmp_path):
    """A database that cannot be opened: verify answers 503 and the error is counted."""
    from prometheus_client import REGISTRY

    broken = create_app(base_overrides(f"sqlite:///{tmp_path / 'missing' / 'x.db'}"))
    labels = {"kind": "OperationalError"}
    verdict = {"endpoint": "verify", "code": "error"}
    before = REGISTRY.get_sample_value("keyvault_database_errors_total", labels) or 0
    errors = REGISTRY.get_sample_value("keyvault_verify_total", verdict) or 0
    answer = broken.test_client().post(  # JSON with a bearer key: the fast path
        "/api/verify/", json={"key": tokens.generate()},
        headers={"Authorization": f"Bearer {tokens.generate()}"})
    assert answer.status_code == 503
    assert REGISTRY.get_sample_value("keyvault_database_errors_total", labels) == before + 1
    assert REGISTRY.get_sample_value("keyvault_verify_total", verdict) == errors + 1


def test_live_keys_are_counted_at_scrape_time(client, user, make_key, metrics_key):
    scrape = {"Authorization": f"Bearer {metrics_key}"}
    first = value(samples(client.get("/metrics", headers=scrape).get_data(as_text=True)),
                  "keyvault_live_keys")
    key, _ = make_key(user)
    make_key(user, label="second")
    assert value(samples(client.get("/metrics", headers=scrape).get_data(as_text=True)),
                 "keyvault_live_keys") == first + 2
    service.revoke_key(user, key.public_id, SYSTEM)
    assert value(samples(client.get("/metrics", headers=scrape).get_data(as_text=True)),
                 "keyvault_live_keys") == first + 1


# ---------------------------------------------------------------- a real keyvault serve


def _scrape(url: str, key: str) -> dict:
    response = requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {key}"},
                            timeout=10)
    assert response.status_code == 200, response.text
    return samples(response.text)


def _eventually(check, seconds: float = 30.0):
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def test_live_server_counts_fast_path_verifies_across_workers(live_server, verifier,
                                                              metrics_key, subjects):
    before = _scrape(live_server.url, metrics_key)
    rounds = 6  # spread over both workers
    with requests.Session() as http:
        for _ in range(rounds):
            for _code, (subject, scopes) in subjects.items():
                answer = http.post(f"{live_server.url}/api/verify/",
                                   json={"key": subject, "scopes": scopes},
                                   headers={"Authorization": f"Bearer {verifier}"}, timeout=10)
                assert answer.status_code == 200

    def moved():
        after = _scrape(live_server.url, metrics_key)
        deltas = {code: value(after, "keyvault_verify_total", endpoint="verify", code=code)
                  - value(before, "keyvault_verify_total", endpoint="verify", code=code)
                  for code in OUTCOMES}
        return after if all(delta == rounds for delta in deltas.values()) else None

    after = _eventually(moved)
    assert after is not None, "the aggregated counters never showed every verify"
    assert value(after, "keyvault_request_duration_seconds_count", route="/api/verify/",
                 method="POST") - value(before, "keyvault_request_duration_seconds_count",
                                        route="/api/verify/", method="POST") == rounds * 7
    assert value(after, "keyvault_processes") == 2  # both workers, summed


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_a_dead_worker_is_marked_and_its_counts_kept(database_url, tmp_path, app, make_user,
                                                     make_key):
    metrics_key = make_key(make_user("ops@example.com", is_admin=True), label="p",
                           scopes=["metrics:read"])[1]
    server = start_server(database_url, tmp_path / "serve.log")
    try:
        def both_counted():
            requests.get(f"{server.url}/healthz", timeout=5)
            return value(_scrape(server.url, metrics_key), "keyvault_processes") == 2

        assert _eventually(both_counted)
        workers = _children(server.process.pid)
        assert len(workers) == 2
        counted = value(_scrape(server.url, metrics_key), "keyvault_request_duration_seconds_count",
                        route="/healthz", method="GET")
        os.kill(workers[0], signal.SIGKILL)

        def replaced():
            now = _children(server.process.pid)
            return len(now) == 2 and workers[0] not in now

        assert _eventually(replaced)
        # the reaper marks the dead worker: 2 live processes again, not 3
        assert _eventually(lambda: value(_scrape(server.url, metrics_key),
                                         "keyvault_processes") == 2)
        time.sleep(2.5)  # one more reaper round: still 2
        after = _scrape(server.url, metrics_key)
        assert value(after, "keyvault_processes") == 2
        # a counter never goes back: the dead worker's requests still count
        assert value(after, "keyvault_request_duration_seconds_count", route="/healthz",
                     method="GET") >= counted
    finally:
        stop_server(server)


def test_each_serve_gets_a_fresh_metrics_folder_and_removes_it(tmp_path):
    previous = os.environ.get(metrics.MULTIPROC_ENV)
    with metrics.multiprocess_dir(interval=0.1) as path:
        assert os.environ[metrics.MULTIPROC_ENV] == str(path)
        assert path.is_dir() and not any(path.iterdir())
        # a worker that counted something and died
        child = subprocess.run(
            [sys.executable, "-c", "from prometheus_client import Gauge, Counter; "
             "Gauge('g', 'g', multiprocess_mode='livesum').set(1); Counter('c', 'c').inc()"],
            env={**os.environ}, check=True, timeout=30)
        assert child.returncode == 0
        assert _eventually(lambda: not list(path.glob("gauge_livesum_*.db")), 5)
        assert list(path.glob("counter_*.db"))  # counts of the dead are kept
    assert not path.exists()
    assert os.environ.get(metrics.MULTIPROC_ENV) == previous


def test_a_folder_left_by_a_killed_server_is_removed_by_the_next():
    import tempfile

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    orphan = Path(tempfile.gettempdir()) / f"{metrics.DIR_PREFIX}{dead}-abc"
    orphan.mkdir()
    (orphan / "counter_1.db").write_bytes(b"")
    mine = Path(tempfile.gettempdir()) / f"{metrics.DIR_PREFIX}{os.getpid()}-abc"
    mine.mkdir()
    try:
        with metrics.multiprocess_dir():
            assert not orphan.exists()
            assert mine.exists()  # its server is alive
    finally:
        mine.rmdir()


def test_the_grafana_dashboard_uses_only_metrics_keyvault_exports(client, metrics_key):
    import json
    import re

    from tests.conftest import PROJECT_ROOT

    # so that every family has a sample to show
    client.post("/api/verify/", json={"key": "x"}, headers={"Authorization": "Bearer x"})
    metrics.record_rate_limited("api_key")
    metrics.record_database_error("OperationalError")
    dashboard = json.loads((PROJECT_ROOT / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\bkeyvault_[a-z_]+", expr)}
    exported = {name for name, _ in samples(client.get(
        "/metrics", headers={"Authorization": f"Bearer {metrics_key}"}).get_data(as_text=True))}
    assert used and used <= exported, used - exported
    assert {"keyvault_verify_total", "keyvault_request_duration_seconds_bucket",
            "keyvault_rate_limited_total", "keyvault_database_errors_total",
            "keyvault_live_keys"} <= used


def test_label_values_stay_few_whatever_clients_send(client, metrics_key):
    client.open("/login", method="BREW")
    client.get("/api/personal_api_keys/kv_raw_value_in_path_1234/")
    text = client.get("/metrics", headers={"Authorization": f"Bearer {metrics_key}"}
                      ).get_data(as_text=True)
    assert "BREW" not in text and "kv_raw_value_in_path_1234" not in text
    # 405: no rule matched that method
    assert value(samples(text), "keyvault_request_duration_seconds_count", route="<unmatched>",
                 method="other") >= 1
