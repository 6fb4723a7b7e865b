"""The HTTP client: one streamed request against an OpenAI-compatible endpoint over aiohttp, timed on a
monotonic clock.

Timing (seconds on `time.perf_counter`, 0 = the run's start): each request has its
scheduled time, its actual send time and the arrival of every content chunk. TPOT and
ITL are derived from those (`results.RequestRecord`). Every failure — refused, reset,
HTTP error, malformed stream, stall, endless stream — becomes the record's `error`, never an exception.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from specwise.load.protocol import (ERROR_DETAIL_CHARS, MAX_LINE_BYTES, Api, Fault, LineSplitter, Stream, api_path,
                                    request_body)
from specwise.results import RequestRecord
from specwise.workload import Planned

# Waits before retrying a refused connection: about 350 ms of server downtime is ridden out.
CONNECT_RETRY_S = (0.05, 0.1, 0.2)


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


def _detail(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:ERROR_DETAIL_CHARS]


async def _exchange(session: aiohttp.ClientSession, endpoint: Endpoint, body: dict[str, Any], stream: Stream,
                    fields: dict[str, Any], zero: float) -> None:
    """One try: POST the request and read its stream into `stream` (faults raise)."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=endpoint.stall_timeout_s)
    async with session.post(endpoint.url.rstrip("/") + api_path(endpoint.api), headers=endpoint.headers,
                            data=json.dumps(body).encode(), timeout=timeout) as response:
        fields["http_status"] = response.status
        if response.status != 200:
            fields["retry_after_s"] = retry_after(response.headers.get("retry-after"))
            raise Fault(f"http_{response.status}", await _head(response))
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            text = await _head(response)
            raise Fault("not_streamed" if _is_json(text) else "non_json_body", text)
        lines = LineSplitter()
        # Raw reads, split here: aiohttp's own line reader caps a line at its buffer (64 KiB) and errs past it.
        async for data in response.content.iter_any():
            now = time.perf_counter() - zero   # one time for every line of this read: when its bytes came
            for line in lines.feed(data):
                if stream.feed(line, now):
                    stream.finish()
                    return
        stream.feed(lines.rest())
        stream.finish()


async def _head(response: aiohttp.ClientResponse) -> str:
    """A body that should have been a stream, read no further than a line may be: it may not end."""
    head = bytearray()
    async for data in response.content.iter_any():
        head += data
        if len(head) > MAX_LINE_BYTES:
            break
    return head.decode(errors="replace")


async def send(session: aiohttp.ClientSession, endpoint: Endpoint, planned: Planned, *, zero: float,
               scheduled_s: float, max_tokens: int, ignore_eos: bool = True,
               text_out: list[str] | None = None) -> RequestRecord:
    """One streamed request; every failure becomes the record's `error`, never an exception.

    A refused connection is retried a few times (the request never went out, so a
    short restart of the server costs latency, not the request); `sent_s` is the send
    of the try that got through. `endpoint.request_timeout_s` bounds the whole request.
    """
    # A replayed log asks for each request's own length, under the run's cap.
    max_tokens = min(planned.prompt.max_tokens or max_tokens, max_tokens)
    stream = Stream(endpoint.api, clock=lambda: time.perf_counter() - zero, max_tokens=max_tokens, texts=text_out)
    fields: dict[str, Any] = {}
    body = request_body(endpoint.model, endpoint.api, planned, max_tokens, ignore_eos, endpoint.request_seeds)
    retries = 0
    sent = time.perf_counter() - zero
    deadline = asyncio.timeout(endpoint.request_timeout_s)
    try:
        async with deadline:
            while True:
                sent = time.perf_counter() - zero
                try:
                    await _exchange(session, endpoint, body, stream, fields, zero)
                    break
                except aiohttp.ClientConnectorError:
                    if retries == len(CONNECT_RETRY_S):
                        raise
                    await asyncio.sleep(CONNECT_RETRY_S[retries])
                    retries += 1
    except Fault as fault:
        fields |= {"error": fault.kind, "error_detail": fault.detail or None}
    except aiohttp.ClientConnectorError as exc:
        fields |= {"error": "connect_error", "error_detail": _detail(exc)}
    except (aiohttp.ServerTimeoutError, aiohttp.ConnectionTimeoutError) as exc:
        fields |= {"error": "timeout", "error_detail": f"{type(exc).__name__} after {endpoint.stall_timeout_s:g} s"}
    except TimeoutError:
        if not deadline.expired():
            raise
        # The request outlived its deadline while data still flowed.
        fields |= {"error": "request_timeout", "error_detail": f"over {endpoint.request_timeout_s:g} s"}
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
        fields |= {"error": "stream_reset", "error_detail": _detail(exc)}
    except (aiohttp.ClientError, ValueError) as exc:
        # ValueError: a reply that is not HTTP at all (aiohttp's parser raises its own kinds of it).
        fields |= {"error": "http_error", "error_detail": _detail(exc)}
    end = time.perf_counter() - zero
    return RequestRecord(index=planned.index, warmup=planned.warmup, prompt_id=planned.prompt.id,
                         temperature=planned.temperature, scheduled_s=scheduled_s, sent_s=sent, end_s=end,
                         connect_retries=retries, max_tokens=max_tokens if planned.prompt.max_tokens else None,
                         **stream.record_fields(endpoint.k), **fields)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def session_for(connections: int | None) -> aiohttp.ClientSession:
    """One session (connection pool) for a driver: warm-up and measured requests share its connections.

    `connections` bounds the pool; None leaves it unbounded, so that an open-loop send never waits for a
    connection inside the pool, where its lag would be hidden from `sent_s`. aiohttp's pool hands out a
    connection in constant time (httpcore's scans every connection for every queued request: quadratic).
    """
    connector = aiohttp.TCPConnector(limit=connections or 0, limit_per_host=0, ttl_dns_cache=None,
                                     enable_cleanup_closed=False)
    # A server's cookies are no business of a load test's; Content-Type is set once here.
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=True,
                                 headers={"Content-Type": "application/json"}, timeout=aiohttp.ClientTimeout(None))
