"""In-process costs, without HTTP or gunicorn: the verify hot path, and API create and list."""

from __future__ import annotations

import statistics
import time
import timeit

from flask import Flask
from sqlalchemy import update

from keyvault import clock, service
from keyvault.extensions import db
from keyvault.models import ApiKey

from .database import LISTED


def _per_call_us(call, number: int, repeat: int) -> dict:
    call()  # warm: compiled statements, pool connection
    runs = timeit.Timer(call).repeat(repeat=repeat, number=number)
    per_call = sorted(run / number * 1e6 for run in runs)
    return {"median_us": round(statistics.median(per_call), 1), "min_us": round(per_call[0], 1),
            "calls": number * repeat}


def _summary_ms(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"median_ms": round(statistics.median(ordered) * 1000, 3),
            "p90_ms": round(ordered[int(len(ordered) * 0.9)] * 1000, 3), "calls": len(ordered)}


def hot_path(app: Flask, caller: str, subject: str, number: int = 200, repeat: int = 15) -> dict:
    """service.verify_key (one key) and service.check_keys (caller + subject, as POST /api/verify/
    calls it), inside one app context, in microseconds per call."""
    with app.app_context():
        result = {
            "verify_key": _per_call_us(lambda: service.verify_key(caller, ["key:verify"]),
                                       number, repeat),
            "check_keys": _per_call_us(
                lambda: service.check_keys([caller, subject], [["key:verify"], []]),
                number, repeat),
        }
        verdict = service.check_keys([caller, subject], [["key:verify"], []])
        if [v.code for v in verdict] != ["valid", "valid"]:
            raise RuntimeError(f"in-process check_keys answered {[v.code for v in verdict]}")
        db.session.remove()
    return result


def api_create_and_list(app: Flask, creator: str, lister: str, creates: int = 180,
                        lists: int = 300) -> dict:
    """POST /api/personal_api_keys/ and GET /api/personal_api_keys/ (10 keys) through the test
    client, each request in its own app context as under a server, in milliseconds."""
    client = app.test_client()
    per_user = app.config["KEYVAULT_MAX_KEYS_PER_USER"]
    create_headers = {"Authorization": f"Bearer {creator}"}
    list_headers = {"Authorization": f"Bearer {lister}"}

    def create():
        started = time.perf_counter()
        # a key grants only scopes it holds itself: the creator's own
        response = client.post("/api/personal_api_keys/",
                               json={"label": "bench", "scopes": ["personal_api_key:write"]},
                               headers=create_headers)
        elapsed = time.perf_counter() - started
        if response.status_code != 201:
            raise RuntimeError(f"create answered {response.status_code}: {response.get_data()}")
        return elapsed, response.get_json()["id"]

    def revoke(public_ids: list[str]) -> None:
        """Untimed: make room under the per-user key limit for the next batch of creates."""
        with app.app_context():
            db.session.execute(update(ApiKey).where(ApiKey.public_id.in_(public_ids))
                               .values(revoked_at=clock.now()))
            db.session.commit()

    create_times, batch = [], []
    for _ in range(creates + per_user - 1):  # the first batch is warm-up
        elapsed, public_id = create()
        create_times.append(elapsed)
        batch.append(public_id)
        if len(batch) == per_user - 1:  # the creator's own key is live too
            revoke(batch)
            batch = []
    create_times = create_times[per_user - 1:]

    list_times = []
    for i in range(lists + 20):
        started = time.perf_counter()
        response = client.get("/api/personal_api_keys/", headers=list_headers)
        elapsed = time.perf_counter() - started
        if response.status_code != 200 or len(response.get_json()["results"]) != LISTED:
            raise RuntimeError(f"list answered {response.status_code}: {response.get_data()}")
        if i >= 20:
            list_times.append(elapsed)
    return {"create_key": _summary_ms(create_times), "list_10_keys": _summary_ms(list_times)}
