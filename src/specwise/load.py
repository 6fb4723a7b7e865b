"""Streaming requests against an OpenAI-compatible server, timed on a monotonic clock.

TPOT is (time of the last chunk − time of the first) / (output tokens − 1): a
chunk that carries several tokens (one speculative step) counts for all of
them. Every chunk's token count comes from its logprobs (`logprobs: 0`), so
merged chunks are still counted right.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class RequestResult:
    index: int
    temperature: float
    start: float
    chunk_times: list[float] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)
    output_tokens: int | None = None
    end: float | None = None
    error: str | None = None
    spec: dict[str, Any] | None = None   # the server's per-request speculative-decoding metrics, if any
    text: str = ""

    @property
    def ttft_s(self) -> float | None:
        return self.chunk_times[0] - self.start if self.chunk_times else None

    @property
    def e2e_s(self) -> float | None:
        return self.end - self.start if self.end is not None and self.error is None else None

    @property
    def tpot_s(self) -> float | None:
        tokens = self.output_tokens or sum(self.chunk_tokens)
        if len(self.chunk_times) < 2 or tokens < 2:
            return None
        return (self.chunk_times[-1] - self.chunk_times[0]) / (tokens - 1)

    @property
    def tokens_per_chunk(self) -> float | None:
        return sum(self.chunk_tokens) / len(self.chunk_tokens) if self.chunk_tokens else None


async def stream_completion(client: httpx.AsyncClient, url: str, model: str, prompt: str, *, index: int = 0,
                            temperature: float = 0.0, max_tokens: int = 64, seed: int | None = None,
                            ignore_eos: bool = True) -> RequestResult:
    body: dict[str, Any] = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature,
                            "stream": True, "logprobs": 0, "stream_options": {"include_usage": True}}
    if seed is not None:
        body["seed"] = seed
    if ignore_eos:
        body["ignore_eos"] = True
    result = RequestResult(index, temperature, time.monotonic())
    text: list[str] = []
    try:
        async with client.stream("POST", f"{url}/v1/completions", json=body) as response:
            if response.status_code != 200:
                result.error = f"http {response.status_code}"
                return result
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                now, event = time.monotonic(), json.loads(line[6:])
                choices = event.get("choices") or []
                if choices:
                    tokens = len(((choices[0].get("logprobs") or {}).get("tokens")) or [])
                    if tokens or choices[0].get("text"):
                        result.chunk_times.append(now)
                        result.chunk_tokens.append(tokens or 1)
                        text.append(choices[0].get("text") or "")
                if event.get("usage"):
                    result.output_tokens = event["usage"].get("completion_tokens")
                    result.spec = (event.get("metrics") or {}).get("speculative_decoding") or result.spec
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        result.error = type(exc).__name__
    result.end = time.monotonic()
    result.text = "".join(text)
    return result


async def closed_loop(url: str, model: str, prompts: Sequence[str], *, concurrency: int, requests: int,
                      temperature: float = 0.0, max_tokens: int = 64, seed: int = 0) -> list[RequestResult]:
    """`requests` requests, `concurrency` in flight at a time, prompts taken in turn."""
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0),
                                 limits=httpx.Limits(max_connections=concurrency + 2)) as client:
        async def one(i: int) -> RequestResult:
            async with limit:
                return await stream_completion(client, url, model, prompts[i % len(prompts)], index=i,
                                               temperature=temperature, max_tokens=max_tokens, seed=seed + i)
        return list(await asyncio.gather(*(one(i) for i in range(requests))))
