"""The OpenAI-compatible streaming protocol as pure functions: the request body, and a stream read line by
line into the chunks' times and token counts, the usage and the server's per-request metrics.

Every chunk's token count comes from its logprobs (`logprobs: 0` on completions,
`logprobs: true, top_logprobs: 0` on chat), so a chunk that carries several tokens —
one speculative step, or chunks merged by a lagging client — is still counted right.
A stream's faults are raised as `Fault(kind)`; the client records them per request.

Per-request acceptance comes from the server when it reports it (vLLM ≥ 0.32 with
`--per-request-spec-decode-metrics`: exact), otherwise it is estimated from tokens per
chunk and k (`results.chunk_steps`); a request with merged chunks gets no estimate.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from specwise.results import AcceptanceSource, chunk_steps
from specwise.workload import Planned

Api = Literal["completions", "chat"]
ERROR_DETAIL_CHARS = 200


class Fault(Exception):
    """What went wrong with one request, by kind (the record's `error`)."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(kind)
        self.kind, self.detail = kind, detail[:ERROR_DETAIL_CHARS]


def api_path(api: Api) -> str:
    return "/v1/chat/completions" if api == "chat" else "/v1/completions"


def request_body(model: str, api: Api, planned: Planned, max_tokens: int, ignore_eos: bool,
                 request_seeds: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "temperature": planned.temperature,
                            "stream": True, "stream_options": {"include_usage": True}}
    if request_seeds:
        body["seed"] = planned.seed
    if api == "chat":
        body |= {"messages": [{"role": "user", "content": planned.prompt.text}], "logprobs": True, "top_logprobs": 0}
    else:
        body |= {"prompt": planned.prompt.text, "logprobs": 0}
    if ignore_eos:
        body["ignore_eos"] = True
    return body


def chunk_of(choice: dict[str, Any], api: Api) -> tuple[list[str], str]:
    """(its tokens, its text) of one streamed choice. Without logprobs, a chunk with text is one token."""
    logprobs = choice.get("logprobs") or {}
    if api == "chat":
        text = (choice.get("delta") or {}).get("content") or ""
        tokens = [str(entry.get("token", "")) for entry in logprobs.get("content") or []]
    else:
        text = choice.get("text") or ""
        tokens = [str(token) for token in logprobs.get("tokens") or []]
    return (tokens or ([text] if text else [])), text


def token_digest(token: str) -> int:
    """A token's fingerprint: outputs are compared token by token without storing their text."""
    return zlib.crc32(token.encode())


@dataclass
class Stream:
    """One response stream as read so far. `feed` each line as it arrives; `finish` when the body ends."""

    api: Api
    clock: Callable[[], float]              # the run's clock, read when a data line arrives
    texts: list[str] | None = None          # the generated text, when the caller wants it
    chunk_s: list[float] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)
    token_digests: list[int] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)   # output_tokens, spec: for the record
    events: int = 0
    done: bool = False

    def feed(self, line: str) -> bool:
        """Read one line; True once `[DONE]` came (the caller stops reading)."""
        if not line.strip() or line.startswith(":"):
            return False
        if not line.startswith("data:"):
            raise Fault("malformed_sse", line)
        payload = line[5:].strip()
        if payload == "[DONE]":
            self.done = True
            return True
        now = self.clock()
        try:
            event = json.loads(payload)
        except ValueError:
            raise Fault("malformed_sse", payload) from None
        if not isinstance(event, dict):
            raise Fault("malformed_sse", payload)
        if event.get("error"):
            raise Fault("stream_error", json.dumps(event["error"]))
        self.events += 1
        for choice in event.get("choices") or []:
            tokens, text = chunk_of(choice, self.api)
            if tokens:
                self.chunk_s.append(now)
                self.chunk_tokens.append(len(tokens))
                self.token_digests.extend(token_digest(t) for t in tokens)
                if self.texts is not None:
                    self.texts.append(text)
        if event.get("usage"):
            self.fields["output_tokens"] = event["usage"].get("completion_tokens")
        metrics = event.get("metrics") or {}
        if metrics.get("speculative_decoding"):
            self.fields["spec"] = metrics["speculative_decoding"]
        return False

    def finish(self) -> None:
        if not self.chunk_s:
            raise Fault("empty_choices" if self.events else "empty_stream", "no content chunk in the stream")
        if not self.done:
            raise Fault("truncated_stream", "the stream ended without [DONE]")


def per_request_acceptance(chunk_tokens: Sequence[int], spec: dict[str, Any] | None,
                           k: int | None) -> tuple[float | None, AcceptanceSource, int]:
    """(acceptance, where it came from, merged chunks) for one request."""
    if spec and spec.get("num_draft_tokens"):
        return float(spec["draft_acceptance_rate"]), "server", 0
    if not k or len(chunk_tokens) < 2:
        return None, "none", 0
    steps, accepted, merged = chunk_steps(list(chunk_tokens), k)
    if merged:
        return None, "none", merged
    return accepted / steps / k, "chunks", 0
