"""The WebSocket admission rules, pure: connection counting against a naive model, and the
client address behind trusted proxies."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickpipe.services.gateway.admission import (
    ConnectionLimiter,
    Refusal,
    client_address,
    parse_trusted_proxies,
)

ADDRESSES = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "2001:db8::1"]
operations = st.lists(
    st.tuples(st.sampled_from(["admit", "release"]), st.sampled_from(ADDRESSES)), max_size=200
)


@given(
    max_total=st.integers(1, 6),
    max_per_address=st.integers(1, 4),
    steps=operations,
)
def test_limiter_matches_a_naive_count(max_total: int, max_per_address: int, steps: list) -> None:
    """Any admit/release sequence: the same answers and counts as a list of open connections;
    a released slot is admitted again."""
    limiter = ConnectionLimiter(max_total, max_per_address)
    open_connections: list[str] = []
    for operation, address in steps:
        if operation == "admit":
            if len(open_connections) >= max_total:
                expected = Refusal.SERVER_FULL
            elif open_connections.count(address) >= max_per_address:
                expected = Refusal.ADDRESS_FULL
            else:
                expected = None
                open_connections.append(address)
            assert limiter.admit(address) is expected
        elif address in open_connections:
            open_connections.remove(address)
            limiter.release(address)
        else:
            with pytest.raises(ValueError, match="without an admitted connection"):
                limiter.release(address)
        assert limiter.total == len(open_connections)
        for each in ADDRESSES:
            assert limiter.count(each) == open_connections.count(each)


def test_limiter_refuses_silly_limits() -> None:
    """A limit below one is a configuration error, not a server that admits nobody."""
    with pytest.raises(ValueError, match=">= 1"):
        ConnectionLimiter(0, 5)


TRUSTED = parse_trusted_proxies("127.0.0.1, 10.0.0.0/8, ::1")


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        # no proxy trusted for this peer: the header is the client's own claim, ignored
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
        ("203.0.113.9", [], "203.0.113.9"),
        # a trusted proxy: the right-most address it did not get from another trusted proxy
        ("127.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        ("127.0.0.1", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),  # 6.6.6.6: forged by client
        ("127.0.0.1", ["198.51.100.1, 10.1.2.3"], "198.51.100.1"),  # two trusted hops
        ("127.0.0.1", ["6.6.6.6", "198.51.100.1"], "198.51.100.1"),  # two header lines
        ("::ffff:127.0.0.1", ["198.51.100.1"], "198.51.100.1"),  # IPv4-mapped peer
        ("::1", ["2001:db8::7"], "2001:db8::7"),
        # only trusted hops: the left-most of them
        ("127.0.0.1", ["10.0.0.5, 10.0.0.6"], "10.0.0.5"),
        # trusted proxy without the header: the proxy itself
        ("127.0.0.1", [], "127.0.0.1"),
        # garbage where an address should be: stop before it
        ("127.0.0.1", ["not-an-ip"], "127.0.0.1"),
        ("127.0.0.1", ["198.51.100.1, junk, 10.0.0.5"], "10.0.0.5"),
        (None, ["198.51.100.1"], "unknown"),
    ],
)
def test_client_address_trusts_only_configured_proxies(
    peer: str | None, forwarded_for: list[str], expected: str
) -> None:
    """X-Forwarded-For counts only from a trusted peer, read right to left past trusted hops."""
    assert client_address(peer, forwarded_for, TRUSTED) == expected


def test_no_trusted_proxies_means_the_socket_address() -> None:
    """Unset TICKPIPE_TRUSTED_PROXIES: X-Forwarded-For is never believed."""
    assert client_address("127.0.0.1", ["198.51.100.1"], parse_trusted_proxies("")) == "127.0.0.1"


def test_malformed_trusted_proxy_is_named() -> None:
    """A typo in the proxy list fails with the entry, instead of trusting nothing silently."""
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300'"):
        parse_trusted_proxies("127.0.0.1, 10.0.0.300")
