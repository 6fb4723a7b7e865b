"""The load generator: streaming requests against an OpenAI-compatible server, timed on a monotonic clock.

Timing (seconds on `time.perf_counter`, 0 = the run's start): each request has
its scheduled time, its actual send time and the arrival of every content
chunk. Every chunk's token count comes from its logprobs (`logprobs: 0` on
completions, `logprobs: true, top_logprobs: 0` on chat), so a chunk that
carries several tokens — one speculative step, or chunks merged by a lagging
client — is still counted right. TPOT = (last chunk − first chunk) / (output
tokens − 1); ITL spreads each gap between chunks over the tokens of the later one.

Per-request acceptance comes from the server when it reports it (vLLM ≥ 0.32
with `--per-request-spec-decode-metrics`: exact), otherwise it is estimated from
tokens per chunk and k: each chunk after the first is one verify step that
emitted 1 + accepted tokens. A chunk with more than k + 1 tokens cannot be one
step: the request is flagged as having merged chunks and gets no estimate.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx

from specwise.errors import SpecwiseError
from specwise.prompts import Prompt
from specwise.results import AcceptanceSource, RequestRecord

Api = Literal["completions", "chat"]
ERROR_DETAIL_CHARS = 200


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


@dataclass(frozen=True)
class Target:
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

    @property
    def path(self) -> str:
        return "/v1/chat/completions" if self.api == "chat" else "/v1/completions"


@dataclass(frozen=True)
class Planned:
    index: int
    prompt: Prompt
    temperature: float
    warmup: bool
    seed: int


@dataclass(frozen=True)
class LoadShape:
    concurrency: int | None = None      # closed loop: this many requests in flight
    rate: float | None = None           # open loop: requests per second
    arrivals: Literal["poisson", "constant"] = "poisson"
    burstiness: float = 1.0             # gamma shape of the gaps: 1 = Poisson, < 1 burstier, > 1 smoother
    requests: int | None = None         # stop after this many requests
    duration_s: float | None = None     # or: stop sending after this long
    max_in_flight: int | None = None    # open loop: cap on requests in flight

    def validate(self) -> LoadShape:
        if (self.concurrency is None) == (self.rate is None):
            raise SpecwiseError("--concurrency/--rate", "give exactly one load", "e.g. --concurrency 4 or --rate 2")
        if self.concurrency is not None and self.concurrency < 1:
            raise SpecwiseError("--concurrency", f"must be ≥ 1, got {self.concurrency}", "e.g. --concurrency 4")
        if self.rate is not None and not self.rate > 0:
            raise SpecwiseError("--rate", f"must be > 0 requests/s, got {self.rate}", "e.g. --rate 2")
        if not self.burstiness > 0:
            raise SpecwiseError("--burstiness", f"must be > 0, got {self.burstiness}", "1 is Poisson")
        if self.requests is None and self.duration_s is None:
            raise SpecwiseError("--requests/--duration", "give a bound", "e.g. --requests 100 or --duration 60")
        if self.requests is not None and self.requests < 1:
            raise SpecwiseError("--requests", f"must be ≥ 1, got {self.requests}", "e.g. --requests 100")
        if self.duration_s is not None and not self.duration_s > 0:
            raise SpecwiseError("--duration", f"must be > 0 s, got {self.duration_s}", "e.g. --duration 60")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise SpecwiseError("--max-in-flight", f"must be ≥ 1, got {self.max_in_flight}", "or leave it out")
        return self


def parse_temperature_mix(text: str) -> tuple[tuple[float, float], ...]:
    """'0.1:60,1.0:40' → ((0.1, 0.6), (1.0, 0.4)); a bare '0.7' is that temperature alone."""
    mix: list[tuple[float, float]] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        temp, _, weight = part.partition(":")
        try:
            t, w = float(temp), float(weight) if weight else 1.0
        except ValueError:
            raise SpecwiseError("--temperatures", f"cannot read {part!r}",
                                "write TEMP:WEIGHT pairs, e.g. 0.1:60,1.0:40") from None
        if t < 0 or w <= 0:
            raise SpecwiseError("--temperatures", f"{part!r}: temperature must be ≥ 0 and weight > 0",
                                "e.g. 0.1:60,1.0:40")
        mix.append((t, w))
    if not mix:
        raise SpecwiseError("--temperatures", "empty mix", "e.g. 0.1:60,1.0:40")
    total = sum(w for _, w in mix)
    return tuple((t, w / total) for t, w in mix)


def request_plan(prompts: Sequence[Prompt], mix: Sequence[tuple[float, float]], seed: int,
                 warmup: int = 0) -> Iterator[Planned]:
    """The run's request sequence: the same seed gives the same prompts, temperatures and sampling seeds."""
    rng = random.Random(seed)
    temps, weights = [t for t, _ in mix], [w for _, w in mix]
    order = list(range(len(prompts)))
    i = 0
    while True:
        rng.shuffle(order)
        for j in order:
            yield Planned(i, prompts[j], rng.choices(temps, weights)[0], i < warmup, rng.randrange(2**31))
            i += 1


def arrival_offsets(rate: float, arrivals: str, burstiness: float, seed: int) -> Iterator[float]:
    """Send times (s from the start) of an open-loop load: constant gaps, or gamma gaps of mean 1/rate."""
    rng = random.Random(seed ^ 0x5EED)
    t = 0.0
    while True:
        yield t
        t += 1.0 / rate if arrivals == "constant" else rng.gammavariate(burstiness, 1.0 / (rate * burstiness))


def per_request_acceptance(chunk_tokens: Sequence[int], spec: dict[str, Any] | None,
                           k: int | None) -> tuple[float | None, AcceptanceSource, int]:
    """(acceptance, where it came from, merged chunks) for one request."""
    if spec and spec.get("num_draft_tokens"):
        return float(spec["draft_acceptance_rate"]), "server", 0
    if not k or len(chunk_tokens) < 2:
        return None, "none", 0
    steps = chunk_tokens[1:]  # the first chunk is the prefill's token
    merged = sum(1 for n in steps if n > k + 1)
    if merged:
        return None, "none", merged
    return (sum(steps) / len(steps) - 1) / k, "chunks", 0


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _body(target: Target, planned: Planned, max_tokens: int, ignore_eos: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": target.model, "max_tokens": max_tokens, "temperature": planned.temperature,
                            "stream": True, "stream_options": {"include_usage": True}}
    if target.request_seeds:
        body["seed"] = planned.seed
    if target.api == "chat":
        body |= {"messages": [{"role": "user", "content": planned.prompt.text}], "logprobs": True, "top_logprobs": 0}
    else:
        body |= {"prompt": planned.prompt.text, "logprobs": 0}
    if ignore_eos:
        body["ignore_eos"] = True
    return body


def _chunk(choice: dict[str, Any], api: Api) -> tuple[int, str]:
    """(tokens, text) of one streamed choice."""
    logprobs = choice.get("logprobs") or {}
    if api == "chat":
        text = (choice.get("delta") or {}).get("content") or ""
        tokens = len(logprobs.get("content") or [])
    else:
        text = choice.get("text") or ""
        tokens = len(logprobs.get("tokens") or [])
    return (tokens or (1 if text else 0)), text


class _Fault(Exception):
    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(kind)
        self.kind, self.detail = kind, detail[:ERROR_DETAIL_CHARS]


async def send(client: httpx.AsyncClient, target: Target, planned: Planned, *, zero: float, scheduled_s: float,
               max_tokens: int, ignore_eos: bool = True, text_out: list[str] | None = None) -> RequestRecord:
    """One streamed request; every failure becomes the record's `error`, never an exception."""
    chunk_s: list[float] = []
    chunk_tokens: list[int] = []
    fields: dict[str, Any] = {}
    sent = time.perf_counter() - zero
    try:
        async with client.stream("POST", target.url.rstrip("/") + target.path, headers=target.headers,
                                 json=_body(target, planned, max_tokens, ignore_eos),
                                 timeout=httpx.Timeout(target.stall_timeout_s, connect=10.0)) as response:
            fields["http_status"] = response.status_code
            if response.status_code != 200:
                fields["retry_after_s"] = _retry_after(response.headers.get("retry-after"))
                detail = (await response.aread()).decode(errors="replace")
                raise _Fault(f"http_{response.status_code}", detail)
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                body = (await response.aread()).decode(errors="replace")
                try:
                    json.loads(body)
                except ValueError:
                    raise _Fault("non_json_body", body) from None
                raise _Fault("not_streamed", body)
            done, events = False, 0
            async for line in response.aiter_lines():
                if not line.strip() or line.startswith(":"):
                    continue
                if not line.startswith("data:"):
                    raise _Fault("malformed_sse", line)
                payload = line[5:].strip()
                if payload == "[DONE]":
                    done = True
                    break
                now = time.perf_counter() - zero
                try:
                    event = json.loads(payload)
                except ValueError:
                    raise _Fault("malformed_sse", payload) from None
                if not isinstance(event, dict):
                    raise _Fault("malformed_sse", payload)
                if event.get("error"):
                    raise _Fault("stream_error", json.dumps(event["error"]))
                events += 1
                for choice in event.get("choices") or []:
                    tokens, text = _chunk(choice, target.api)
                    if tokens:
                        chunk_s.append(now)
                        chunk_tokens.append(tokens)
                        if text_out is not None:
                            text_out.append(text)
                if event.get("usage"):
                    fields["output_tokens"] = event["usage"].get("completion_tokens")
                metrics = event.get("metrics") or {}
                if metrics.get("speculative_decoding"):
                    fields["spec"] = metrics["speculative_decoding"]
            if not chunk_s:
                raise _Fault("empty_choices" if events else "empty_stream", "no content chunk in the stream")
            if not done:
                raise _Fault("truncated_stream", "the stream ended without [DONE]")
    except _Fault as fault:
        fields |= {"error": fault.kind, "error_detail": fault.detail or None}
    except httpx.ConnectError as exc:
        fields |= {"error": "connect_error", "error_detail": str(exc)[:ERROR_DETAIL_CHARS] or None}
    except httpx.TimeoutException as exc:
        fields |= {"error": "timeout", "error_detail": f"{type(exc).__name__} after {target.stall_timeout_s:g} s"}
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        fields |= {"error": "stream_reset", "error_detail": f"{type(exc).__name__}: {exc}"[:ERROR_DETAIL_CHARS]}
    except httpx.HTTPError as exc:
        fields |= {"error": "http_error", "error_detail": f"{type(exc).__name__}: {exc}"[:ERROR_DETAIL_CHARS]}
    end = time.perf_counter() - zero
    acceptance, source, merged = per_request_acceptance(chunk_tokens, fields.get("spec"), target.k)
    return RequestRecord(index=planned.index, warmup=planned.warmup, prompt_id=planned.prompt.id,
                         temperature=planned.temperature, scheduled_s=scheduled_s, sent_s=sent, end_s=end,
                         chunk_s=chunk_s, chunk_tokens=chunk_tokens, acceptance=acceptance,
                         acceptance_source=source, merged_chunks=merged, **fields)


# asyncio.sleep wakes up to a few ms late on a busy loop: sleep to just before the send time,
# then yield to the loop until it comes, so other requests' chunks are still read meanwhile.
SPIN_S = 0.002


async def sleep_until(when: float) -> None:
    delay = when - time.perf_counter()
    if delay > SPIN_S:
        await asyncio.sleep(delay - SPIN_S)
    while time.perf_counter() < when:
        await asyncio.sleep(0)


def client_for(shape: LoadShape) -> httpx.AsyncClient:
    """One client (connection pool) for a run: warm-up and measured requests share its connections."""
    connections = shape.concurrency or shape.max_in_flight or 1000
    return httpx.AsyncClient(limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
                             timeout=httpx.Timeout(600.0))


async def run_load(client: httpx.AsyncClient, target: Target, plan: Iterator[Planned], shape: LoadShape, *,
                   max_tokens: int, on_record: Callable[[RequestRecord], None], ignore_eos: bool = True,
                   seed: int = 0, zero: float | None = None) -> None:
    """Send the next requests of `plan` in `shape` until its bound; `on_record` gets each record as it ends.

    The duration and the open-loop schedule run from this call. Requests in flight when
    the bound is reached are awaited; cancelling the task cancels them.
    """
    zero = time.perf_counter() if zero is None else zero
    deadline = time.perf_counter() + shape.duration_s if shape.duration_s is not None else None
    sent = 0

    def more() -> bool:
        nonlocal sent
        if shape.requests is not None and sent >= shape.requests:
            return False
        if deadline is not None and time.perf_counter() >= deadline:
            return False
        sent += 1
        return True

    async def one(planned: Planned, scheduled_s: float) -> None:
        on_record(await send(client, target, planned, zero=zero, scheduled_s=scheduled_s, max_tokens=max_tokens,
                             ignore_eos=ignore_eos))

    if shape.concurrency is not None:
        async def worker() -> None:
            while more():
                await one(next(plan), time.perf_counter() - zero)

        await asyncio.gather(*(worker() for _ in range(shape.concurrency)))
        return

    assert shape.rate is not None
    cap = asyncio.Semaphore(shape.max_in_flight) if shape.max_in_flight else None
    tasks: set[asyncio.Task[None]] = set()
    offsets = arrival_offsets(shape.rate, shape.arrivals, shape.burstiness, seed)

    async def capped(planned: Planned, scheduled_s: float) -> None:
        try:
            await one(planned, scheduled_s)
        finally:
            if cap:
                cap.release()

    start = time.perf_counter() - zero
    try:
        while more():
            planned, scheduled_s = next(plan), start + next(offsets)
            await sleep_until(zero + scheduled_s)
            if cap:
                await cap.acquire()
            task = asyncio.create_task(capped(planned, scheduled_s))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
