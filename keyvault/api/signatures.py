"""Signed leaked-key reports (GitHub's secret scanning partner program): the public keys the
operator trusts, and the check that a request's raw body was signed by one of them.

KEYVAULT_SECRET_SCANNING_KEYS names GitHub's public_keys document
(`{"public_keys": [{"key_identifier", "key", "is_current"}]}`, each key a PEM P-256 public key):
a file, read on every report so an edit applies at once, or a URL, fetched and kept for an hour,
and fetched again sooner only for an identifier it does not list, at most once a minute. Every
listed key is accepted, current or not: GitHub keeps a retiring key listed while reports signed
with it are still on their way. The signature is ECDSA P-256 with SHA-256 over the raw body,
DER, base64.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import urllib.request
from datetime import datetime, timedelta

import orjson
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

from .. import clock

IDENTIFIER_HEADER = "Github-Public-Key-Identifier"
SIGNATURE_HEADER = "Github-Public-Key-Signature"
KEEP_FOR = timedelta(hours=1)
REFETCH_EVERY = timedelta(minutes=1)
FETCH_TIMEOUT_SECONDS = 5
DOCUMENT_MAX_BYTES = 256 * 1024
HEADER_MAX = 512  # an identifier is 64 hex digits, a signature about 96 base64 characters
RETRY_AFTER_SECONDS = 60
# HTTP requires a challenge with every 401: no standard scheme fits, so it names the headers.
CHALLENGE = f'Signature realm="keyvault", headers="{IDENTIFIER_HEADER} {SIGNATURE_HEADER}"'
log = logging.getLogger("keyvault")

PublicKeys = dict[str, ec.EllipticCurvePublicKey]


class SignatureRefused(Exception):
    """The report is unsigned or not signed by a trusted key: 401, and nothing happens."""


class KeysUnavailable(Exception):
    """The trusted keys cannot be read right now: 503, the reporter should try again later."""


def check(app: Flask, body: bytes, identifier: str | None, signature: str | None) -> None:
    """Return when `signature` is a trusted key's signature of `body`; else SignatureRefused
    (or KeysUnavailable when the keys cannot be read)."""
    if not identifier or not signature:
        raise SignatureRefused(f"This endpoint takes only reports signed with the headers "
                               f"{IDENTIFIER_HEADER} and {SIGNATURE_HEADER}.")
    if len(identifier) > HEADER_MAX or len(signature) > HEADER_MAX:
        raise SignatureRefused("The signature headers are too long to be genuine.")
    key = trusted_keys(app, identifier).get(identifier)
    if key is None:
        raise SignatureRefused(f"{IDENTIFIER_HEADER} names no key this server trusts.")
    try:
        der = base64.b64decode(signature, validate=True)
        key.verify(der, body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature):
        raise SignatureRefused("The signature does not match the request body.") from None


def trusted_keys(app: Flask, identifier: str) -> PublicKeys:
    """The trusted keys by identifier, from the configured file or URL (`identifier` is the
    one a report names: an unknown one may prompt a fresh fetch)."""
    source = app.config["KEYVAULT_SECRET_SCANNING_KEYS"]
    if source.startswith(("https://", "http://")):
        cache = app.extensions.setdefault("keyvault.secret_scanning_keys", _FetchedKeys())
        return cache.keys(source, identifier)
    try:
        with open(source, "rb") as handle:
            return parse_document(handle.read(DOCUMENT_MAX_BYTES + 1))
    except (OSError, ValueError) as error:
        log.error("secret scanning: cannot read the public keys in %s: %s", source, error)
        raise KeysUnavailable() from None


def parse_document(data: bytes) -> PublicKeys:
    """GitHub's public_keys document as P-256 keys by identifier; ValueError when it is not."""
    if len(data) > DOCUMENT_MAX_BYTES:
        raise ValueError(f"the document is larger than {DOCUMENT_MAX_BYTES} bytes")
    document = orjson.loads(data)
    entries = document.get("public_keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError('no "public_keys" list')
    keys: PublicKeys = {}
    for entry in entries:
        identifier = entry.get("key_identifier") if isinstance(entry, dict) else None
        pem = entry.get("key") if isinstance(entry, dict) else None
        if not isinstance(identifier, str) or not isinstance(pem, str):
            raise ValueError("an entry lacks key_identifier or key")
        try:
            key = serialization.load_pem_public_key(pem.encode())
        except (ValueError, UnsupportedAlgorithm) as error:
            raise ValueError(f"key {identifier[:16]}… is not a PEM public key") from error
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise ValueError(f"key {identifier[:16]}… is not a P-256 (ECDSA) key")
        keys[identifier] = key
    return keys


class _FetchedKeys:
    """The keys fetched from a URL, for one app in one process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._keys: PublicKeys = {}
        self._fetched_at: datetime | None = None
        self._tried_at: datetime | None = None

    def keys(self, url: str, identifier: str) -> PublicKeys:
        with self._lock:  # one fetch at a time; the others wait for its keys
            now = clock.now()
            stale = self._fetched_at is None or now - self._fetched_at >= KEEP_FOR
            due = self._tried_at is None or now - self._tried_at >= REFETCH_EVERY
            if (stale or identifier not in self._keys) and due:
                self._tried_at = now
                try:
                    self._keys, self._fetched_at = _fetch(url), now
                except (OSError, ValueError) as error:  # URLError, HTTPError, timeouts, bad JSON
                    log.error("secret scanning: cannot fetch the public keys from %s: %s",
                              url, error)
            if self._fetched_at is None:  # never fetched: a stale list is better than none
                raise KeysUnavailable()
            return self._keys


def _fetch(url: str) -> PublicKeys:
    request = urllib.request.Request(url, headers={"Accept": "application/json",
                                                   "User-Agent": "KeyVault"})
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_SECONDS) as response:  # noqa: S310
        return parse_document(response.read(DOCUMENT_MAX_BYTES + 1))
