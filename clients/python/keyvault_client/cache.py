"""The verdict cache (`cache_seconds`): verify answered from memory, told of every change by
KeyVault's revocation stream (GET /api/verify/events), read by a background thread.

Entries are keyed by a SHA-256 of the presented key (never the key), the scopes asked for, the
client address and the cost sent; valid and refused verdicts are both kept, except for a key
with limits (its answer has `ratelimit` or `usage`): each of its uses must reach KeyVault to be
counted. Any event about a key drops every entry of that key (a valid verdict carries its
key_id). A refused verdict carries none, so any event at all drops every refused verdict: among
them are the widenings (`scopes_widened`, `owner_activated`) that can make a refused key valid,
and asking again about a refusal costs one verify.
Fail safe: while the stream has been down for more than DOWN_AFTER seconds the cache answers
nothing, and every check goes to verify; after such an outage it starts empty.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterable

import httpx

from .verification import Verification

log = logging.getLogger("keyvault_client")

EVENTS_PATH = "/api/verify/events"
MAX_SECONDS = 300
DOWN_AFTER = 2.0  # seconds without the stream before the cache stops answering
RECONNECT_SECONDS = 0.25
MAX_ENTRIES = 100_000
Slot = tuple[bytes, tuple[str, ...], str | None, int | None]
LIMITED = ("ratelimit", "usage")  # an answer with either: the key's every use is counted


def check_seconds(seconds: float) -> float:
    if not 0 <= seconds <= MAX_SECONDS:
        raise ValueError(f"cache_seconds is from 0 (off) to {MAX_SECONDS}, got {seconds!r}")
    return seconds


def slot_of(key: str, scopes: Iterable[str] | None, client_ip: str | None = None,
            cost: int | None = None) -> Slot:
    return hashlib.sha256(key.encode()).digest(), tuple(sorted(set(scopes or ()))), client_ip, cost


class VerdictCache:
    """Verdicts in memory for `seconds`, while KeyVault's revocation stream is heard."""

    def __init__(self, base_url: str, headers: dict[str, str], seconds: float,
                 *, timeout: float = 10.0):
        self.seconds = check_seconds(seconds)
        self._entries: dict[Slot, tuple[Verification, float]] = {}
        self._by_key_id: dict[str, set[Slot]] = {}
        self._refused: set[Slot] = set()  # slots of refused verdicts (they name no key)
        self._lock = threading.Lock()
        self._up = False
        self._down_since = time.monotonic()
        self._generation = 0  # one per connection of the stream
        self._events = 0  # events heard so far
        self._dropped_at: dict[str, int] = {}  # key_id -> _events at its latest event
        self._all_dropped_at = 0  # _events at the latest drop of every verdict (clear)
        self._last_event_id: str | None = None
        self._stopping = threading.Event()
        self._http = httpx.Client(base_url=base_url, headers={
            **headers, "Accept": "text/event-stream"}, follow_redirects=False,
            timeout=httpx.Timeout(timeout, read=None))
        self._thread = threading.Thread(target=self._listen, name="keyvault-client-stream",
                                        daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ the cache

    @property
    def answering(self) -> bool:
        """Up, or down for DOWN_AFTER seconds at most."""
        return self._up or time.monotonic() - self._down_since <= DOWN_AFTER

    def get(self, slot: Slot) -> Verification | None:
        if not self.answering:
            return None
        found = self._entries.get(slot)
        if found is None:
            return None
        if found[1] <= time.monotonic():
            with self._lock:
                self._forget(slot)
            return None
        return found[0]

    def ticket(self) -> tuple[int, int] | None:
        """Taken before asking verify: the answer is kept only if the stream was up then, has
        not dropped since, and told of no change to its key since (put); for a refusal, which
        names no key, of no change at all. An event heard while the answer was on its way may
        be about it: the key revoked after verify read it, its event arriving before the
        answer. Kept, that answer would outlive the revocation."""
        return (self._generation, self._events) if self._up else None

    def _overtaken(self, key_id: str | None, heard: int) -> bool:
        """Was an event about this key (any key, for a refusal) heard after `heard`?"""
        if key_id is None:
            return self._events > heard
        return max(self._dropped_at.get(key_id, 0), self._all_dropped_at) > heard

    def put(self, slot: Slot, verification: Verification,
            ticket: tuple[int, int] | None) -> None:
        if ticket is None or any(name in verification.answer for name in LIMITED):
            return
        lasts = self.seconds
        if verification.ends_at is not None:  # never past the moment the key stops working
            lasts = min(lasts, verification.ends_at.timestamp() - time.time())
        if lasts <= 0:
            return
        with self._lock:
            if ticket[0] != self._generation or not self._up \
                    or self._overtaken(verification.key_id, ticket[1]):
                return
            if len(self._entries) >= MAX_ENTRIES:
                self._forget(next(iter(self._entries)))
            self._entries[slot] = (verification, time.monotonic() + lasts)
            if verification.key_id is not None:
                self._by_key_id.setdefault(verification.key_id, set()).add(slot)
            else:
                self._refused.add(slot)

    def drop(self, key_id: str) -> None:
        """Forget every verdict about this key, and every refusal (it may be about this key)."""
        with self._lock:
            self._events += 1  # an answer about it on its way now is not kept (ticket)
            if len(self._dropped_at) >= MAX_ENTRIES:  # forgotten: as if every key's was heard
                self._dropped_at.clear()
                self._all_dropped_at = self._events
            self._dropped_at[key_id] = self._events
            for slot in self._by_key_id.pop(key_id, ()):
                self._entries.pop(slot, None)
            for slot in self._refused:
                self._entries.pop(slot, None)
            self._refused.clear()

    def clear(self) -> None:
        with self._lock:
            self._events += 1
            self._all_dropped_at = self._events
            self._entries.clear()
            self._by_key_id.clear()
            self._refused.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _forget(self, slot: Slot) -> None:
        self._refused.discard(slot)
        found = self._entries.pop(slot, None)
        if found is not None and found[0].key_id is not None:
            slots = self._by_key_id.get(found[0].key_id)
            if slots is not None:
                slots.discard(slot)
                if not slots:
                    del self._by_key_id[found[0].key_id]

    # ------------------------------------------------------------ the stream

    def close(self) -> None:
        self._stopping.set()
        self._http.close()
        self._thread.join(timeout=5)

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                self._read_stream()
            except Exception as error:  # noqa: BLE001 - any failure: reconnect, cache fails safe
                if not self._stopping.is_set():
                    log.warning("KeyVault's revocation stream dropped (%s: %s); reconnecting",
                                type(error).__name__, error)
            self._went_down()
            self._stopping.wait(RECONNECT_SECONDS)

    def _went_down(self) -> None:
        with self._lock:
            if self._up:
                self._up = False
                self._down_since = time.monotonic()
                self._generation += 1

    def _read_stream(self) -> None:
        headers = {"Last-Event-ID": self._last_event_id} if self._last_event_id else {}
        with self._http.stream("GET", EVENTS_PATH, headers=headers) as response:
            if response.status_code != 200:
                raise ConnectionError(f"KeyVault answered {response.status_code}")
            event_id, data = None, None
            for line in response.iter_lines():
                if self._stopping.is_set():
                    return
                if not self._up:
                    self._came_up()
                if line.startswith("id:"):
                    event_id = line[3:].strip()
                elif line.startswith("data:"):
                    data = line[5:].strip()
                elif line == "":
                    if data is not None:
                        self._heard(data)
                    if event_id is not None:
                        self._last_event_id = event_id
                    event_id, data = None, None
        raise ConnectionError("the stream ended")

    def _came_up(self) -> None:
        with self._lock:
            if time.monotonic() - self._down_since > DOWN_AFTER:  # it stopped answering
                self._entries.clear()
                self._by_key_id.clear()
                self._refused.clear()
            self._up = True
            self._generation += 1

    def _heard(self, data: str) -> None:
        try:
            key_id = json.loads(data)["key_id"]
        except (ValueError, KeyError, TypeError):
            log.warning("an event of KeyVault's revocation stream without a key_id: dropping "
                        "every cached verdict")
            self.clear()
            return
        self.drop(key_id)
