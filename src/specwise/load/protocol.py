"""The OpenAI-compatible streaming protocol as pure functions: the request body, and a stream read line by
line into the chunks' times and token counts, the usage and the server's per-request metrics.

Every chunk's token count comes from its logprobs (`logprobs: 0` on completions,
`logprobs: true, top_logprobs: 0` on chat), so a chunk that carries several tokens —
one speculative step, or chunks merged by a lagging client — is still counted right.
A stream without logprobs gets an estimated count (`token_source`). Every reply is
untrusted: a stream's faults are raised as `Fault(kind)`, the client records them per
request, and implausible values are ignored and noted.

Per-request acceptance comes from the server when it reports it (vLLM ≥ 0.32 with
`--per-request-spec-decode-metrics`: exact), otherwise it is estimated from tokens per
chunk and k (`results.chunk_steps`); a request with merged chunks gets no estimate.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from specwise.results import AcceptanceSource, TokenSource, chunk_steps
from specwise.workload import Planned

Api = Literal["completions", "chat"]
ERROR_DETAIL_CHARS = 200
MAX_LINE_BYTES = 1 << 20    # an SSE line longer than this is a fault: vLLM's longest are a few kB
MAX_ANOMALIES = 8
_LINE_END = re.compile(rb"\r\n|\r|\n")
T = TypeVar("T")


class Fault(Exception):
    """What went wrong with one request, by kind (the record's `error`)."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(kind)
        self.kind, self.detail = kind, _short(detail)


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


def _field(obj: dict[str, Any], key: str, kind: type[T], where: str) -> T | None:
    """obj[key] when it is a `kind` (None when absent or null); any other type is a malformed event."""
    value = obj.get(key)
    if value is None or isinstance(value, kind):
        return value
    raise Fault("malformed_event", f"{where}{key} is {type(value).__name__}, not {kind.__name__}")


def _dict(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Fault("malformed_event", f"{where} is {type(value).__name__}, not dict")
    return value


def chunk_of(choice: object, api: Api) -> tuple[list[str], str, bool]:
    """(its tokens, its text, whether the tokens were counted from logprobs) of one streamed choice.

    Without logprobs a chunk with text is taken as one token: an estimate, since one
    speculative step's chunk carries several. A field of the wrong type is a `Fault`.
    """
    choice = _dict(choice, "a choice")
    logprobs = _field(choice, "logprobs", dict, "choice.") or {}
    if api == "chat":
        text = _field(_field(choice, "delta", dict, "choice.") or {}, "content", str, "delta.") or ""
        entries = _field(logprobs, "content", list, "logprobs.") or []
        tokens = [_field(_dict(entry, "a logprobs.content entry"), "token", str, "logprobs.content[].") or ""
                  for entry in entries]
    else:
        text = _field(choice, "text", str, "choice.") or ""
        tokens = _field(logprobs, "tokens", list, "logprobs.") or []
        if not all(isinstance(token, str) for token in tokens):
            raise Fault("malformed_event", "logprobs.tokens holds a non-string")
    if tokens:
        return tokens, text, True
    return ([text] if text else []), text, False


def _is_count(value: object) -> bool:
    """A JSON integer ≥ 0 (bool is an int to Python, never a count)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _describe(value: object) -> str:
    """A server's value in a note: scalars shortened, containers by type — a note stays short and cannot recurse."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return repr(value)[:40]
    return type(value).__name__


def spec_metrics(raw: object, max_tokens: int | None = None) -> dict[str, Any] | None:
    """The server's per-request speculative-decoding metrics when they are plausible counts, else None.

    Accepted draft tokens are output tokens, so they cannot exceed max_tokens (an absurd
    count would outweigh every other request in a pooled acceptance). The rate is
    recomputed from the counts, so one that contradicts them cannot be recorded.
    """
    if not isinstance(raw, dict):
        return None
    drafted, accepted = raw.get("num_draft_tokens"), raw.get("num_accepted_draft_tokens")
    if not (_is_count(drafted) and _is_count(accepted) and accepted <= drafted):
        return None
    if max_tokens is not None and accepted > max_tokens:
        return None
    return {"num_draft_tokens": drafted, "num_accepted_draft_tokens": accepted,
            "draft_acceptance_rate": accepted / drafted if drafted else None}


def reconcile_tokens(counted: int, estimated: bool, usage: int | None,
                     max_tokens: int | None) -> tuple[int, TokenSource, str | None]:
    """(output tokens, where the figure comes from, how the sources disagreed) for one request.

    `counted` is the chunks' tokens (from logprobs, or one per chunk where `estimated`).
    Logprobs are exact and win; usage is trusted only as a count within max_tokens that
    covers the chunks — an inflated usage would shrink TPOT by the same factor.
    """
    if not estimated:
        agree = usage is None or usage == counted
        return counted, "logprobs", None if agree else _short(f"usage.completion_tokens {usage}, logprobs {counted}")
    if usage is None:
        return counted, "chunks", None
    if usage < 0:
        problem = "negative"
    elif max_tokens is not None and usage > max_tokens:
        problem = f"over max_tokens {max_tokens}"
    elif usage < counted:
        problem = f"under the {counted} tokens seen"
    else:
        return usage, "usage", None
    return counted, "chunks", _short(f"usage.completion_tokens {usage} {problem}")


def _short(text: str) -> str:
    return text[:ERROR_DETAIL_CHARS]


def token_digest(token: str) -> int:
    """A token's fingerprint: outputs are compared token by token without storing their text."""
    # surrogatepass: JSON can carry a lone surrogate ("\\ud800"), which plain UTF-8 cannot encode.
    return zlib.crc32(token.encode(errors="surrogatepass"))


@dataclass
class Stream:
    """One response stream as read so far. `feed` each line as it arrives; `finish` when the body ends.

    Nothing a server sends escapes as anything but a `Fault`: a field of the wrong
    type is a malformed event, an implausible usage or spec metric is ignored and noted
    in `anomalies`, and more tokens than `max_tokens` cut the request.
    """

    api: Api
    clock: Callable[[], float]              # the run's clock, read when a data line arrives
    max_tokens: int | None = None
    texts: list[str] | None = None          # the generated text, when the caller wants it
    chunk_s: list[float] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)
    token_digests: list[int] = field(default_factory=list)
    counted: int = 0                        # tokens in the chunks so far
    estimated: bool = False                 # some chunk had no logprobs: its token count is a guess
    usage: int | None = None                # usage.completion_tokens as reported, when an integer
    spec: dict[str, Any] | None = None
    anomalies: list[str] = field(default_factory=list)
    events: int = 0
    done: bool = False

    def feed(self, line: str, now: float | None = None) -> bool:
        """Read one line; True once `[DONE]` came (the caller stops reading). `now`: when its bytes arrived
        (the caller's read), so that parsing the lines before it in the same read does not delay its time."""
        if not line.strip() or line.startswith(":"):
            return False
        if not line.startswith("data:"):
            raise Fault("malformed_sse", line)
        payload = line[5:].strip()
        if payload == "[DONE]":
            self.done = True
            return True
        now = self.clock() if now is None else now
        try:
            event = json.loads(payload)
        except (ValueError, RecursionError):  # deep nesting is a RecursionError, not a ValueError
            raise Fault("malformed_sse", payload) from None
        if not isinstance(event, dict):
            raise Fault("malformed_sse", payload)
        if event.get("error"):
            raise Fault("stream_error", payload)
        self.events += 1
        choices = _field(event, "choices", list, "") or []
        for choice in choices:
            tokens, text, counted = chunk_of(choice, self.api)
            if tokens:
                self._chunk(now, tokens, text, counted)
        self._usage(event.get("usage"))
        self._metrics(event.get("metrics"))
        return False

    def _chunk(self, now: float, tokens: list[str], text: str, counted: bool) -> None:
        if self.max_tokens is not None and self.counted + len(tokens) > self.max_tokens:
            # A server that ignores max_tokens would stream forever: stop reading it (the record keeps what fit).
            raise Fault("over_max_tokens", f"{self.counted + len(tokens)} tokens arrived, max_tokens {self.max_tokens}")
        self.counted += len(tokens)
        self.chunk_s.append(now)
        self.chunk_tokens.append(len(tokens))
        self.token_digests.extend(token_digest(t) for t in tokens)
        self.estimated |= not counted
        if self.texts is not None:
            self.texts.append(text)

    def _usage(self, usage: object) -> None:
        if usage is None:  # vLLM sends `"usage": null` on every chunk but the last
            return
        count = usage.get("completion_tokens") if isinstance(usage, dict) else None
        if isinstance(count, int) and not isinstance(count, bool):
            self.usage = count  # judged against the chunks in `reconcile_tokens`
        else:
            self._note(f"usage ignored: {_describe(count if isinstance(usage, dict) else usage)}")

    def _metrics(self, metrics: object) -> None:
        if metrics is None:
            return
        if not isinstance(metrics, dict):
            self._note(f"metrics ignored: {_describe(metrics)}")
            return
        raw = metrics.get("speculative_decoding")
        if raw is None:
            return
        spec = spec_metrics(raw, self.max_tokens)
        if spec is None:
            self._note(f"metrics.speculative_decoding ignored: {_describe(raw)}")
        else:
            self.spec = spec

    def _note(self, note: str) -> None:
        # A few distinct notes: a server repeating a bad value on every chunk must not grow the record.
        if note not in self.anomalies and len(self.anomalies) < MAX_ANOMALIES:
            self.anomalies.append(note)

    def finish(self) -> None:
        if not self.chunk_s:
            raise Fault("empty_choices" if self.events else "empty_stream", "no content chunk in the stream")
        if not self.done:
            raise Fault("truncated_stream", "the stream ended without [DONE]")

    def record_fields(self, k: int | None) -> dict[str, Any]:
        """What the stream says for the request's record: tokens, their source, acceptance, anomalies."""
        output, source, disagreement = reconcile_tokens(self.counted, self.estimated, self.usage, self.max_tokens)
        # Tokens per chunk are only known from logprobs: without them chunk sizes say nothing about acceptance.
        acceptance, acceptance_source, merged = per_request_acceptance(
            self.chunk_tokens if source == "logprobs" else (), self.spec, k)
        return {"chunk_s": self.chunk_s, "chunk_tokens": self.chunk_tokens, "token_digests": self.token_digests,
                "output_tokens": output,
                "token_source": source, "token_count_disagreement": disagreement, "spec": self.spec,
                "anomalies": self.anomalies, "acceptance": acceptance, "acceptance_source": acceptance_source,
                "merged_chunks": merged}


class LineSplitter:
    """SSE lines out of a byte stream (ended by CR LF, LF or CR, as SSE allows), none longer than `limit` bytes.

    A client library's line reader (httpx's `aiter_lines`) holds a whole line before
    yielding it, so a server that never ends a line would grow memory without bound: here
    a line is a fault once it passes the limit, before the rest of it is read.
    """

    def __init__(self, limit: int = MAX_LINE_BYTES) -> None:
        self.limit = limit
        self._pending = bytearray()
        self._after_cr = False  # the last piece ended in CR: an LF opening the next one ends no second line

    def feed(self, data: bytes) -> list[str]:
        if not data:
            return []
        start = 1 if self._after_cr and data.startswith(b"\n") else 0
        lines = []
        for end in _LINE_END.finditer(data, start):
            self._take(data[start:end.start()])
            lines.append(self._pending.decode(errors="replace"))
            self._pending.clear()
            start = end.end()
        self._take(data[start:])
        self._after_cr = data.endswith(b"\r")
        return lines

    def rest(self) -> str:
        """The last line, when the stream ended without a line end."""
        return self._pending.decode(errors="replace")

    def _take(self, data: bytes) -> None:
        if len(self._pending) + len(data) > self.limit:
            raise Fault("line_too_long", f"an SSE line over {self.limit} bytes")
        self._pending += data


def per_request_acceptance(chunk_tokens: Sequence[int], spec: dict[str, Any] | None,
                           k: int | None) -> tuple[float | None, AcceptanceSource, int]:
    """(acceptance, where it came from, merged chunks) for one request; `spec` as `spec_metrics` returns it."""
    if spec and spec.get("num_draft_tokens"):
        return spec["num_accepted_draft_tokens"] / spec["num_draft_tokens"], "server", 0
    if not k or len(chunk_tokens) < 2:
        return None, "none", 0
    steps, accepted, merged = chunk_steps(list(chunk_tokens), k)
    if merged:
        return None, "none", merged
    return accepted / steps / k, "chunks", 0
