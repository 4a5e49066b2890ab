"""What the API reference page (/api/docs/) shows beside the OpenAPI document: the operations
grouped by tag, each with a curl command and example answers built from the document's own
examples, so the page and the document cannot drift apart."""

from __future__ import annotations

import json
import shlex
from http import HTTPStatus
from typing import Any, NamedTuple
from urllib.parse import urlencode

KEY_VARIABLE = "KEYVAULT_KEY"  # the curl commands read the caller's key from this variable
# Without KEYVAULT_BASE_URL the commands read the server's address from this variable: the page
# is built from configuration alone, never from the Host a request names (anyone can write
# `Host: evil.example`, and a shared cache would hand that page to everybody).
URL_VARIABLE = "KEYVAULT_URL"
JSON_MEDIA = ("application/json", "application/problem+json")


class Answer(NamedTuple):
    """One example answer: a summary (when the document gives one) and the HTTP text."""

    summary: str | None
    text: str


class Operation(NamedTuple):
    operation_id: str
    method: str
    path: str
    item: dict  # the path item: its shared parameters
    spec: dict  # the operation object
    curl: str
    answers: list[Answer]


class Group(NamedTuple):
    name: str
    description: str
    operations: list[Operation]


def resolve(document: dict, item: Any) -> Any:
    """`item` with its `$ref` (if any) followed into the document's components."""
    while isinstance(item, dict) and "$ref" in item:
        kind, name = item["$ref"].split("/")[-2:]
        item = document["components"][kind][name]
    return item


def address(base_url: str | None, path: str) -> str:
    """`path` (and its query) on KEYVAULT_BASE_URL as one shell word; without a base URL, on
    the $KEYVAULT_URL the reader sets."""
    if base_url:
        return shlex.quote(base_url + path)
    return f'"${URL_VARIABLE}"' + shlex.quote(path)


def groups(document: dict, base_url: str | None) -> list[Group]:
    """Every operation, under its first tag, in the order of the document's tags and paths."""
    found: dict[str, list[Operation]] = {tag["name"]: [] for tag in document.get("tags", [])}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            found.setdefault(operation["tags"][0], []).append(Operation(
                operation["operationId"], method, path, item, operation,
                curl(document, base_url, path, method, item, operation),
                answers(document, operation)))
    descriptions = {tag["name"]: tag.get("description", "") for tag in document.get("tags", [])}
    return [Group(name, descriptions.get(name, ""), operations)
            for name, operations in found.items() if operations]


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _first_example(media: dict) -> Any:
    examples = media.get("examples") or {}
    if examples:
        return next(iter(examples.values()))["value"]
    return media.get("example")


def curl(document: dict, base_url: str | None, path: str, method: str, item: dict,
         operation: dict) -> str:
    """A curl command that performs the operation with the document's example values, the key
    taken from $KEYVAULT_KEY (and the server's address from $KEYVAULT_URL without a base URL)."""
    query, headers = [], []
    for parameter in (resolve(document, p) for p in
                      [*item.get("parameters", []), *operation.get("parameters", [])]):
        if "example" not in parameter:
            continue
        value = _text(parameter["example"])
        if parameter["in"] == "path":
            path = path.replace(f"{{{parameter['name']}}}", value)
        elif parameter["in"] == "query":
            query.append((parameter["name"], value))
        elif parameter["in"] == "header":
            headers.append(f"{parameter['name']}: {value}")
    target = path + ("?" + urlencode(query, safe=":,") if query else "")
    success = _success(document, operation)
    flags = "-sS" + (" -i" if success and not success[1].get("content") else "")
    words = [f"curl {flags}" + ("" if method == "get" else f" -X {method.upper()}")
             + f" {address(base_url, target)}"]
    if operation.get("security"):
        words.append(f'-H "Authorization: Bearer ${KEY_VARIABLE}"')
    words += [f"-H {shlex.quote(header)}" for header in headers]
    body = (operation.get("requestBody") or {}).get("content", {}).get("application/json")
    if body is not None and _first_example(body) is not None:
        words.append("-H 'Content-Type: application/json'")
        words.append("-d " + shlex.quote(json.dumps(_first_example(body), ensure_ascii=False)))
    return " \\\n  ".join(words)


def _success(document: dict, operation: dict) -> tuple[str, dict] | None:
    codes = sorted(code for code in operation["responses"] if code.startswith("2"))
    return (codes[0], resolve(document, operation["responses"][codes[0]])) if codes else None


def answers(document: dict, operation: dict) -> list[Answer]:
    """The operation's successful answer, once per example the document gives for it."""
    success = _success(document, operation)
    if success is None:
        return []
    code, response = success
    return http_examples(document, code, response)


def http_examples(document: dict, code: str, response: dict) -> list[Answer]:
    """A response object's examples as HTTP text: status line, example headers, body."""
    head = [f"HTTP/1.1 {code} {HTTPStatus(int(code)).phrase}"]
    for name, header in (response.get("headers") or {}).items():
        header = resolve(document, header)
        if "example" in header:
            head.append(f"{name}: {header['example']}")
    found = []
    for media, content in (response.get("content") or {}).items():
        examples = content.get("examples") or (
            {"example": {"value": content["example"]}} if "example" in content else {})
        for example in examples.values():
            value = example["value"]
            body = (json.dumps(value, indent=2, ensure_ascii=False) if media in JSON_MEDIA
                    else str(value))
            found.append(Answer(example.get("summary"),
                                "\n".join([*head, f"Content-Type: {media}", "", body])))
    return found or [Answer(None, "\n".join(head))]


def error_answers(document: dict) -> dict[str, list[Answer]]:
    """Each shared error response's examples, as HTTP text, by the response's name."""
    found = {}
    for name, response in document["components"]["responses"].items():
        examples = [c.get("examples", {}) for c in response.get("content", {}).values()]
        statuses = [e["value"]["status"] for group in examples for e in group.values()]
        found[name] = http_examples(document, str(statuses[0]), response) if statuses else []
    return found
