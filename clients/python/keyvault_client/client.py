"""KeyVaultClient and AsyncKeyVaultClient: ask `POST /api/verify/` whether a key is valid.

Fail closed: when no answer came (unreachable, too slow, 5xx) the call raises, it never guesses.
With `cache_seconds`, verdicts are answered from memory while KeyVault's revocation stream is
heard (keyvault_client.cache).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version

import httpx

from .cache import VerdictCache, check_seconds, slot_of
from .errors import KeyVaultUnavailable, ServiceKeyRejected, UnexpectedAnswer
from .keys import is_well_formed
from .verification import Verification

log = logging.getLogger("keyvault_client")

VERIFY_PATH = "/api/verify/"
RETRY_DELAYS = (0.05, 0.2)  # one pause per retry: connection errors only, so nothing was sent


def _user_agent() -> str:
    try:
        return f"keyvault-client/{version('keyvault-client')}"
    except PackageNotFoundError:  # imported from a source tree
        return "keyvault-client"


class _Base:
    """What both clients share: the request they send and how they read the answer."""

    def __init__(self, base_url: str, service_key: str, *, timeout: float = 2.0,
                 retries: int = 2, key_prefix: str | None = None, cache_seconds: float = 0):
        if not base_url or not service_key:
            raise ValueError("KeyVault's base_url and the service key are both required")
        if retries > len(RETRY_DELAYS):
            raise ValueError(f"at most {len(RETRY_DELAYS)} retries")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.key_prefix = key_prefix
        self._options = {
            "base_url": self.base_url, "timeout": timeout, "follow_redirects": False,
            "headers": {"Authorization": f"Bearer {service_key}", "User-Agent": _user_agent(),
                        "Accept": "application/json"},
        }
        self.cache: VerdictCache | None = None
        self.cache_verdicts(cache_seconds)

    def cache_verdicts(self, seconds: float) -> None:
        """Answer verdicts from memory for up to `seconds` (at most 300; 0: off), dropped as
        the revocation stream tells of changes. A guard's `cache_seconds` calls this."""
        if not check_seconds(seconds):
            return
        if self.cache is not None:
            if self.cache.seconds != seconds:
                raise ValueError(f"this client already caches verdicts for {self.cache.seconds} s")
            return
        headers = {k: v for k, v in self._options["headers"].items() if k != "Accept"}
        self.cache = VerdictCache(self.base_url, headers, seconds, timeout=self.timeout)

    def _close_cache(self) -> None:
        if self.cache is not None:
            self.cache.close()

    def _body(self, key: str, scopes: Iterable[str] | None, client_ip: str | None,
              cost: int | None) -> dict:
        if isinstance(scopes, str):
            raise TypeError("scopes is a list of scope names, not one string")
        if cost is not None and (isinstance(cost, bool) or not isinstance(cost, int) or cost < 0):
            raise TypeError(f"cost is a whole number of at least 0, got {cost!r}")
        body: dict = {"key": key}
        if scopes is not None:
            body["scopes"] = list(scopes)
        client_ip = ip_literal(client_ip)
        if client_ip is not None:
            body["client_ip"] = client_ip
        if cost is not None:
            body["cost"] = cost
        return body

    def _retrying(self, attempt: int, error: httpx.ConnectError) -> bool:
        """Whether to try again after a connection error (logged either way)."""
        if attempt < self.retries:
            log.warning("KeyVault at %s unreachable (%s); retry %d of %d",
                        self.base_url, error, attempt + 1, self.retries)
            return True
        return False

    def _read(self, response: httpx.Response) -> Verification:
        status = response.status_code
        if status >= 500 or status == 429:
            raise KeyVaultUnavailable(f"KeyVault answered {status}")
        if status in (401, 403):
            raise ServiceKeyRejected(status, _problem_detail(response))
        if status != 200:
            raise UnexpectedAnswer(f"KeyVault answered {status}: {_problem_detail(response)}")
        try:
            answer = response.json()
        except ValueError as error:
            raise UnexpectedAnswer("KeyVault's 200 answer is not JSON") from error
        return Verification.from_answer(answer)


def ip_literal(address: str | None) -> str | None:
    """`address` when it is an IPv4 or IPv6 address literal (what verify's `client_ip` takes);
    None for anything else a server may call a client address (a Unix socket, `testclient`)."""
    if not address:
        return None
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def _problem_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else None
    return detail if isinstance(detail, str) else response.reason_phrase


def _unavailable(base_url: str, error: httpx.TransportError) -> KeyVaultUnavailable:
    kind = "timed out" if isinstance(error, httpx.TimeoutException) else "unreachable"
    return KeyVaultUnavailable(f"KeyVault at {base_url} {kind}: {type(error).__name__}: {error}")


class KeyVaultClient(_Base):
    """A blocking client; one connection pool, kept alive across calls. Thread-safe."""

    def __init__(self, base_url: str, service_key: str, *, timeout: float = 2.0,
                 retries: int = 2, key_prefix: str | None = None, cache_seconds: float = 0):
        super().__init__(base_url, service_key, timeout=timeout, retries=retries,
                         key_prefix=key_prefix, cache_seconds=cache_seconds)
        self._http = httpx.Client(**self._options)

    def verify(self, key: str, scopes: Iterable[str] | None = None, *,
               client_ip: str | None = None, cost: int | None = None) -> Verification:
        """KeyVault's verdict on `key` (holding every one of `scopes`, when given).

        `client_ip`: the address your own client called from, for keys restricted to address
        ranges (anything but an IP address literal is not sent). `cost`: what the request spends
        of a key's usage quota (KeyVault's default: 1). A malformed key is answered here, with
        no request. Raises KeyVaultUnavailable, ServiceKeyRejected or UnexpectedAnswer when
        there is no verdict to give.
        """
        body = self._body(key, scopes, client_ip, cost)
        if not is_well_formed(key, self.key_prefix):
            return Verification.inactive("malformed")
        cache, ticket = self.cache, None
        if cache is not None:
            slot = slot_of(key, scopes, body.get("client_ip"), cost)
            if (cached := cache.get(slot)) is not None:
                return cached
            ticket = cache.ticket()
        content = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        for attempt in range(self.retries + 1):
            try:
                response = self._http.post(VERIFY_PATH, content=content, headers=headers)
                break
            except httpx.ConnectError as error:
                if not self._retrying(attempt, error):
                    raise _unavailable(self.base_url, error) from error
                time.sleep(RETRY_DELAYS[attempt])
            except httpx.TransportError as error:
                raise _unavailable(self.base_url, error) from error
        verification = self._read(response)
        if cache is not None:
            cache.put(slot, verification, ticket)
        return verification

    def close(self) -> None:
        self._close_cache()
        self._http.close()

    def __enter__(self) -> KeyVaultClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class AsyncKeyVaultClient(_Base):
    """The asyncio client (ASGI guards, FastAPI); one connection pool, kept alive across calls."""

    def __init__(self, base_url: str, service_key: str, *, timeout: float = 2.0,
                 retries: int = 2, key_prefix: str | None = None, cache_seconds: float = 0):
        super().__init__(base_url, service_key, timeout=timeout, retries=retries,
                         key_prefix=key_prefix, cache_seconds=cache_seconds)
        self._http = httpx.AsyncClient(**self._options)

    async def verify(self, key: str, scopes: Iterable[str] | None = None, *,
                     client_ip: str | None = None, cost: int | None = None) -> Verification:
        """As KeyVaultClient.verify, awaited."""
        body = self._body(key, scopes, client_ip, cost)
        if not is_well_formed(key, self.key_prefix):
            return Verification.inactive("malformed")
        cache, ticket = self.cache, None
        if cache is not None:
            slot = slot_of(key, scopes, body.get("client_ip"), cost)
            if (cached := cache.get(slot)) is not None:
                return cached
            ticket = cache.ticket()
        content = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        for attempt in range(self.retries + 1):
            try:
                response = await self._http.post(VERIFY_PATH, content=content, headers=headers)
                break
            except httpx.ConnectError as error:
                if not self._retrying(attempt, error):
                    raise _unavailable(self.base_url, error) from error
                await asyncio.sleep(RETRY_DELAYS[attempt])
            except httpx.TransportError as error:
                raise _unavailable(self.base_url, error) from error
        verification = self._read(response)
        if cache is not None:
            cache.put(slot, verification, ticket)
        return verification

    async def aclose(self) -> None:
        self._close_cache()
        await self._http.aclose()

    async def __aenter__(self) -> AsyncKeyVaultClient:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()
