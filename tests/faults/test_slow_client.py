"""Scenario 7: a WebSocket client that stops reading (a raw socket with a tiny receive buffer that
never calls recv after the handshake), next to a normal client, on `tickpipe gateway` with a small
per-client queue (TICKPIPE_WS_CLIENT_QUEUE)."""

from __future__ import annotations

import base64
import itertools
import os
import socket
import struct
import time
from pathlib import Path

import pytest

from faults.harness import (
    WsRecorder,
    ingest_totals,
    memory_mb,
    metric,
    migrate,
    pipeline_env,
    report,
    stored_rows,
    wait_for,
    wait_for_count,
)
from fixtures.procs import free_port, tickpipe_process

pytestmark = [pytest.mark.infra, pytest.mark.slow]

# Above the largest burst (the processor's first batches, catching up while it joins the group),
# which even a client that keeps up takes whole.
CLIENT_QUEUE_FRAMES = 2_000
RATE_PER_S = 1_000
TOO_SLOW = 1013
HELD_UP_S = 3.0  # far below the cut-off time a held-up fan-out would show (see the end)


def _stalled_client(port: int) -> socket.socket:
    """Connects and upgrades to WebSocket by hand, then reads nothing more."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: sets the window
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(request.encode())
    answer = b""
    while not answer.endswith(b"\r\n\r\n"):  # byte by byte: not one byte of a frame is read
        answer += sock.recv(1)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return sock


def _close_frame(sock: socket.socket, timeout_s: float = 10.0) -> tuple[int, str, int]:
    """Reads what the stalled client never read: (close code, reason, data frames before it)."""
    sock.settimeout(timeout_s)
    buffer = b""
    frames = 0
    while True:
        while len(buffer) < 2 or len(buffer) < _frame_length(buffer):
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection ended without a close frame after {frames}")
            buffer += chunk
        length = _frame_length(buffer)
        frame, buffer = buffer[:length], buffer[length:]
        opcode, payload = frame[0] & 0x0F, frame[length - _payload_length(frame) :]
        if opcode == 0x8:
            return struct.unpack("!H", payload[:2])[0], payload[2:].decode(), frames
        frames += 1


def _payload_length(frame: bytes) -> int:
    size = frame[1] & 0x7F
    if size == 126:
        return int(struct.unpack("!H", frame[2:4])[0])
    if size == 127:
        return int(struct.unpack("!Q", frame[2:10])[0])
    return size


def _frame_length(buffer: bytes) -> int:
    """Header plus payload of the (unmasked, server-sent) frame at the start of `buffer`."""
    size = buffer[1] & 0x7F
    header = 2 if size < 126 else 4 if size == 126 else 10
    if len(buffer) < header:
        return header
    return header + _payload_length(buffer)


@pytest.mark.timeout(120)
def test_a_client_that_stops_reading_is_cut_off_without_slowing_anyone(
    empty_postgres_url: str,
    kafka_bootstrap: str,
    kafka_topic: str,
    redis_url: str,
    redis_names: tuple[str, str],
    tmp_path: Path,
) -> None:
    """The stalled client is disconnected with close code 1013 and a reason once its bounded
    queue overflows; the other client gets every update on time and the processor keeps pace."""
    started_s = time.monotonic()
    db = empty_postgres_url
    env = pipeline_env(
        db,
        kafka_bootstrap,
        kafka_topic,
        redis_url,
        redis_names,
        TICKPIPE_SIM_RATE=str(RATE_PER_S),
        TICKPIPE_WS_CLIENT_QUEUE=str(CLIENT_QUEUE_FRAMES),
    )
    migrate(env)
    gateway_port, process_port = free_port(), free_port()
    with (
        tickpipe_process(
            ["process"], {**env, "TICKPIPE_METRICS_PORT": str(process_port)}, tmp_path / "p.log"
        ) as processor,
        tickpipe_process(
            ["gateway"], {**env, "TICKPIPE_HTTP_PORT": str(gateway_port)}, tmp_path / "g.log"
        ) as gateway,
    ):
        processor.wait_http(f"http://127.0.0.1:{process_port}/readyz", timeout_s=30)
        gateway.wait_http(f"http://127.0.0.1:{gateway_port}/readyz")
        with (
            WsRecorder(f"ws://127.0.0.1:{gateway_port}/ws") as client,
            tickpipe_process(
                ["ingest"],
                {**env, "TICKPIPE_METRICS_PORT": str(free_port())},
                tmp_path / "ingest.log",
            ) as ingest,
        ):
            wait_for(lambda: len(client.frames) >= 3_000, 30, "steady flow")
            stalled = _stalled_client(gateway_port)
            stalled_s = time.monotonic()
            cut_off_s = wait_for(
                lambda: (
                    metric(gateway_port, "tickpipe_websocket_dropped_total", reason="too_slow") >= 1
                ),
                40,
                "the stalled client is disconnected",
            )
            close_code, close_reason, unread_frames = _close_frame(stalled)
            stalled.close()
            closed_s = time.monotonic()
            wait_for(
                lambda: len(client.frames_after(closed_s)) >= 200, 20, "the other client goes on"
            )
            assert ingest.terminate() == 0, ingest.log()
            accepted, _ = ingest_totals(ingest.log())
            wait_for_count(db, accepted, timeout_s=30)
            wait_for(
                lambda: metric(gateway_port, "tickpipe_websocket_clients") <= 1,
                10,
                "the stalled client is no longer counted",
            )
            clients_left = metric(gateway_port, "tickpipe_websocket_clients")
            gateway_peak_mb = memory_mb(gateway.process.pid)["VmHWM"]
        assert client.closed_code is None or client.closed_code == 1000
        for proc in (processor, gateway):
            assert proc.terminate() == 0, proc.log()

    stored = {(row["symbol"], row["trade_id"]) for row in stored_rows(db)}
    received = [frame for _, frame in client.frames]
    received_keys = {(str(f["symbol"]), str(f["trade_id"])) for f in received}
    arrivals_s = sorted(arrived_s for arrived_s, _ in client.frames)
    gaps_s = [later - earlier for earlier, later in itertools.pairwise(arrivals_s)]
    wall_minus_monotonic_s = time.time() - time.monotonic()

    def p99_latency_s(start_s: float, end_s: float) -> float:
        """Ingest -> other client, of the frames that arrived between the two instants."""
        latency_s = sorted(
            wall_minus_monotonic_s + arrived_s - int(str(frame["ingest_time_us"])) / 1e6
            for arrived_s, frame in client.frames
            if start_s <= arrived_s <= end_s
        )
        return latency_s[int(0.99 * (len(latency_s) - 1))]

    # The pipeline's own latency just before the stall is the yardstick. A fan-out held up by the
    # stalled client would hold the other one up until the cut-off (~15 s here: the kernel's
    # socket buffers take ~13,000 frames first); a loaded 2-core machine alone adds up to ~3 s.
    before_stall_p99_s = p99_latency_s(stalled_s - 2.0, stalled_s)
    during_stall_p99_s = p99_latency_s(stalled_s, stalled_s + cut_off_s)
    report(
        "slow-client",
        sent=accepted,
        stored=len(stored),
        client_queue_frames=CLIENT_QUEUE_FRAMES,
        cut_off_after_s=cut_off_s,
        close_code=close_code,
        close_reason=repr(close_reason),
        unread_frames=unread_frames,
        other_client_frames=len(received),
        other_client_missing=len(stored - received_keys),
        other_client_max_gap_s=max(gaps_s),
        other_client_p99_latency_before_stall_s=before_stall_p99_s,
        other_client_p99_latency_during_stall_s=during_stall_p99_s,
        gateway_vmhwm_mb=gateway_peak_mb,
        duration_s=time.monotonic() - started_s,
    )
    assert close_code == TOO_SLOW
    assert "too slow" in close_reason
    assert clients_left == 1, "the stalled client is gone, the other one is still there"
    assert len(stored) == accepted
    assert received_keys == stored, "the other client got every update"
    assert max(gaps_s) < HELD_UP_S, "the other client was never held up"
    assert during_stall_p99_s < before_stall_p99_s + HELD_UP_S, "the stall added no latency"
