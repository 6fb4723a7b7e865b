"""The HTTP client: one streamed request against an OpenAI-compatible endpoint, timed on a monotonic clock, over
keep-alive HTTP/1.1 connections of its own (asyncio protocols and httptools' parser).

Why not a client library: at a thousand requests per second a sender's core is the instrument's limit, and a
general client spends most of it on what a load test never needs (redirects, cookies, proxies, compression,
per-request objects); its streams are also read one event-loop hop after their bytes came. Here the request is
one prepared write, and every read is timed in the protocol's callback, the moment the loop hands the bytes over
(bench/loadgen.py measures the difference: CPU per request and TTFT inflation against the server's own clock).

Timing (seconds on `time.perf_counter`, 0 = the run's start): each request has its scheduled time, its actual
send time and the arrival of every content chunk. TPOT and ITL are derived from those (`results.RequestRecord`).
Every failure — refused, reset, HTTP error, not HTTP at all, malformed stream, stall, endless stream — becomes the
record's `error`, never an exception.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httptools

from specwise import __version__
from specwise.load.protocol import (ERROR_DETAIL_CHARS, MAX_LINE_BYTES, Api, Fault, LineSplitter, Stream, api_path,
                                    request_body)
from specwise.results import RequestRecord
from specwise.workload import Planned

# Waits before retrying a refused connection: about 350 ms of server downtime is ridden out.
CONNECT_RETRY_S = (0.05, 0.1, 0.2)
CONNECT_TIMEOUT_S = 10.0
# How long a connection may still owe the end of a reply whose [DONE] came before it is given up.
LINGER_S = 1.0


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: a server's root URL, the model name to ask for and the API."""

    url: str
    model: str
    api: Api = "completions"
    api_key: str | None = field(default=None, repr=False)
    k: int | None = None               # speculative tokens per step, for the tokens-per-chunk estimate
    stall_timeout_s: float = 120.0     # a stream silent this long is recorded as a timeout
    request_seeds: bool = False        # send each request its sampling seed (see BenchConfig.request_seeds)
    request_timeout_s: float = 600.0   # a request still streaming this long is cut (a server that never stops)

    @property
    def headers(self) -> dict[str, str]:
        return auth_headers(self.api_key)


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number, or an HTTP date)."""
    if not value:
        return None
    try:
        seconds = float(value)
        return seconds if 0 <= seconds < math.inf else None  # "nan", "inf", "-5" are no waits
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _detail(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:ERROR_DETAIL_CHARS]


class ConnectError(Exception):
    """No connection: refused, unreachable, unresolvable, or a TLS handshake that failed."""


class Unread(ConnectError):
    """A new connection reset before any byte of a reply: the server never read the request (a listening socket
    closed with the connection still in its backlog, as a restarting server does) — a refusal, retried as one."""


class ConnectTimeout(Exception):
    """No connection within CONNECT_TIMEOUT_S."""


class Stalled(Exception):
    """The stream was silent for the endpoint's stall timeout."""


class Reset(Exception):
    """The connection ended before the reply did."""


class NotHttp(Exception):
    """What came back is not an HTTP reply."""


@dataclass(frozen=True)
class Origin:
    """Where a URL's requests go, and the request line and headers they share."""

    host: str
    port: int
    tls: bool
    head: bytes        # the request's head up to (not including) Content-Length

    @classmethod
    def of(cls, url: str, headers: dict[str, str]) -> Origin:
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectError(f"not an http(s) URL: {parts.scheme}://…")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        netloc = parts.netloc.rpartition("@")[2]
        lines = [f"POST {target} HTTP/1.1", f"Host: {netloc}", "Accept: text/event-stream",
                 f"User-Agent: specwise/{__version__}", "Content-Type: application/json",
                 *(f"{name}: {value}" for name, value in headers.items())]
        return cls(parts.hostname, parts.port or (443 if tls else 80), tls, ("\r\n".join(lines) + "\r\n").encode())

    def request(self, body: bytes) -> bytes:
        return self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body


class Exchange:
    """One request's reply as its bytes come: the status and headers, then the SSE lines into `stream` (each read
    timed once, when the loop handed it over) — or, for a reply that is no stream, the head of its body."""

    def __init__(self, stream: Stream, zero: float, fields: dict[str, Any], stall_s: float) -> None:
        self.stream, self.zero, self.fields, self.stall_s = stream, zero, fields, stall_s
        self.lines = LineSplitter()
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.streaming = False
        self.head = bytearray()     # the body of a reply that is no stream, as far as a line may go
        self.got_bytes = False
        self.now = 0.0
        self.last = time.perf_counter()
        self._stall = self.loop.call_later(stall_s, self._check_stall)
        self.done.add_done_callback(self._settled)

    # -- outcomes
    def _settled(self, done: asyncio.Future[None]) -> None:
        # However it ended — a result, a fault, a cancelled request — its timer goes; a fault nobody will await
        # (the request was cancelled after it was sent) is not logged as never retrieved.
        self._stall.cancel()
        if not done.cancelled():
            done.exception()

    def fail(self, exc: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(exc)

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    @property
    def clean(self) -> bool:
        """Ended with its reply read, neither failed nor cancelled."""
        return self.done.done() and not self.done.cancelled() and self.done.exception() is None

    def _check_stall(self) -> None:
        idle = time.perf_counter() - self.last
        if idle >= self.stall_s:
            self.fail(Stalled())
        else:
            self._stall = self.loop.call_later(self.stall_s - idle, self._check_stall)

    # -- what the connection hands on
    def header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self.headers[name] = value.lower() if name == b"transfer-encoding" else value

    def headers_complete(self, status: int) -> None:
        self.status = status
        self.fields["http_status"] = status
        ctype = self.headers.get(b"content-type", b"").decode("latin-1")
        if status == 200 and ctype.startswith("text/event-stream"):
            self.streaming = True
        elif status != 200:
            self.fields["retry_after_s"] = retry_after(self.headers.get(b"retry-after", b"").decode("latin-1"))

    def body(self, data: bytes) -> None:
        if not self.streaming:
            self.head += data
            if len(self.head) > MAX_LINE_BYTES:
                self.complete()      # a body that may never end: its head says enough
            return
        for line in self.lines.feed(data):
            if self.stream.feed(line, self.now - self.zero):
                self.stream.finish()
                self._finish()
                return

    def complete(self) -> None:
        """The reply ended (its message, or the connection of a reply that runs to the close)."""
        if self.done.done():
            return
        if not self.streaming:
            text = self.head.decode(errors="replace")
            if self.status != 200:
                raise Fault(f"http_{self.status}", text)
            raise Fault("not_streamed" if _is_json(text) else "non_json_body", text)
        self.stream.feed(self.lines.rest())
        self.stream.finish()
        self._finish()


class Connection(asyncio.Protocol):
    """One keep-alive connection: it serves one exchange at a time and goes back to its pool when the reply
    has ended cleanly."""

    def __init__(self, pool: Connections, key: Origin) -> None:
        self.pool, self.key = pool, key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.closed = False
        self.reused = False
        self._to_eof = False       # the reply has neither a length nor chunks: it ends with the connection
        self._interim = False      # the message being read is a 1xx: the reply proper follows it
        self._linger: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:            # bytes nobody asked for: the connection can no longer be trusted
            self.close()
            return
        exchange.now = exchange.last = time.perf_counter()
        exchange.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            self._fail(exc.__context__ or exc)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(NotHttp(str(exc) or type(exc).__name__))
        if self.exchange is exchange and exchange.done.done() and self._linger is None:
            # [DONE] came but not yet the body's end (vLLM writes it next): the connection goes back to the pool
            # when it comes, and is closed if it does not come soon.
            self._linger = exchange.loop.call_later(LINGER_S, self._unfinished, exchange)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        exchange, self.exchange = self.exchange, None
        if exchange is None or exchange.done.done():
            return
        # A reply that runs to the close ends here (a close, not a reset); so does one that is no stream, cut short
        # (its head still names the fault). A stream cut short is a reset.
        if exchange.status and ((self._to_eof and exc is None) or not exchange.streaming):
            try:
                exchange.complete()
            except Fault as fault:
                exchange.fail(fault)
            return
        if not exchange.got_bytes and not self.reused and isinstance(exc, (ConnectionResetError, BrokenPipeError)):
            exchange.fail(Unread(f"reset before the server read the request: {exc}"))
            return
        exchange.fail(Reset(f"the connection closed {'mid-reply' if exchange.got_bytes else 'before any reply'}"
                            + (f": {exc}" if exc else "")))

    def _unfinished(self, exchange: Exchange) -> None:
        if self.exchange is exchange:
            self.close()

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        if self.exchange is None:       # a reply nobody asked for, after the one that was: not to be trusted
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.exchange is not None:
            self.exchange.header(name, value)

    def on_headers_complete(self) -> None:
        exchange = self.exchange
        if exchange is None:
            return
        status = self.parser.get_status_code()
        self._interim = 100 <= status < 200      # 103 Early Hints, 100 Continue: the reply proper follows
        if self._interim:
            exchange.headers.clear()
            return
        headers = exchange.headers
        self._to_eof = b"content-length" not in headers and b"chunked" not in headers.get(b"transfer-encoding", b"")
        exchange.headers_complete(status)

    def on_body(self, body: bytes) -> None:
        if self.exchange is not None and not self.exchange.done.done():
            self.exchange.body(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        exchange = self.exchange
        if exchange is not None and not exchange.done.done():
            exchange.complete()
        self.exchange = None
        if exchange is not None and exchange.clean and self.parser.should_keep_alive():
            self.pool.release(self)
        else:
            self.close()

    # -- use
    def start(self, exchange: Exchange, request: bytes) -> None:
        """Send `request`; a connection that closed meanwhile (the loop has not told us yet) fails it as a reset
        before any reply, which `Request` retries on a new connection."""
        assert self.transport is not None
        self.exchange = exchange
        if self.closed or self.transport.is_closing():
            self._fail(Reset("the connection closed before any reply"))
            return
        try:
            self.transport.write(request)
        except (RuntimeError, OSError) as exc:   # uvloop: a transport whose handle is already closed
            self._fail(Reset(f"the connection closed before any reply: {exc}"))

    def _fail(self, exc: BaseException) -> None:
        if self.exchange is not None:
            self.exchange.fail(exc)
        self.close()

    def close(self) -> None:
        self.exchange = None
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.abort()
        self.pool.forget(self)


class Connections:
    """A sender's keep-alive connections, by origin. A request takes an idle one or opens a new one: never waits
    for one (an open-loop send held back inside a pool would hide its lag from `sent_s`); the driver bounds
    what is in flight."""

    def __init__(self) -> None:
        self._idle: dict[Origin, list[Connection]] = {}
        self._all: set[Connection] = set()
        self._origins: dict[Endpoint, Origin] = {}
        self._tls: ssl.SSLContext | None = None
        self._closed = False

    def origin(self, endpoint: Endpoint) -> Origin:
        """Where `endpoint`'s requests go, worked out once (its URL and headers are the same for every request)."""
        if endpoint not in self._origins:
            self._origins[endpoint] = Origin.of(endpoint.url.rstrip("/") + api_path(endpoint.api), endpoint.headers)
        return self._origins[endpoint]

    def idle(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                conn.reused = True
                return conn
        return None

    async def connect(self, origin: Origin) -> Connection:
        conn = self.idle(origin)
        if conn is not None:
            return conn
        if self._closed:
            raise ConnectError("the sender is stopping")
        loop = asyncio.get_running_loop()
        if origin.tls and self._tls is None:
            self._tls = ssl.create_default_context()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                _, conn = await loop.create_connection(lambda: Connection(self, origin), origin.host, origin.port,
                                                       ssl=self._tls if origin.tls else None)
        except TimeoutError:
            raise ConnectTimeout(f"no connection to {origin.host}:{origin.port} within {CONNECT_TIMEOUT_S:g} s") \
                from None
        except OSError as exc:   # refused, unreachable, unresolvable, TLS (ssl.SSLError is an OSError)
            raise ConnectError(f"{origin.host}:{origin.port}: {exc}") from None
        if self._closed:         # closed while this one was opening: nobody would close it
            conn.close()
            raise ConnectError("the sender is stopping")
        self._all.add(conn)
        return conn

    def release(self, conn: Connection) -> None:
        if not conn.closed:
            self._idle.setdefault(conn.key, []).append(conn)

    def forget(self, conn: Connection) -> None:
        self._all.discard(conn)
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    async def close(self) -> None:
        self._closed = True
        for conn in list(self._all):
            # A reply nobody will await now (its request was cancelled before it ran) ends quietly.
            if conn.exchange is not None and not conn.exchange.done.done():
                conn.exchange.done.cancel()
            conn.close()
        self._idle.clear()

    async def __aenter__(self) -> Connections:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Request:
    """One streamed request, prepared before its time (body encoded, request bytes built) so that sending it is
    one write: `start()` sends it at once on an idle connection, from wherever the caller stands (the driver's
    alarm callback, the moment its time comes); `run()` does the rest — a new connection when no idle one was
    there, the reply, the record. Every failure becomes the record's `error`, never an exception.

    A refused connection is retried a few times (the request never went out, so a short restart of the server
    costs latency, not the request); `sent_s` is the send of the try that got through. A connection kept alive
    that turns out closed before any reply byte (the server's idle timeout) is replaced once.
    `endpoint.request_timeout_s` bounds the whole request.
    """

    def __init__(self, pool: Connections, endpoint: Endpoint, planned: Planned, *, zero: float, max_tokens: int,
                 ignore_eos: bool = True, text_out: list[str] | None = None) -> None:
        self.pool, self.endpoint, self.planned, self.zero = pool, endpoint, planned, zero
        # A replayed log asks for each request's own length, under the run's cap.
        self.max_tokens = min(planned.prompt.max_tokens or max_tokens, max_tokens)
        clock: Callable[[], float] = lambda: time.perf_counter() - zero
        self.stream = Stream(endpoint.api, clock=clock, max_tokens=self.max_tokens, texts=text_out)
        self.fields: dict[str, Any] = {}
        body = request_body(endpoint.model, endpoint.api, planned, self.max_tokens, ignore_eos,
                            endpoint.request_seeds)
        self.origin: Origin | None = None
        self.error: ConnectError | None = None
        try:
            self.origin = pool.origin(endpoint)
        except ConnectError as exc:
            self.error = exc
        self.request = self.origin.request(json.dumps(body).encode()) if self.origin else b""
        self.sent = 0.0
        self.conn: Connection | None = None
        self.exchange: Exchange | None = None

    def _start(self, conn: Connection) -> None:
        self.conn, self.exchange = conn, Exchange(self.stream, self.zero, self.fields, self.endpoint.stall_timeout_s)
        conn.start(self.exchange, self.request)

    def start(self) -> None:
        """Send now if an idle connection is there (sent_s: now); otherwise `run` connects."""
        conn = self.pool.idle(self.origin) if self.origin else None
        if conn is not None:
            self.sent = time.perf_counter() - self.zero
            self._start(conn)

    async def _reply(self) -> None:
        """The reply of the try under way, or of a new one (faults raise)."""
        for attempt in range(2):
            if self.exchange is None:
                assert self.origin is not None
                self.sent = time.perf_counter() - self.zero   # a new connection's time counts in its TTFT
                self._start(await self.pool.connect(self.origin))
            conn, exchange = self.conn, self.exchange
            assert conn is not None and exchange is not None
            try:
                await exchange.done
                return
            except Unread:
                self.exchange = None     # run() tries again on a new connection, after a refusal's pause
                raise
            except Reset:
                if attempt or not conn.reused or exchange.got_bytes:
                    raise
                self.exchange = None
            finally:
                # A reply that did not end cleanly leaves its connection in an unknown state; a clean one goes
                # back to the pool when its message ends (at once, or after the bytes that follow [DONE]).
                if not exchange.clean:
                    conn.close()

    async def run(self, scheduled_s: float) -> RequestRecord:
        endpoint, fields = self.endpoint, self.fields
        retries = 0
        deadline = asyncio.timeout(endpoint.request_timeout_s)
        try:
            if self.error:
                self.sent = time.perf_counter() - self.zero
                raise self.error
            async with deadline:
                while True:
                    try:
                        await self._reply()
                        break
                    except ConnectError:
                        if retries == len(CONNECT_RETRY_S):
                            raise
                        await asyncio.sleep(CONNECT_RETRY_S[retries])
                        retries += 1
        except Fault as fault:
            fields |= {"error": fault.kind, "error_detail": fault.detail or None}
        except ConnectError as exc:
            fields |= {"error": "connect_error", "error_detail": _detail(exc)}
        except ConnectTimeout as exc:
            fields |= {"error": "timeout", "error_detail": _detail(exc)}
        except Stalled:
            fields |= {"error": "timeout", "error_detail": f"no data for {endpoint.stall_timeout_s:g} s"}
        except TimeoutError:
            if not deadline.expired():
                raise
            # The request outlived its deadline while data still flowed.
            fields |= {"error": "request_timeout", "error_detail": f"over {endpoint.request_timeout_s:g} s"}
        except Reset as exc:
            fields |= {"error": "stream_reset", "error_detail": _detail(exc)}
        except NotHttp as exc:
            fields |= {"error": "http_error", "error_detail": _detail(exc)}
        planned = self.planned
        return RequestRecord(index=planned.index, warmup=planned.warmup, prompt_id=planned.prompt.id,
                             temperature=planned.temperature, scheduled_s=scheduled_s, sent_s=self.sent,
                             end_s=time.perf_counter() - self.zero, connect_retries=retries,
                             max_tokens=self.max_tokens if planned.prompt.max_tokens else None,
                             **self.stream.record_fields(endpoint.k), **fields)


async def send(pool: Connections, endpoint: Endpoint, planned: Planned, *, zero: float, scheduled_s: float,
               max_tokens: int, ignore_eos: bool = True, text_out: list[str] | None = None) -> RequestRecord:
    """One streamed request, sent now (see `Request`)."""
    return await Request(pool, endpoint, planned, zero=zero, max_tokens=max_tokens, ignore_eos=ignore_eos,
                         text_out=text_out).run(scheduled_s)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
