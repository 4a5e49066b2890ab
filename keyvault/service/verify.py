"""Judging presented keys: the one decision behind verify, forward_auth and the API's auth.

Two steps, so that nothing happens to a key before the request that presented it is accepted:
`check_keys` parses, looks up (one round trip for every key of a request) and judges, with no
side effect; `record_use` then stamps `last_used_at` and logs uses of expired and revoked keys, for the
verdicts the caller decides to act on. The HTTP side (keyvault.http.gate) calls both, and between
them `settle`: the limits an owner set on a key (a rate, a quota: issue 25) are counted and spent
there, only for a key whose request is otherwise accepted (service.judges says why).
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from flask import Flask, current_app
from sqlalchemy.exc import IntegrityError

from .. import clock, failures, tokens
from ..handoff import AnswerLater
from ..keystore import KeyRow, keystore
from ..ratelimit import Outcome, Quota
from . import judges, notifications, usage
from .events import REFUSED_USE_EVENTS, Origin, note_refused_use, refused_use_due
from .judges import JUDGES, CallingService, Case, Standing, first_refusal
from .keys import pepper
from .restrictions import restricted_to_service
from .scopes import effective

# Every answer verify can give: the two the pipeline gives before any judge, then each judge's
# refusal in the order they are walked (service.judges), each named once.
CODES = tuple(dict.fromkeys(("valid", "malformed", "not_found", *(j.code for j in JUDGES))))
LAST_USED_RESOLUTION = timedelta(minutes=1)

# Set while keyvault.server answers a request on its event loop (never blocked: everything else
# waits for it): the writes record_use leaves behind, which may wait for a lock, are handed to
# this runner (the server's threads) instead of being made there and then.
write_elsewhere: ContextVar[Callable[[Callable[[], None]], None] | None] = ContextVar(
    "keyvault_write_elsewhere", default=None)


class AnswerOnAThread(AnswerLater):
    """Raised by check_keys on the event loop (write_elsewhere set) for a request that would
    spend a quota: the spend must be made before the answer, and a write may wait for a lock,
    which the loop must never do. Nothing has been counted or written yet; the server hands the
    request to one of its threads, which answers it from the start (keyvault.server.bridge)."""


@dataclass
class Verdict:
    """The answer about one presented key: verify's body, and the API's authentication."""

    code: str
    key_id: int | None = None
    public_id: str | None = None
    label: str | None = None
    scopes: list[str] = field(default_factory=list)
    created_at: datetime | None = None
    expires_at: datetime | None = None
    user_id: int | None = None  # a person's key; None for a service account's
    user_email: str | None = None
    service_account_id: str | None = None  # a service account's key: its public id, …
    service_account_name: str | None = None
    organization_id: str | None = None  # … and its organisation's
    organization_name: str | None = None
    rolled: bool = False
    old_value_expires_at: datetime | None = None
    last_used_at: datetime | None = None
    issued_at: datetime | None = None  # when the presented value was made (None: an old value)
    catalogue: tuple[str, ...] = ()  # the instance's scopes, for effective_scopes
    client_ip: str | None = None  # the address the key was judged at (allowed_ips)
    restricted_to: dict | None = None  # where the key works (service.restrictions)
    service_id: str | None = None  # a service's own verify key: its service's public id …
    service_audience: str | None = None  # … and audience
    audience: str | None = None  # the service the key was presented to, when it is one
    shows_email: bool = True  # may that service hear the owner's e-mail?
    case: Case | None = field(default=None, repr=False)  # what was judged (settle spends it)
    standing: Standing | None = None  # a key with limits: where it stands (settle)

    @property
    def effective_scopes(self) -> list[str]:
        """The scopes this key holds, spelled out (scopes.effective)."""
        return effective(self.scopes, self.catalogue)

    @property
    def owner_type(self) -> str:
        """`user` (a person's key), `service_account` or `service` (its verify key)."""
        if self.service_id is not None:
            return "service"
        return "service_account" if self.service_account_id is not None else "user"

    @property
    def active(self) -> bool:
        return self.code == "valid"

    @property
    def ends_at(self) -> datetime | None:
        """When the presented value stops working: the key's expiry, or sooner for an old value
        inside a roll's grace period."""
        ends = [t for t in (self.expires_at, self.old_value_expires_at if self.rolled else None)
                if t is not None]
        return min(ends, default=None)


def check_keys(values: list[str], required: list[list[str]], *, costs: list[int] | None = None,
               app: Flask | None = None, presented: str = "keyvault",
               client_ips: list[str | None] | None = None) -> list[Verdict]:
    """Judge the keys a request presents (verify: caller and subject) in one database round trip.

    `presented` says to whom: `keyvault` (its own API: every key), `caller` (the first key to
    KeyVault, the others to the service whose verify key that is, or to no service: verify),
    `gateway` (every key to a service that is not named: forward_auth without one).
    Malformed keys (bad length, alphabet or checksum) are answered without touching the database.
    `app` is for callers outside an app context (the verify fast path), which need none here.
    `client_ips`: where each key is used from (a key restricted by address needs one).
    `costs`: what each use would take from a quota (default 1), spent later by `settle`.
    """
    if app is None:
        app = current_app._get_current_object()
    config = app.config
    now = clock.now()
    digests = digests_of(values, app)
    wanted = [d for d in digests if d is not None]
    found = _by_digest(keystore(app).lookup(wanted)) if wanted else {}
    known = config["KEYVAULT_SCOPES"]
    client_ips = client_ips or [None] * len(values)
    caller = found.get(digests[0]) if presented == "caller" else None
    service = _calling_service(caller[0], known) if caller is not None else None
    verdicts = [Verdict("malformed") if digest is None
                else _judge(found.get(digest), digest, now, needed, known, cost, client_ip,
                            presented != "keyvault" and (index > 0 or presented == "gateway"),
                            service)
                for index, (digest, needed, cost, client_ip)
                in enumerate(zip(digests, required, costs or [1] * len(values), client_ips,
                                 strict=True))]
    if write_elsewhere.get() is not None and any(spends_a_quota(v) for v in verdicts):
        raise AnswerOnAThread
    return verdicts


def digests_of(values: list[str], app: Flask) -> list[str | None]:
    """What check_keys looks up for these values: each one's digest, None for a malformed one
    (never looked up). The server asks it too, to fetch verify's rows before the request is
    answered (api.fastlane.lookup_of)."""
    prefix, secret = app.config["KEYVAULT_KEY_PREFIX"], pepper(app)
    return [tokens.digest_of(v, secret) if tokens.is_well_formed(v, prefix) else None
            for v in values]


def _calling_service(row: KeyRow, known: tuple[str, ...]) -> CallingService | None:
    """The service whose own verify key `row` is (None for any other key)."""
    if row.service_public_id is None:
        return None
    return _service(row.service_public_id, row.organization_public_id, row.service_audience,
                    tuple(row.service_scopes or ()), known)


@functools.lru_cache(maxsize=256)
def _service(public_id: str, organization_id: str, audience: str, scopes: tuple[str, ...],
             known: tuple[str, ...]) -> CallingService:
    """Made once per service and catalogue, not once per verify (the hot path)."""
    catalogue = tuple(dict.fromkeys((*known, *scopes)))
    return CallingService(public_id, organization_id, audience, frozenset(catalogue), catalogue)


def rates_to_count(verdict: Verdict) -> list[tuple[Quota, str]]:
    """The rates `settle` would count for this verdict (its key's, its pool's): none unless the
    key has passed every judge so far. The gate counts them with the door's (http.gate)."""
    case = verdict.case
    return judges.rates(case) if verdict.active and case is not None and case.limited else []


def spends_a_quota(verdict: Verdict) -> bool:
    """Will `settle` take from a quota for this verdict (a write that may refuse)?"""
    case = verdict.case
    return (verdict.active and case is not None and case.cost > 0
            and any(held is not None and held.has_quota
                    for held in (case.row.limits, case.row.pool)))


def settle(verdict: Verdict, *, app: Flask | None = None,
           counted: list[Outcome | None] | None = None) -> Verdict:
    """Count and spend a key's limits (its rate, then its quota: service.judges' second step)
    when its request is accepted, or say where a refused key stands; a key without limits
    passes untouched. Call it once per request, and for a verify's subject only once its
    caller is admitted. The verdict becomes `rate_limited` or `usage_exceeded` when refused.
    `counted`: the outcomes of `rates_to_count`, when the gate counted them already."""
    case = verdict.case
    if case is None or not case.limited:
        return verdict
    if app is None:
        app = current_app._get_current_object()
    standing = verdict.standing = Standing(counted=counted)
    if verdict.active:
        verdict.code = judges.spend(case, app, standing) or verdict.code
    else:
        judges.look(case, app, standing)
    for held, kind in standing.notices:  # a threshold crossed: once a period (notifications)
        _logging_failures(app, partial(_tell, app, held.id, kind, held.current_period(case.now),
                                       case.now), "(quota mail after a verdict)")
    return verdict


def _tell(app: Flask, limits_id: int, kind: str, period: str, now: datetime) -> None:
    """Mail a quota's threshold in a session of its own (the request's has its own work)."""
    with app.app_context():
        notifications.quota_reached(limits_id, kind, period, now)


def record_use(verdicts: list[Verdict], origin: Origin | None = None, *,
               app: Flask | None = None) -> None:
    """What presenting these keys leaves behind: a use counted for each known key, by verdict
    (service.usage: in memory, written every few seconds), `last_used_at` for valid ones (at
    most once a minute per key), a security-log event for expired and revoked ones (at most
    once an hour), which mails the owner at most once a day (events.note_refused_use).

    Call it only with the verdicts of keys whose request is going ahead, never for a subject
    key when the caller asking about it was refused.
    """
    if app is None:
        app = current_app._get_current_object()
    now = clock.now()
    usage.count(app, [(v.key_id, v.public_id, v.code) for v in verdicts if v.key_id is not None],
                now,
                origin.ip_address if origin is not None else None)
    stale = [verdict for verdict in verdicts if _leaves_a_write(app, verdict, now)]
    if not stale:
        return

    runner = write_elsewhere.get()
    for verdict in stale:
        if verdict.active:  # on the event loop (a runner), written with the use counts
            keystore(app).stamp(verdict.key_id, verdict.public_id, now, write=runner is None)
        else:  # expired, revoked (owner mailed), outside its addresses or at the wrong service
            note = partial(note_refused_use, app, verdict.key_id, verdict.user_id,
                           origin or Origin(), verdict.code, verdict.client_ip, verdict.audience)
            if runner is None:
                note()
            else:
                runner(lambda note=note: _logging_failures(app, note))


def _logging_failures(app: Flask, write: Callable[[], None],
                      what: str = "(refused-use note after a verdict)") -> None:
    """A write whose failure must not change the verdict: a failure is logged as a request's
    would be (a database one once per kind and interval, without SQL); nobody hears of it."""
    try:
        write()
    except IntegrityError:  # the key or its owner was deleted after the verdict: nothing to note
        failures.log.info("%s: the key is gone since its verdict; nothing written", what)
    except Exception as error:  # noqa: BLE001 - the verdict stands; the log says what failed
        failures.report(app, error, "POST", what, "-")


def _leaves_a_write(app: Flask, verdict: Verdict, now: datetime) -> bool:
    """A valid key not stamped within the resolution, or an expired or revoked one whose use
    may be due for the security log (and perhaps a mail to the owner)."""
    if verdict.active:
        return verdict.last_used_at is None or now - verdict.last_used_at >= LAST_USED_RESOLUTION
    return verdict.code in REFUSED_USE_EVENTS and refused_use_due(app, verdict.key_id,
                                                                  verdict.code, now)


def verify_key(value: str, required_scopes: list[str] | None = None,
               origin: Origin | None = None) -> Verdict:
    """One key, judged and its use recorded (the command line, tests, simple callers)."""
    verdict = settle(check_keys([value], [required_scopes or []])[0])
    record_use([verdict], origin)
    return verdict


def _by_digest(rows: list[KeyRow]) -> dict[str, tuple[KeyRow, bool]]:
    """digest -> (row, matched the grace-period value) for each known digest."""
    found: dict[str, tuple[KeyRow, bool]] = {}
    for row in rows:
        found[row.digest] = (row, False)
        if row.previous_digest is not None:
            found.setdefault(row.previous_digest, (row, True))
    return found


def _judge(entry: tuple[KeyRow, bool] | None, digest: str, now: datetime,
           required: list[str], known: tuple[str, ...], cost: int = 1,
           client_ip: str | None = None, at_service: bool = False,
           service: CallingService | None = None) -> Verdict:
    if entry is None:
        return Verdict("not_found")
    row, via_previous = entry
    # The database matched the digest with `=`; confirm it in constant time as DESIGN §1 says.
    if not hmac.compare_digest(row.previous_digest if via_previous else row.digest, digest):
        return Verdict("not_found")
    case = Case(row, via_previous, now, tuple(required), client_ip, at_service, service, cost)
    code = first_refusal(case) or "valid"
    scopes, shows_email = list(row.scopes or []), True
    if service is not None:  # only what this service may hear of (service.restrictions)
        known = service.catalogue
        scopes = list(known) if "*" in scopes else [s for s in scopes if s in service.sees]
        shows_email = row.user_id is None or restricted_to_service(
            row.restricted_to, service.public_id, service.organization_id)
    return Verdict(
        code, key_id=row.id, public_id=row.public_id, label=row.label, scopes=scopes,
        created_at=row.created_at, expires_at=row.expires_at, user_id=row.user_id,
        user_email=row.email, service_account_id=row.service_account_public_id,
        service_account_name=row.service_account_name,
        organization_id=row.organization_public_id, organization_name=row.organization_name,
        rolled=via_previous,
        old_value_expires_at=row.previous_expires_at if via_previous else None,
        last_used_at=row.last_used_at,
        issued_at=None if via_previous else (row.last_rolled_at or row.created_at),
        catalogue=known, client_ip=client_ip, restricted_to=row.restricted_to,
        service_id=row.service_public_id, service_audience=row.service_audience,
        audience=service.audience if service is not None else None, shows_email=shows_email,
        case=case,
    )
