"""A short soak: many clients create, roll, revoke and verify keys against two instances of
`keyvault serve` sharing one database, at once. No answer is a 5xx, no verify contradicts what
a client was told before it asked, and afterwards the database agrees with every client."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import requests

from keyvault import tokens
from keyvault.extensions import db
from keyvault.models import ApiKey
from keyvault.service.keys import pepper as keys_pepper
from tests.conftest import start_server, stop_server

CLIENTS = 8
SECONDS = 20


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


@dataclass
class Client:
    """One program's view of its own keys: what the server told it, and nothing else."""

    admin: str
    live: dict[str, str] = field(default_factory=dict)  # public id -> current value
    dead: dict[str, str] = field(default_factory=dict)  # values revoked or rolled away
    errors: list[str] = field(default_factory=list)
    calls: int = 0


def run_client(client: Client, servers: list[str], verifier: str, seed: int,
               stop: threading.Event) -> None:
    rng = random.Random(seed)
    session = requests.Session()

    def call(method: str, path: str, **kwargs) -> requests.Response:
        response = session.request(method, rng.choice(servers) + path, timeout=15, **kwargs)
        client.calls += 1
        if response.status_code >= 500:
            client.errors.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
        return response

    try:
        while not stop.is_set():
            action = rng.choice(["create", "create", "roll", "revoke", "verify", "verify",
                                 "verify_dead"])
            if action == "create":
                answer = call("POST", "/api/personal_api_keys/", headers=bearer(client.admin),
                              json={"label": f"soak {rng.random():.6f}", "scopes": ["user:read"]})
                if answer.status_code == 201:
                    body = answer.json()
                    client.live[body["id"]] = body["value"]
            elif action in ("roll", "revoke") and client.live:
                public_id = rng.choice(sorted(client.live))
                if action == "roll":
                    answer = call("POST", f"/api/personal_api_keys/{public_id}/roll/",
                                  headers=bearer(client.admin), json={"grace_period_seconds": 0})
                    if answer.status_code == 200:
                        client.dead[public_id + ":" + str(client.calls)] = client.live[public_id]
                        client.live[public_id] = answer.json()["value"]
                else:
                    answer = call("DELETE", f"/api/personal_api_keys/{public_id}/",
                                  headers=bearer(client.admin))
                    if answer.status_code in (200, 204):
                        client.dead[public_id] = client.live.pop(public_id)
            elif action == "verify" and client.live:
                value = client.live[rng.choice(sorted(client.live))]
                answer = call("POST", "/api/verify/", headers=bearer(verifier),
                              json={"key": value})
                if answer.status_code == 200 and answer.json()["active"] is not True:
                    client.errors.append(f"a live key verified as {answer.json()['code']}")
            elif action == "verify_dead" and client.dead:
                value = client.dead[rng.choice(sorted(client.dead))]
                answer = call("POST", "/api/verify/", headers=bearer(verifier),
                              json={"key": value})
                if answer.status_code == 200 and answer.json()["active"] is not False:
                    client.errors.append("a revoked or rolled-away value verified as active")
    except requests.RequestException as error:
        client.errors.append(repr(error))
    finally:
        session.close()


def test_two_instances_under_mixed_load_agree_with_every_client(database_url, tmp_path, app,
                                                                make_user, make_key):
    env = {"KEYVAULT_RATELIMIT_API": "0", "KEYVAULT_RATELIMIT_VERIFY": "0",
           "KEYVAULT_MAX_KEYS_PER_USER": "25"}
    _, verifier = make_key(make_user("svc@example.com"), scopes=["key:verify"])
    clients = [Client(make_key(make_user(f"soak{n}@example.com"), scopes=["*"])[1])
               for n in range(CLIENTS)]
    servers = [start_server(database_url, tmp_path / f"kv{n}.log", extra_env=env) for n in (1, 2)]
    stop = threading.Event()
    try:
        threads = [threading.Thread(target=run_client,
                                    args=(c, [s.url for s in servers], verifier, n, stop))
                   for n, c in enumerate(clients)]
        for thread in threads:
            thread.start()
        time.sleep(SECONDS)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        for server in servers:
            stop_server(server)

    assert [error for c in clients for error in c.errors] == []
    assert sum(c.calls for c in clients) > 200
    assert sum(len(c.live) for c in clients) > 0 and sum(len(c.dead) for c in clients) > 0
    db.session.expire_all()
    pepper = keys_pepper(app)
    for client in clients:
        for public_id, value in client.live.items():
            key = db.session.query(ApiKey).filter_by(public_id=public_id).one()
            assert key.revoked_at is None
            assert key.digest == tokens.digest_of(value, pepper)
        for value in client.dead.values():
            row = db.session.query(ApiKey).filter_by(digest=tokens.digest_of(value, pepper)).first()
            assert row is None or row.revoked_at is not None
