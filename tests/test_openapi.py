"""GET /api/schema/ is a valid OpenAPI 3.1 document of every /api/ route; /api/docs/ shows it."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import hypothesis.strategies as st
import jsonschema_rs
import pytest
from hypothesis import given, settings
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from keyvault import service
from tests.conftest import AuthActions, FreshContextClient

IGNORED_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture
def spec(client) -> dict:
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.json


def api_routes(app) -> dict[tuple[str, str], object]:
    """(OpenAPI path, method) -> view function for every rule registered under /api/."""
    routes = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - IGNORED_METHODS:
            routes[(path, method.lower())] = app.view_functions[rule.endpoint]
    return routes


def operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield path, method, operation


def test_document_is_valid_openapi_3_1(spec):
    """openapi-spec-validator accepts the document as OpenAPI 3.1."""
    assert spec["openapi"].startswith("3.1.")
    validate(spec)
    assert list(OpenAPIV31SpecValidator(spec).iter_errors()) == []


def test_every_api_route_is_documented_with_its_methods(app, spec):
    """The document's paths and methods are exactly the app's /api/ routes (bar HEAD/OPTIONS)."""
    documented = {(path, method) for path, method, _ in operations(spec)}
    assert documented == set(api_routes(app))


def test_each_operation_states_the_scope_its_view_demands(app, spec):
    """x-required-scope, the security requirement and the description match the view's scope."""
    routes = api_routes(app)
    for path, method, operation in operations(spec):
        scope = getattr(routes[(path, method)], "required_scope", None)
        assert operation["x-required-scope"] == scope, (path, method)
        if scope:
            assert f"`{scope}`" in operation["description"]
            # verify, the introspection endpoint, also takes the caller's key as HTTP Basic's
            # password (RFC 7662 §2.1); every other operation a Bearer key or the parameter.
            basic = [{"basic": [scope]}] if path == "/api/verify/" else []
            assert operation["security"] == [{"bearer": [scope]}, *basic,
                                             {"personal_api_key": [scope]}]


def resolve(spec, item):
    while "$ref" in item:
        kind, name = item["$ref"].split("/")[-2:]
        item = spec["components"][kind][name]
    return item


def test_errors_are_documented_as_problem_json(spec):
    """Every keyed operation documents 400/401/403/413; every error body is problem+json."""
    for path, method, operation in operations(spec):
        responses = {code: resolve(spec, r) for code, r in operation["responses"].items()}
        if operation["security"]:
            assert {"400", "401", "403", "413"} <= set(responses), (path, method)
            assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True
            assert "WWW-Authenticate" in responses["403"]["headers"]
        if "requestBody" in operation:
            assert "415" in responses, (path, method)
        for code, response in responses.items():
            if code.startswith(("4", "5")):
                assert list(response["content"]) == ["application/problem+json"], (path, code)
    not_allowed = spec["components"]["responses"]["MethodNotAllowed"]
    assert not_allowed["headers"]["Allow"]["required"] is True


@pytest.mark.parametrize(("path", "method", "expected"), [
    ("/api/personal_api_keys/{public_id}/", "delete", {"204", "404"}),
    ("/api/personal_api_keys/", "post", {"201", "409"}),
    ("/api/personal_api_keys/{public_id}/roll/", "post", {"200", "404", "409"}),
    ("/api/verify/", "post", {"200"}),
    ("/api/personal_api_keys/", "get", {"200"}),
])
def test_operation_statuses(spec, path, method, expected):
    """The statuses that the views answer with are in the document."""
    assert expected <= set(spec["paths"][path][method]["responses"])


def test_list_parameters_and_bodies(spec):
    """limit (1..1000, default 100), cursor and include_revoked; the bodies DESIGN.md names."""
    params = {p["name"]: p for p in (resolve(spec, p) for p in
                                     spec["paths"]["/api/personal_api_keys/"]["get"]["parameters"])}
    assert set(params) == {"limit", "cursor", "include_revoked"}
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000,
                                         "default": 100}
    schemas = spec["components"]["schemas"]
    assert set(schemas["CreateKey"]["properties"]) >= {"label", "description", "scopes",
                                                       "expires_at"}
    assert schemas["RollKey"]["properties"]["grace_period_seconds"]["maximum"] == 604800
    assert "value" in schemas["ApiKeyWithValue"]["required"]
    assert "value" not in schemas["ApiKey"]["properties"]
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert (schemes["personal_api_key"]["in"], schemes["personal_api_key"]["name"]) == (
        "query", "personal_api_key")


def test_document_follows_configuration(make_app):
    """The scope catalogue, key prefix and body limit in the document are the instance's."""
    app = make_app(KEYVAULT_SCOPES="feature_flag:read", KEYVAULT_KEY_PREFIX="acme",
                   KEYVAULT_MAX_BODY_BYTES="4096")
    app.test_client_class = FreshContextClient
    spec = app.test_client().get("/api/schema/").json
    validate(spec)
    scopes = spec["components"]["schemas"]["CreateKey"]["properties"]["scopes"]
    assert scopes["type"] == "array"  # required, never null: a create must choose (400)
    items = scopes["items"]
    grantable = resolve(spec, items)
    assert "feature_flag:read" in grantable["enum"] and "*" in grantable["enum"]
    value = spec["components"]["schemas"]["ApiKeyWithValue"]["properties"]["value"]
    assert value["pattern"].startswith("^acme_")
    assert "4096" in spec["components"]["responses"]["PayloadTooLarge"]["description"]


def _accepts(clean, text) -> bool:
    try:
        clean(text)
    except service.InvalidInput:
        return False
    return True


TRICKY = st.sampled_from([" ", "\t", "\n", "\r", "\x00", "\x0b", "\x1c", "\x85", "\xa0",
                          "\u2028", "\u3000", "\ufeff", "a", "é", "日",
                          # bidi controls, refused, and their neighbours (ZWJ, LRM's blanks)
                          "\u202e", "\u2066", "\u2069", "\u200e", "\u200f", "\u061c",
                          "\u200d", "\u200a", "\u202f", "\u2065"])


@pytest.mark.parametrize(("field", "clean"), [("label", service.clean_label),
                                              ("description", service.clean_description)])
def test_text_patterns_accept_exactly_what_the_service_accepts(client, field, clean):
    """A label or description matches the document's pattern if and only if the service takes
    it, under Python's regex (how test data is made) and Rust's (how schemathesis checks it)."""
    pattern = client.get("/api/schema/").json["components"]["schemas"]["CreateKey"][
        "properties"][field]["pattern"]
    rust = jsonschema_rs.validator_for({"type": "string", "pattern": pattern})
    python = re.compile(pattern.removesuffix("$") + r"\Z")  # ECMA's final $ is Python's \Z
    most = service.LABEL_MAX if field == "label" else service.DESCRIPTION_MAX

    @settings(max_examples=300, deadline=None)
    # codec="utf-8": no lone surrogates, which a UTF-8 body cannot carry (the service refuses
    # the escaped form, and the validators' regex engines cannot even name them).
    @given(st.text(TRICKY | st.characters(codec="utf-8"), max_size=most + 3)
           | st.builds(lambda pad, core, end: pad + core + end, st.text(TRICKY, max_size=3),
                       st.text("x", min_size=most - 1, max_size=most + 1),
                       st.text(TRICKY, max_size=3)))
    def check(text):
        expected = _accepts(clean, text)
        assert (python.search(text) is not None) is expected, repr(text)
        assert rust.is_valid(text) is expected, repr(text)

    check()


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.text: list[str] = []
        self.scripts: list[dict] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self.scripts.append(attrs)
        for name in ("src", "href"):
            if attrs.get(name):
                self.links.append(attrs[name])

    def handle_data(self, data):
        self.text.append(data)


def test_docs_page_shows_every_operation(client, spec):
    """/api/docs/ is HTML naming every path, method, summary and required scope."""
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = _Page()
    page.feed(response.get_data(as_text=True))
    text = " ".join(" ".join(page.text).split())
    for path, method, operation in operations(spec):
        assert path in text
        assert f"{method} {path}" in text.lower()
        assert " ".join(operation["summary"].split()) in text
        if operation["x-required-scope"]:
            assert operation["x-required-scope"] in text
        for name in (resolve(spec, p)["name"] for p in operation.get("parameters", [])):
            assert name in text
    for field in spec["components"]["schemas"]["CreateKey"]["properties"]:
        assert field in text
    for status in ("204", "401", "403", "405", "409", "413", "415"):
        assert status in text


def test_docs_page_needs_nothing_from_elsewhere(client):
    """No CDN and no inline script: every script and link is served by KeyVault itself."""
    response = client.get("/api/docs/")
    page = _Page()
    page.feed(response.get_data(as_text=True))
    for link in page.links:
        assert link.startswith(("/", "#")), link
    for script in page.scripts:
        assert script.get("src", "").startswith("/static/"), script
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    for link in page.links:
        if link.startswith("/static/"):
            static = client.get(link)
            assert static.status_code == 200
            static.close()


def test_docs_page_is_the_same_for_everyone_and_leads_back_to_the_app(app, auth, user):
    """The reference is cacheable as one page: a visitor and a logged-in person get the same bytes
    (no name, no form token), with a header that leads back to the keys and to the document."""
    client = app.test_client()
    visitor = client.get("/api/docs/")
    assert AuthActions(client).login().status_code == 302
    logged_in = client.get("/api/docs/")
    assert logged_in.status_code == visitor.status_code == 200
    assert logged_in.get_data() == visitor.get_data()
    assert "Cookie" not in logged_in.vary and "Set-Cookie" not in logged_in.headers
    page = logged_in.get_data(as_text=True)
    assert user.email not in page and "csrf_token" not in page
    header = re.search(r'<header class="topbar">(.*?)</header>', page, re.S).group(1)
    assert '<a href="/settings/api-keys">Back to your API keys</a>' in header
    assert '<a href="/api/schema/">OpenAPI document</a>' in header


def _examples_of(spec):
    """(where, schema, example value) for every example in the document: parameters, request
    bodies, responses (with their headers) and the shared error responses."""
    def media(where, content):
        for name, media_type in content.items():
            for label, example in media_type.get("examples", {}).items():
                yield f"{where} {name} {label}", media_type["schema"], example["value"]

    def response(where, answer):
        answer = resolve(spec, answer)
        yield from media(where, answer.get("content", {}))
        for name, header in answer.get("headers", {}).items():
            header = resolve(spec, header)
            if "example" in header:
                yield f"{where} header {name}", header["schema"], header["example"]

    for path, method, operation in operations(spec):
        where = f"{method} {path}"
        for parameter in (resolve(spec, p) for p in [*spec["paths"][path].get("parameters", []),
                                                     *operation.get("parameters", [])]):
            if "example" in parameter:
                yield f"{where} {parameter['name']}", parameter["schema"], parameter["example"]
        yield from media(f"{where} body", operation.get("requestBody", {}).get("content", {}))
        for status, answer in operation["responses"].items():
            yield from response(f"{where} {status}", answer)
    for name, answer in spec["components"]["responses"].items():
        yield from response(name, answer)


def test_every_example_fits_its_schema(spec):
    """The document's examples (which the API reference shows as curl commands and answers) are
    valid instances of the schemas they illustrate, and every operation and error has them."""
    examples = list(_examples_of(spec))
    for where, schema, value in examples:
        validator = jsonschema_rs.validator_for({**schema, "components": spec["components"]})
        assert [error.message for error in validator.iter_errors(value)] == [], where
    places = [where for where, _, _ in examples]
    for path, method, operation in operations(spec):
        success = min(code for code in operation["responses"] if code.startswith("2"))
        if "content" in resolve(spec, operation["responses"][success]):
            assert any(w.startswith(f"{method} {path} {success} ") for w in places), (method, path)
        if "application/json" in operation.get("requestBody", {}).get("content", {}):
            assert any(w.startswith(f"{method} {path} body ") for w in places), (method, path)
    for name in spec["components"]["responses"]:
        assert any(w.startswith(f"{name} ") for w in places), name


@pytest.mark.parametrize("method", ["patch", "delete", "post"])
def test_current_key_path_takes_only_the_documented_method(client, make_user, make_key, method):
    """`/personal_api_keys/@current/` is GET only: other methods are 405 with `Allow` (as the
    document says), not a key id `@current` looked up and not found."""
    _, value = make_key(make_user(), scopes=["*"])
    response = getattr(client, method)("/api/personal_api_keys/@current/",
                                       headers={"Authorization": f"Bearer {value}"}, json={})
    assert response.status_code == 405
    assert response.mimetype == "application/problem+json"
    assert "GET" in response.headers["Allow"]
