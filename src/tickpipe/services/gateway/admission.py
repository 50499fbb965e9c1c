"""Who may open a WebSocket: the client's address (behind trusted proxies) and the connection
limits, in all and per address. Pure bookkeeping, no I/O: the gateway's event loop owns it."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from enum import StrEnum

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refusal(StrEnum):
    SERVER_FULL = "server_full"
    ADDRESS_FULL = "address_full"


class ConnectionLimiter:
    """Counts open connections in all and per client address. `admit` takes a slot or says why
    not; `release` gives a taken slot back (exactly once per admitted connection)."""

    def __init__(self, max_total: int, max_per_address: int) -> None:
        if max_total < 1 or max_per_address < 1:
            raise ValueError("connection limits must be >= 1")
        self.max_total = max_total
        self.max_per_address = max_per_address
        self._by_address: dict[str, int] = {}
        self._total = 0

    @property
    def total(self) -> int:
        return self._total

    def count(self, address: str) -> int:
        return self._by_address.get(address, 0)

    def admit(self, address: str) -> Refusal | None:
        if self._total >= self.max_total:
            return Refusal.SERVER_FULL
        held = self._by_address.get(address, 0)
        if held >= self.max_per_address:
            return Refusal.ADDRESS_FULL
        self._by_address[address] = held + 1
        self._total += 1
        return None

    def release(self, address: str) -> None:
        held = self._by_address.get(address, 0)
        if held <= 0:
            raise ValueError(f"release of {address!r} without an admitted connection")
        if held == 1:
            del self._by_address[address]  # the map holds only addresses with connections
        else:
            self._by_address[address] = held - 1
        self._total -= 1


def parse_trusted_proxies(text: str) -> tuple[IpNetwork, ...]:
    """`10.0.0.1, 172.16.0.0/12, ::1` -> networks; ValueError names a malformed entry."""
    networks: list[IpNetwork] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or CIDR network: {entry!r}") from None
    return tuple(networks)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IpNetwork]
) -> str:
    """The client's address: the socket's peer, unless the peer is a trusted proxy; then the
    right-most X-Forwarded-For entry that is not a trusted proxy (entries left of it are the
    client's own claims, which anyone can forge). `forwarded_for`: the header's values, in
    order (a request may carry several)."""
    if peer is None:
        return "unknown"
    if not _is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    client = peer
    for hop in reversed(hops):
        if _parse(hop) is None:
            break  # a proxy we trust writes addresses: stop at anything else
        client = hop
        if not _is_trusted(hop, trusted):
            break
    return client


def _parse(text: str) -> IpAddress | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(text: str, trusted: Iterable[IpNetwork]) -> bool:
    address = _parse(text)
    return address is not None and any(address in network for network in trusted)
