"""Address restrictions on a key (`allowed_ips`): parsing, spelling and matching, standard library
only.

A key's ranges are stored as a JSON list of canonical CIDRs; the verify hot path turns that list
into `ip_network` objects once per distinct value (`networks_of`, cached by the column's value), so
judging a restricted key costs a few comparisons, not a parse.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from collections.abc import Iterable
from typing import Any, NamedTuple

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_RANGES = 100
_MAPPED = ipaddress.ip_network("::ffff:0:0/96")  # IPv4-mapped IPv6 (RFC 4291 §2.5.5.2)


class BadRange(ValueError):
    """An entry that is not an address or a CIDR range; `entry` is what was given."""

    def __init__(self, entry: Any):
        super().__init__(entry)
        self.entry = entry


def network(entry: Any) -> Network:
    """One entry as a network: a bare address is its own /32 or /128; host bits are dropped
    (`10.1.2.3/8` is `10.0.0.0/8`); an IPv4-mapped IPv6 range is the IPv4 range it maps."""
    if not isinstance(entry, str) or not entry.strip() or "%" in entry:
        raise BadRange(entry)
    try:
        parsed = ipaddress.ip_network(entry.strip(), strict=False)
    except ValueError:
        raise BadRange(entry) from None
    if parsed.version == 6 and parsed.subnet_of(_MAPPED):
        first = parsed.network_address.ipv4_mapped
        parsed = ipaddress.ip_network(f"{first}/{parsed.prefixlen - 96}", strict=False)
    return parsed


def canonical(entries: Iterable[Any]) -> list[str]:
    """Entries spelled canonically (`2001:db8::/32`, `203.0.113.7/32`), duplicates dropped, in the
    order given. BadRange names the first entry that is not a range."""
    return list(dict.fromkeys(str(network(entry)) for entry in entries))


class ClientAddress(NamedTuple):
    """A client's address as the judge compares it: its IP version and its value."""

    version: int
    value: int


def client_address(text: Any) -> ClientAddress | None:
    """A client's address, parsed once per distinct text (an IPv4-mapped IPv6 address as its IPv4
    one); None when there is none or it is not an IP literal (a restricted key then fails)."""
    if not isinstance(text, str):
        return None
    return _client_address(text)


@functools.lru_cache(maxsize=4096)
def _client_address(text: str) -> ClientAddress | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return ClientAddress(address.version, int(address))


class Ranges(NamedTuple):
    """A key's ranges as the judge compares them: (network, netmask) integers per IP version,
    so a check is a few integer operations (ipaddress's `in` costs about a microsecond each)."""

    v4: tuple[tuple[int, int], ...]
    v6: tuple[tuple[int, int], ...]


def networks_of(value: Any) -> Ranges | None:
    """The key column's value (JSON text from SQLite, a list from PostgreSQL's driver, or None)
    as Ranges, parsed once per distinct value. None: the key works from anywhere."""
    if value is None:
        return None
    return _parsed(value if isinstance(value, str) else tuple(value))


@functools.lru_cache(maxsize=4096)
def _parsed(value: str | tuple[str, ...]) -> Ranges | None:
    entries = json.loads(value) if isinstance(value, str) else value
    if entries is None:  # JSON null: no restriction
        return None
    networks = [ipaddress.ip_network(entry) for entry in entries]
    return Ranges(*(tuple((int(n.network_address), int(n.netmask)) for n in networks
                          if n.version == version) for version in (4, 6)))


def allows(ranges: Ranges, address: ClientAddress) -> bool:
    """Is the address inside one of the ranges? (An address of the other IP version is in none.)"""
    version, value = address
    for first, mask in ranges.v4 if version == 4 else ranges.v6:  # noqa: SIM110 - any() costs more
        if value & mask == first:
            return True
    return False


def is_narrowing(old: list[str] | None, new: list[str] | None) -> bool:
    """Does `new` allow no address that `old` did not? (None: anywhere.)"""
    if new is None:
        return old is None
    if old is None:
        return True
    before = [network(entry) for entry in old]
    return all(any(range_.version == wide.version and range_.subnet_of(wide) for wide in before)
               for range_ in map(network, new))


def describe(ranges: list[str] | None) -> str:
    """Where a key works, in words: "from any address", "from 1 address range", ..."""
    if not ranges:
        return "from any address"
    return f"from {len(ranges)} address range{'' if len(ranges) == 1 else 's'}"
