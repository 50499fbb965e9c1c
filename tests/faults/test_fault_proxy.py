"""The fault proxy itself, against a local echo server: forwards, cuts, blackholes, restores."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from fixtures.fault_proxy import FaultProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with FaultProxy("127.0.0.1", server.server_address[1]) as fault_proxy:
            yield fault_proxy
    finally:
        server.shutdown()
        server.server_close()


def _echo(port: int, payload: bytes = b"ping", timeout_s: float = 2.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(payload)
        return sock.recv(4096)


def _is_broken(sock: socket.socket) -> bool:
    """True when the connection was reset or closed under us."""
    try:
        sock.sendall(b"x")
        return sock.recv(4096) == b""
    except OSError:
        return True


def test_forwards_until_cut_then_resets_old_and_new_connections(proxy: FaultProxy) -> None:
    """While cut, open connections break and new ones fail; after restore, echo works again."""
    assert _echo(proxy.port) == b"ping"
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as open_conn:
        open_conn.sendall(b"a")
        assert open_conn.recv(16) == b"a"
        proxy.cut()
        assert _is_broken(open_conn)
    with pytest.raises(ConnectionError):  # reset by peer, or closed before the echo
        _echo(proxy.port)
    proxy.restore()
    assert _echo(proxy.port, b"back") == b"back"
    assert proxy.connections_refused >= 1


def test_delay_adds_latency_each_way(proxy: FaultProxy) -> None:
    """With `delay_s`, a round trip takes at least twice the delay."""
    proxy.delay_s = 0.1
    started_s = time.monotonic()
    assert _echo(proxy.port) == b"ping"
    assert time.monotonic() - started_s >= 0.2


def test_blackhole_accepts_but_never_answers(proxy: FaultProxy) -> None:
    """A blackholed link stalls (a partition): the client times out instead of failing fast."""
    proxy.cut(blackhole=True)
    with pytest.raises(TimeoutError):
        _echo(proxy.port, timeout_s=0.3)
    proxy.restore()
    assert _echo(proxy.port) == b"ping"


def test_restore_keeping_stalled_answers_new_connections_only(proxy: FaultProxy) -> None:
    """After `restore(keep_stalled=True)` new connections echo, the stalled one stays silent."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as stalled:
        stalled.sendall(b"a")
        assert stalled.recv(16) == b"a"
        proxy.cut(blackhole=True)
        proxy.restore(keep_stalled=True)
        assert _echo(proxy.port, b"new") == b"new"
        stalled.settimeout(0.3)
        stalled.sendall(b"b")
        with pytest.raises(TimeoutError):
            stalled.recv(16)
