"""The guards (Flask decorator, WSGI middleware, ASGI middleware, FastAPI dependency), each in a
tiny app of its framework, against the live KeyVault: where the key is read from (the first place
found, never a fall-back), the 401/403/503 problem answers, and the app still getting its body."""

# No `from __future__ import annotations`: FastAPI evaluates the endpoints' annotations, and
# theirs name a local client.
import json
from collections.abc import Callable
from typing import Annotated, NamedTuple
from urllib.parse import urlencode

import flask
import httpx
import pytest
import requests
from fastapi import Depends, FastAPI, Request
from keyvault_client import AsyncKeyVaultClient, KeyVaultClient, Verification
from keyvault_client.asgi import SCOPE_KEY, KeyVaultASGIMiddleware
from keyvault_client.fastapi import RequireKey, add_problem_handler
from keyvault_client.flask import G_ATTRIBUTE, require_key
from keyvault_client.wsgi import ENVIRON_KEY, KeyVaultMiddleware
from werkzeug.test import Client

from keyvault.service.limit_terms import RateTerms
from tests.client.conftest import SCOPE, Keys, run_async

FIELD = "personal_api_key"
BOUNDARY = "kvboundary7MA4YWxkTrZu0gW"


class Raw(NamedTuple):
    """One request, byte for byte, so that every framework is sent exactly the same thing."""

    headers: dict[str, str]
    query: str
    body: bytes


def multipart(fields: dict[str, str], files: dict[str, str] | None = None) -> tuple[str, bytes]:
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
             for name, value in fields.items()]
    parts += [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="k.txt"\r\n'
              f"Content-Type: text/plain\r\n\r\n{value}\r\n" for name, value in (files or {}).items()]
    return f"multipart/form-data; boundary={BOUNDARY}", ("".join(parts) + f"--{BOUNDARY}--\r\n").encode()


def raw(header: str | None = None, query: str | None = None, json_body: object = None,
        form: dict | None = None, content: tuple[str, bytes] | None = None) -> Raw:
    headers, body = {}, b""
    if header is not None:
        headers["Authorization"] = header
    if json_body is not None:
        headers["Content-Type"], body = "application/json", json.dumps(json_body).encode()
    if form is not None:
        headers["Content-Type"], body = "application/x-www-form-urlencoded", urlencode(form).encode()
    if content is not None:
        headers["Content-Type"], body = content
    return Raw(headers, urlencode({FIELD: query}) if query is not None else "", body)


# (case, the request given the keys, status, the WWW-Authenticate error or None)
CASES: list[tuple[str, Callable[[Keys], Raw], int, str | None]] = [
    ("bearer header", lambda k: raw(header=f"Bearer {k.valid}"), 200, None),
    ("bearer, any case", lambda k: raw(header=f"bearer {k.valid}"), 200, None),
    ("json body", lambda k: raw(json_body={FIELD: k.valid, "note": "hi"}), 200, None),
    ("vendor json body", lambda k: raw(content=("application/vnd.api+json",
                                                json.dumps({FIELD: k.valid}).encode())), 200, None),
    ("form body", lambda k: raw(form={FIELD: k.valid, "note": "hi"}), 200, None),
    ("multipart body", lambda k: raw(content=multipart({"note": "hi", FIELD: k.valid})), 200, None),
    ("query", lambda k: raw(query=k.valid), 200, None),
    ("right header, wrong query", lambda k: raw(header=f"Bearer {k.valid}", query=k.unknown), 200, None),
    ("right body, wrong query", lambda k: raw(query=k.unknown, json_body={FIELD: k.valid}), 200, None),
    ("json without the field, right query", lambda k: raw(query=k.valid, json_body={"a": 1}), 200, None),
    ("plain-text body is not read", lambda k: raw(query=k.valid, content=(
        "text/plain", f"{FIELD}={k.unknown}".encode())), 200, None),
    ("a file part is not a field", lambda k: raw(query=k.valid, content=multipart(
        {"note": "hi"}, files={FIELD: k.unknown})), 200, None),
    ("nothing", lambda k: raw(), 401, None),
    ("wrong header, right query", lambda k: raw(header=f"Bearer {k.unknown}", query=k.valid),
     401, "invalid_token"),
    ("empty header, right query", lambda k: raw(header="", query=k.valid), 401, "invalid_token"),
    ("basic scheme, right query", lambda k: raw(header=f"Basic {k.valid}", query=k.valid),
     401, "invalid_token"),
    ("wrong json body, right query", lambda k: raw(query=k.valid, json_body={FIELD: k.unknown}),
     401, "invalid_token"),
    ("number in json body, right query", lambda k: raw(query=k.valid, json_body={FIELD: 5}),
     401, "invalid_token"),
    ("wrong form, right query", lambda k: raw(query=k.valid, form={FIELD: k.revoked}),
     401, "invalid_token"),
    ("wrong multipart, right query", lambda k: raw(query=k.valid, content=multipart({FIELD: "x"})),
     401, "invalid_token"),
    ("empty query", lambda k: raw(query=""), 401, "invalid_token"),
    ("revoked", lambda k: raw(header=f"Bearer {k.revoked}"), 401, "invalid_token"),
    ("expired", lambda k: raw(header=f"Bearer {k.expired}"), 401, "invalid_token"),
    ("malformed", lambda k: raw(header=f"Bearer {k.valid[:-1]}"), 401, "invalid_token"),
    ("unknown", lambda k: raw(query=k.unknown), 401, "invalid_token"),
    ("lacks the scope", lambda k: raw(header=f"Bearer {k.other_scope}"), 403, "insufficient_scope"),
]
CASE_IDS = [case[0] for case in CASES]


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]  # names lower-case
    body: bytes

    def json(self):
        return json.loads(self.body)


# ---------------------------------------------------------------- one tiny app per framework
# Each answers 200 {"email": the key owner's, "body": the request body as the app read it}.


def flask_app(client: KeyVaultClient) -> flask.Flask:
    app = flask.Flask("guarded")

    @app.route("/data", methods=["GET", "POST"])
    @require_key(client, scopes=[SCOPE])
    def data():
        verification = getattr(flask.g, G_ATTRIBUTE)
        assert isinstance(verification, Verification)
        return {"email": verification.user_email, "body": flask.request.get_data(as_text=True),
                "form": flask.request.form.to_dict()}

    return app


def send_flask(client: KeyVaultClient, request: Raw) -> Answer:
    response = flask_app(client).test_client().post(
        "/data", query_string=request.query, headers=request.headers, data=request.body)
    return Answer(response.status_code, {k.lower(): v for k, v in response.headers.items()},
                  response.get_data())


def wsgi_app(environ, start_response):
    verification = environ[ENVIRON_KEY]
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    data = json.dumps({"email": verification.user_email, "body": body.decode()}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [data]


def send_wsgi(client: KeyVaultClient, request: Raw) -> Answer:
    guarded = KeyVaultMiddleware(wsgi_app, client, scopes=[SCOPE])
    response = Client(guarded).post("/data", query_string=request.query, headers=request.headers,
                                    data=request.body,  # as a real server (werkzeug sets none)
                                    environ_base={"REMOTE_ADDR": "127.0.0.1"})
    return Answer(response.status_code, {k.lower(): v for k, v in response.headers.items()},
                  response.get_data())


async def asgi_app(scope, receive, send):
    assert scope["type"] == "http"
    verification = scope[SCOPE_KEY]
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    data = json.dumps({"email": verification.user_email, "body": b"".join(chunks).decode()}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": data})


def fastapi_app(client: AsyncKeyVaultClient) -> FastAPI:
    app = FastAPI()
    add_problem_handler(app)

    @app.post("/data")
    async def data(request: Request,
                   verification: Annotated[Verification, Depends(RequireKey(client, [SCOPE]))]):
        return {"email": verification.user_email, "body": (await request.body()).decode()}

    return app


async def _send_asgi(app, request: Raw) -> Answer:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://guarded") as http:
        response = await http.post("/data" + (f"?{request.query}" if request.query else ""),
                                   headers=request.headers, content=request.body)
    return Answer(response.status_code, dict(response.headers), response.content)


def send_asgi(url: str, service_key: str, request: Raw) -> Answer:
    async def run():
        async with AsyncKeyVaultClient(url, service_key, timeout=10) as client:
            return await _send_asgi(KeyVaultASGIMiddleware(asgi_app, client, scopes=[SCOPE]), request)

    return run_async(run())


def send_fastapi(url: str, service_key: str, request: Raw) -> Answer:
    async def run():
        async with AsyncKeyVaultClient(url, service_key, timeout=10) as client:
            return await _send_asgi(fastapi_app(client), request)

    return run_async(run())


def sync_sender(send):
    def sender(url: str, service_key: str, request: Raw) -> Answer:
        with KeyVaultClient(url, service_key, timeout=10) as client:
            return send(client, request)

    return sender


SENDERS = {
    "flask": sync_sender(send_flask),
    "wsgi": sync_sender(send_wsgi),
    "asgi": send_asgi,
    "fastapi": send_fastapi,
}


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("framework", SENDERS)
@pytest.mark.parametrize(("case", "build", "status", "error"), CASES, ids=CASE_IDS)
def test_guard_reads_the_key_as_keyvault_does(live_server, service_key, keys, framework, case, build,
                                             status, error):
    request = build(keys)
    answer = SENDERS[framework](live_server.url, service_key, request)
    assert answer.status == status, answer.body
    if status == 200:
        assert answer.json()["email"] == "alice@example.com"
        assert answer.json()["body"] == request.body.decode()  # the app still reads its body
        return
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert (problem["status"], problem["type"]) == (status, "about:blank")
    assert problem["title"] and problem["detail"]
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="api"')
    if error is None:
        assert "error=" not in challenge
    else:
        assert f'error="{error}"' in challenge
    if error == "insufficient_scope":
        assert f'scope="{SCOPE}"' in challenge
        assert (problem["code"], problem["required_scope"]) == ("insufficient_scope", SCOPE)


@pytest.mark.parametrize(("case", "build", "status", "error"), CASES, ids=CASE_IDS)
def test_keyvault_itself_reads_each_case_the_same_way(live_server, keys, case, build, status, error):
    """The same bytes sent to KeyVault's own API (GET /api/users/@me/ needs user:read) get the same
    status: the guards' precedence is KeyVault's, checked against the real server."""
    request = build(keys)
    url = f"{live_server.url}/api/users/@me/" + (f"?{request.query}" if request.query else "")
    response = requests.get(url, headers=request.headers, data=request.body, timeout=10)
    assert response.status_code == status, response.text


@pytest.mark.parametrize("framework", SENDERS)
def test_every_guard_judges_the_requests_address_and_the_keys_rate(live_server, service_key,
                                                                   user, make_key, framework):
    """Each framework's test client calls from 127.0.0.1: the guard passes it as client_ip, so
    a key for that range passes and one for another range is 403; a key past its owner's rate
    is 429 with Retry-After, as from KeyVault's own API."""
    _, here = make_key(user, label="here", scopes=[SCOPE], allowed_ips=["127.0.0.0/8"])
    _, elsewhere = make_key(user, label="elsewhere", scopes=[SCOPE],
                            allowed_ips=["203.0.113.0/24"])
    _, limited = make_key(user, label="limited", scopes=[SCOPE], rate_limit=RateTerms(1, 3600))
    send = SENDERS[framework]
    assert send(live_server.url, service_key, raw(header=f"Bearer {here}")).status == 200
    refused = send(live_server.url, service_key, raw(header=f"Bearer {elsewhere}"))
    assert (refused.status, refused.json()["code"]) == (403, "ip_not_allowed")
    assert send(live_server.url, service_key, raw(header=f"Bearer {limited}")).status == 200
    over = send(live_server.url, service_key, raw(header=f"Bearer {limited}"))
    assert (over.status, over.json()["code"]) == (429, "rate_limited")
    assert 0 < int(over.headers["retry-after"]) <= 3600


def test_flask_form_still_parses_after_the_guard(live_server, service_key, keys):
    request = raw(content=multipart({"note": "hi", FIELD: keys.valid}))
    answer = SENDERS["flask"](live_server.url, service_key, request)
    assert answer.json()["form"] == {"note": "hi", FIELD: keys.valid}


@pytest.mark.parametrize("framework", SENDERS)
def test_keyvault_down_means_503_never_a_pass(down_url, keys, framework):
    answer = SENDERS[framework](down_url, "kv_service", raw(header=f"Bearer {keys.valid}"))
    assert answer.status == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["status"] == 503
    assert "email" not in answer.json()


@pytest.mark.parametrize("framework", SENDERS)
def test_rejected_service_key_means_503_never_a_pass(live_server, make_user, make_key, keys, framework):
    _, no_verify = make_key(make_user("service@example.com"), scopes=["user:read"])
    answer = SENDERS[framework](live_server.url, no_verify, raw(header=f"Bearer {keys.valid}"))
    assert answer.status == 503
    assert answer.json()["title"] == "Service Unavailable"


def test_fastapi_without_the_problem_handler_still_refuses(live_server, service_key, keys):
    """Forgetting add_problem_handler changes the body's shape only: status and challenge stay."""

    async def run():
        async with AsyncKeyVaultClient(live_server.url, service_key, timeout=10) as client:
            app = FastAPI()

            @app.post("/data")
            async def data(verification: Annotated[Verification, Depends(RequireKey(client, [SCOPE]))]):
                return {"email": verification.user_email}

            return await _send_asgi(app, raw(header=f"Bearer {keys.revoked}"))

    answer = run_async(run())
    assert answer.status == 401
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]


def test_asgi_middleware_lets_lifespan_through_and_closes_unverified_websockets(down_url):
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    async def run():
        async with AsyncKeyVaultClient(down_url, "kv_service") as client:
            guarded = KeyVaultASGIMiddleware(app, client)
            await guarded({"type": "lifespan"}, None, None)
            sent = []
            messages = [{"type": "websocket.connect"}]

            async def receive():
                return messages.pop(0)

            async def send(message):
                sent.append(message)

            await guarded({"type": "websocket", "headers": [], "query_string": b""}, receive, send)
            return sent

    assert run_async(run()) == [{"type": "websocket.close", "code": 1008}]
    assert seen == ["lifespan"]


@pytest.mark.parametrize(("guard", "client_class"), [
    (lambda c: require_key(c), AsyncKeyVaultClient),
    (lambda c: KeyVaultMiddleware(wsgi_app, c), AsyncKeyVaultClient),
    (lambda c: KeyVaultASGIMiddleware(asgi_app, c), KeyVaultClient),
    (lambda c: RequireKey(c), KeyVaultClient),
])
def test_a_guard_refuses_the_wrong_kind_of_client(guard, client_class):
    client = client_class("http://127.0.0.1:1", "kv_service")
    try:
        with pytest.raises(TypeError):
            guard(client)
    finally:
        if isinstance(client, KeyVaultClient):
            client.close()
        else:
            run_async(client.aclose())
