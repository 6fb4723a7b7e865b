"""The client's own connections: what a keep-alive HTTP/1.1 client must get right beside the faults that
test_bench_faults and test_server_replies send — connections reused, a kept-alive connection the server
dropped replaced once, a reply that runs to the close, a reply that is not HTTP — and the driver's alarm."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from specwise.load import Connections, Endpoint, send
from specwise.load.driver import Alarm
from specwise.results import RequestRecord
from specwise.workload import Planned, Prompt

TOKENS = 4


def _events() -> bytes:
    lines = [f"data: {json.dumps({'choices': [{'text': f't{i}', 'logprobs': {'tokens': [f't{i}']}}]})}\n\n"
             for i in range(TOKENS)]
    return ("".join(lines) + "data: [DONE]\n\n").encode()


def _chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n"


class Server:
    """A keep-alive server on loopback whose `reply(n_on_connection)` picks the bytes of each reply:
    None closes the connection without a reply."""

    def __init__(self, reply, port: int = 0) -> None:
        self.reply, self.port = reply, port
        self.connections = 0
        self.requests = 0

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                await reader.readexactly(length)
                self.requests += 1
                served += 1
                data = self.reply(served)
                if data is None:
                    break
                writer.write(data)
                await writer.drain()
                if b"connection: close" in data:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


async def _send(pool: Connections, url: str, i: int = 0) -> RequestRecord:
    return await send(pool, Endpoint(url, "m", k=1), Planned(i, Prompt(f"p{i}", "hello"), 0.0, False, 0),
                      zero=time.perf_counter(), scheduled_s=0.0, max_tokens=TOKENS)


STREAM = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
          + _chunked(_events()))


def test_a_connection_is_kept_alive_across_requests():
    async def go() -> tuple[list[RequestRecord], int]:
        async with Server(lambda n: STREAM) as server, Connections() as pool:
            records = [await _send(pool, server.url, i) for i in range(5)]
            return records, server.connections

    records, connections = asyncio.run(go())
    assert all(r.ok and r.output_tokens == TOKENS for r in records)
    assert connections == 1


def test_a_kept_alive_connection_dropped_before_its_reply_is_replaced_once():
    """The server's idle timeout can close a connection as a request goes out on it: no byte of a reply came,
    so the request goes again on a new connection. A new connection that closes so is a reset."""
    async def go() -> tuple[list[RequestRecord], tuple[int, int], RequestRecord]:
        async with Server(lambda n: STREAM if n == 1 else None) as server, Connections() as pool:
            records = [await _send(pool, server.url, i) for i in range(4)]
            seen = server.connections, server.requests
        async with Server(lambda n: None) as dead, Connections() as pool:
            return records, seen, await _send(pool, dead.url)

    records, seen, fresh = asyncio.run(go())
    assert all(r.ok and r.connect_retries == 0 for r in records), [r.error for r in records]
    # Each request after the first went out on the kept-alive connection, was dropped, and went again on a new one.
    assert seen == (4, 7)
    assert fresh.error == "stream_reset" and "before any reply" in fresh.error_detail


def test_a_new_connection_reset_before_the_server_read_it_is_retried_as_a_refusal():
    """A restarting server closes its listening socket with connections still in its backlog: the kernel had
    completed them, the request was written, and a reset comes back before any reply. Nobody read the request,
    so it goes again after a refusal's pause, to the server listening again."""
    async def go() -> tuple[RequestRecord, int]:
        backlog = socket.socket()
        backlog.bind(("127.0.0.1", 0))
        backlog.listen(8)
        port = backlog.getsockname()[1]
        async with Connections() as pool:
            task = asyncio.create_task(_send(pool, f"http://127.0.0.1:{port}"))
            await asyncio.sleep(0.05)            # connected by the kernel and written, never accepted
            backlog.close()
            async with Server(lambda n: STREAM, port) as server:
                return await task, server.requests

    record, served = asyncio.run(go())
    assert record.ok and record.output_tokens == TOKENS and record.connect_retries == 1, record
    assert served == 1


def test_a_stream_that_runs_to_the_close_is_read_whole():
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"

    async def go() -> RequestRecord:
        async with Server(lambda n: head + _events()) as server, Connections() as pool:
            return await _send(pool, server.url)

    record = asyncio.run(go())
    assert record.ok and record.output_tokens == TOKENS and record.chunk_tokens == [1] * TOKENS


@pytest.mark.parametrize("reply, error", [
    (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "http_error"),
    (b"HTTP/1.1 503 Busy\r\ncontent-type: application/json\r\ncontent-length: 14\r\n\r\n{\"error\": \"x\"}",
     "http_503"),
    (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}", "not_streamed"),
])
def test_a_reply_that_is_no_stream_is_a_fault(reply, error):
    async def go() -> RequestRecord:
        async with Server(lambda n: reply) as server, Connections() as pool:
            return await _send(pool, server.url)

    record = asyncio.run(go())
    assert record.error == error and record.error_detail


def test_an_interim_reply_is_skipped():
    """A 103 Early Hints (a proxy's) comes before the reply proper: it is neither the reply nor a fault."""
    async def go() -> RequestRecord:
        interim = b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n"
        async with Server(lambda n: interim + STREAM) as server, Connections() as pool:
            return await _send(pool, server.url)

    record = asyncio.run(go())
    assert record.ok and record.http_status == 200 and record.output_tokens == TOKENS


def test_bytes_after_a_reply_make_its_connection_unfit_to_reuse():
    async def go() -> tuple[list[RequestRecord], int]:
        async with Server(lambda n: STREAM + b"HTTP/1.1 200 OK\r\ncontent-le") as server, Connections() as pool:
            records = [await _send(pool, server.url, i) for i in range(2)]
            return records, server.connections

    records, connections = asyncio.run(go())
    assert all(r.ok for r in records)
    assert connections == 2


def test_a_reply_whose_end_never_follows_its_done_gives_its_connection_up(monkeypatch):
    monkeypatch.setattr("specwise.load.client.LINGER_S", 0.05)
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    body = _events()

    async def go() -> tuple[RequestRecord, int, int]:
        async with Server(lambda n: head + f"{len(body):x}\r\n".encode() + body + b"\r\n") as server, \
                Connections() as pool:
            record = await _send(pool, server.url)
            held = len(pool._all)
            await asyncio.sleep(0.2)
            return record, held, len(pool._all)

    record, held, left = asyncio.run(go())
    assert record.ok and record.output_tokens == TOKENS
    assert (held, left) == (1, 0)


def test_the_connections_close_with_their_pool():
    async def go() -> tuple[int, int]:
        async with Server(lambda n: STREAM) as server:
            async with Connections() as pool:
                await asyncio.gather(*(_send(pool, server.url, i) for i in range(3)))
                opened = len(pool._all)
            return opened, len(pool._all)

    opened, left = asyncio.run(go())
    assert opened == 3 and left == 0


@pytest.mark.parametrize("timerfd", [True, False])
def test_the_alarm_runs_its_callback_on_time_before_the_waiter_resumes(timerfd):
    async def go() -> list[tuple[str, float]]:
        alarm = Alarm()
        if not timerfd:
            alarm.close()   # the fallback: sleep, then a short spin
        seen: list[tuple[str, float]] = []
        when = time.perf_counter() + 0.02
        await alarm.until(when, then=lambda: seen.append(("then", time.perf_counter() - when)))
        seen.append(("after", time.perf_counter() - when))
        await alarm.until(time.perf_counter() - 1, then=lambda: seen.append(("past", 0.0)))
        alarm.close()
        return seen

    seen = asyncio.run(go())
    assert [name for name, _ in seen] == ["then", "after", "past"]
    assert seen[0][1] >= 0   # never early


def test_the_alarm_follows_a_shifted_perf_counter(monkeypatch):
    """A Ray actor's perf_counter may be shifted (its machine's clock has another origin): the alarm waits for
    the time left on that clock, not for an absolute time on another."""
    real = time.perf_counter
    monkeypatch.setattr(time, "perf_counter", lambda: real() + 1234.5)

    async def go() -> float:
        alarm = Alarm()
        t0 = real()
        await alarm.until(time.perf_counter() + 0.02)
        alarm.close()
        return real() - t0

    assert 0.02 <= asyncio.run(asyncio.wait_for(go(), 5)) < 2
