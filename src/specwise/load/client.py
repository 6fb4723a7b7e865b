"""The HTTP client: one streamed request against an OpenAI-compatible endpoint, timed on a monotonic clock.

Timing (seconds on `time.perf_counter`, 0 = the run's start): each request has its
scheduled time, its actual send time and the arrival of every content chunk. TPOT and
ITL are derived from those (`results.RequestRecord`). Every failure — refused, reset,
HTTP error, malformed stream, stall — becomes the record's `error`, never an exception.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

import httpx

from specwise.load.protocol import (ERROR_DETAIL_CHARS, Api, Fault, Stream, api_path, per_request_acceptance,
                                    request_body)
from specwise.results import RequestRecord
from specwise.workload import LoadShape, Planned


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

    @property
    def headers(self) -> dict[str, str]:
        return auth_headers(self.api_key)


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number, or an HTTP date)."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _detail(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:ERROR_DETAIL_CHARS]


async def send(client: httpx.AsyncClient, endpoint: Endpoint, planned: Planned, *, zero: float, scheduled_s: float,
               max_tokens: int, ignore_eos: bool = True, text_out: list[str] | None = None) -> RequestRecord:
    """One streamed request; every failure becomes the record's `error`, never an exception."""
    stream = Stream(endpoint.api, clock=lambda: time.perf_counter() - zero, texts=text_out)
    fields = stream.fields
    sent = time.perf_counter() - zero
    try:
        body = request_body(endpoint.model, endpoint.api, planned, max_tokens, ignore_eos, endpoint.request_seeds)
        async with client.stream("POST", endpoint.url.rstrip("/") + api_path(endpoint.api), headers=endpoint.headers,
                                 json=body, timeout=httpx.Timeout(endpoint.stall_timeout_s, connect=10.0)) as response:
            fields["http_status"] = response.status_code
            if response.status_code != 200:
                fields["retry_after_s"] = retry_after(response.headers.get("retry-after"))
                raise Fault(f"http_{response.status_code}", (await response.aread()).decode(errors="replace"))
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                text = (await response.aread()).decode(errors="replace")
                raise Fault("not_streamed" if _is_json(text) else "non_json_body", text)
            async for line in response.aiter_lines():
                if stream.feed(line):
                    break
            stream.finish()
    except Fault as fault:
        fields |= {"error": fault.kind, "error_detail": fault.detail or None}
    except httpx.ConnectError as exc:
        fields |= {"error": "connect_error", "error_detail": str(exc)[:ERROR_DETAIL_CHARS] or None}
    except httpx.TimeoutException as exc:
        fields |= {"error": "timeout", "error_detail": f"{type(exc).__name__} after {endpoint.stall_timeout_s:g} s"}
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        fields |= {"error": "stream_reset", "error_detail": _detail(exc)}
    except httpx.HTTPError as exc:
        fields |= {"error": "http_error", "error_detail": _detail(exc)}
    end = time.perf_counter() - zero
    acceptance, source, merged = per_request_acceptance(stream.chunk_tokens, fields.get("spec"), endpoint.k)
    return RequestRecord(index=planned.index, warmup=planned.warmup, prompt_id=planned.prompt.id,
                         temperature=planned.temperature, scheduled_s=scheduled_s, sent_s=sent, end_s=end,
                         chunk_s=stream.chunk_s, chunk_tokens=stream.chunk_tokens, token_digests=stream.token_digests,
                         acceptance=acceptance,
                         acceptance_source=source, merged_chunks=merged, **fields)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def client_for(shape: LoadShape) -> httpx.AsyncClient:
    """One client (connection pool) for a run: warm-up and measured requests share its connections."""
    connections = shape.concurrency or shape.max_in_flight or 1000
    return httpx.AsyncClient(limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
                             timeout=httpx.Timeout(600.0))
