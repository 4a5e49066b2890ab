"""The one pipeline for a presented key, in HTTP terms: judge it, then answer or let it in.

API routes (`requires`), verify (keyvault.api.verify), forward_auth and /metrics all come here,
from Flask or from the verify fast path: the credential (http.credentials: a key, or an
Authorization header in a scheme the door does not read) and the required scopes go in,
service.check_keys judges every key of the request in one lookup, `refusal` maps a caller's
verdict to its 401 or 403, and only a request that is let in records its keys' use (last used,
expired-use events). A subject key (verify's) is never touched when its caller is refused.
"""

from __future__ import annotations

from typing import NamedTuple

from flask import Flask

from .. import metrics, service
from ..ratelimit import Outcome, headers_of, limiter
from ..service import Origin, Verdict
from .context import note
from .credentials import WrongScheme
from .problems import (
    Answer,
    forbidden_address,
    forbidden_scope,
    over_key_limit,
    too_many_requests,
    unauthorized,
    usage_exceeded,
)

INVALID_KEY_DETAIL = {
    "malformed": "The API key is malformed (wrong prefix, length or checksum).",
    "not_found": "The API key is not recognised.",
    "revoked": "The API key has been revoked.",
    "expired": "The API key has expired.",
    "user_inactive": "The API key's owner is deactivated.",
    "wrong_service": "The API key is restricted to other services.",
}
NO_KEY = "This endpoint needs an API key: send it as 'Authorization: Bearer <key>'."


class Admission(NamedTuple):
    """The caller's verdict, the subject's (verify only, when the caller is let in), the answer
    that ends the request when the caller is refused, and the caller's count at its door."""

    caller: Verdict | None
    subject: Verdict | None = None
    refusal: Answer | None = None
    counted: Outcome | None = None

    def rate_limit_headers(self) -> tuple[tuple[str, str], ...]:
        """RateLimit-* for the caller's door and for the rate its owner set, when either."""
        own = self.caller.standing if self.caller is not None else None
        outcomes = [o for o in (self.counted, own.rate if own is not None else None)
                    if o is not None]
        return headers_of(outcomes) if outcomes else ()


def refusal(verdict: Verdict, needed: list[str], counted: Outcome | None = None) -> Answer | None:
    """The one mapping from a caller's verdict to HTTP: None to go on, else its 401, 403 or 429
    (past a limit its owner set: service.settle)."""
    if verdict.code == "insufficient_scope":
        return forbidden_scope(" ".join(needed))
    if verdict.code == "ip_not_allowed":
        return forbidden_address(verdict.client_ip)
    standing = verdict.standing
    if verdict.code == "rate_limited" and standing is not None and standing.rate is not None:
        rates = [o for o in (counted, standing.rate) if o is not None]
        return over_key_limit(standing.rate, headers_of(rates))
    if verdict.code == "usage_exceeded":
        return usage_exceeded(standing.usage if standing is not None else 0)
    if not verdict.active:
        return unauthorized(INVALID_KEY_DETAIL[verdict.code], key_presented=True)
    return None


def admit(credential: str | WrongScheme | None, needed: list[str], origin: Origin, *,
          subject: tuple[str, list[str], int] | None = None, missing: str = NO_KEY,
          door: str = "api", cost: int = 1, app: Flask | None = None, presented: str = "keyvault",
          subject_ip: str | None = None) -> Admission:
    """Judge the caller's key (and a subject key, in the same lookup), count it at its door
    (ratelimit: 429 past the quota), then at the limits its owner set (service.settle: `cost`
    from its quota), and record what a judged key leaves behind: the caller's always, the
    subject's (its limits spent with its own cost) only when the caller is let in. `presented`:
    to whom the keys are presented (service.check_keys: KeyVault's own API, the caller's
    service, a gateway).

    The caller's key is judged at the request's client address (`origin.ip_address`, after
    KEYVAULT_TRUSTED_PROXIES); the subject's at `subject_ip`, what the calling service says."""
    if credential is None:
        return Admission(None, refusal=unauthorized(missing, key_presented=False))
    if isinstance(credential, WrongScheme):  # no key presented: say which scheme to use
        return Admission(None, refusal=unauthorized(credential.detail, key_presented=False))
    values, required, costs, client_ips = [credential], [needed], [cost], [origin.ip_address]
    if subject is not None:
        values.append(subject[0])
        required.append(subject[1])
        costs.append(subject[2])
        client_ips.append(subject_ip)
    verdicts = service.check_keys(values, required, costs=costs, app=app, presented=presented,
                                  client_ips=client_ips)
    caller = verdicts[0]
    if caller.public_id is not None:
        note(key_id=caller.public_id)
    refused = refusal(caller, needed)
    counted = own = theirs = None
    if refused is None:
        counted, own, theirs = _count(app, door, caller, verdicts[1] if subject else None)
        if counted is not None and not counted.allowed:
            metrics.record_rate_limited(door)
            refused = too_many_requests(counted)
        else:
            refused = refusal(service.settle(caller, app=app, counted=own), needed, counted)
    if refused is not None:
        service.record_use([caller], origin, app=app)
        return Admission(caller, refusal=refused, counted=counted)
    if subject is not None:
        service.settle(verdicts[1], app=app, counted=theirs)
    service.record_use(verdicts, origin, app=app)
    return Admission(caller, verdicts[1] if subject is not None else None, counted=counted)


def _count(app: Flask | None, door: str, caller: Verdict, subject: Verdict | None):
    """Count the caller at its door, then at the rates its owner set, then at the subject's
    when nothing between them can refuse (a caller's quota could): one round trip with Redis
    (ratelimit.count_all), stopping at the first refusal. The door's outcome (None: no limit,
    or the store failed), and each key's outcomes for `service.settle` (None: not counted here)."""
    counts = limiter(app)
    quota = counts.quotas.get(door)
    doors = [(quota, caller.public_id)] if quota is not None else []  # as judges.rates
    own = service.rates_to_count(caller)
    theirs = (service.rates_to_count(subject)
              if subject is not None and not service.spends_a_quota(caller) else [])
    outcomes = counts.count_all([*doors, *own, *theirs])
    door_outcome = outcomes[0] if doors else None
    mine = outcomes[len(doors):len(doors) + len(own)]
    return (door_outcome, mine if own else None,
            outcomes[len(doors) + len(own):] if theirs else None)
