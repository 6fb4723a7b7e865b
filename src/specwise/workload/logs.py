"""Request logs, read as a stream: one `Observed` request (or one `BadLine`) at a time, so that a log of any
size is read in bounded memory. Accepted inputs (see the README's `analyze` section for the mapping of others):

- JSONL, one request per line, in any of these shapes:
  * an OpenAI request body: `{"model", "prompt" | "messages", "temperature", "max_tokens", ...}`;
  * a gateway/proxy record wrapping it: the body under `request` (or `body`, `request_body`, `input`), the
    response under `response` (or `response_body`, `output`; `response.body` as OpenAI's batch output has it),
    a send time under `timestamp` / `time` / `start_time` / `created_at` / `request_time` (epoch seconds,
    milliseconds or nanoseconds, or ISO 8601), and timings under `ttft_ms` / `time_to_first_token_ms` /
    `ttft_s` and `latency_ms` / `e2e_ms` / `duration_ms` / `latency_s`, or an `end_time`;
  * a ShareGPT conversation `{"conversations": [{"from": "human", "value": ...}, {"from": "gpt", ...}]}`;
- a ShareGPT JSON file (a list of conversations), parsed item by item;
- a specwise run directory (its `requests.jsonl` files: temperatures, lengths and send times, no text).

A line that is not one of these is a `BadLine` with its number: counted, never fatal.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from specwise.errors import SpecwiseError, shown

READ_BYTES = 1 << 20
# A line longer than this is not a request a server took (vLLM's own limits are far below): skipped as bad,
# so that one corrupt line without a newline cannot take the reader's memory.
MAX_LINE_BYTES = 64 << 20
# OpenAI's and vLLM's default when a request sets no temperature.
DEFAULT_TEMPERATURE = 1.0
FORMATS = ("jsonl", "sharegpt", "specwise-run")


@dataclass(frozen=True)
class Observed:
    """One request of the log, as far as the log tells."""

    line: int
    temperature: float
    temperature_set: bool
    prompt: str | None = None
    output: str | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    arrival_s: float | None = None
    ttft_ms: float | None = None
    e2e_ms: float | None = None
    structured_request: bool = False   # response_format JSON, tools or guided decoding asked for


@dataclass(frozen=True)
class BadLine:
    line: int
    why: str


def detect_format(path: Path) -> str:
    if path.is_dir():
        return "specwise-run"
    if not path.is_file():
        raise SpecwiseError("LOG", f"no file or directory named {shown(str(path))}",
                            "give a JSONL request log, a ShareGPT JSON file or a specwise run directory")
    with path.open("rb") as f:
        head = f.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip()
    return "sharegpt" if head.startswith(b"[") else "jsonl"


def read_log(path: Path, fmt: str | None = None) -> Iterator[Observed | BadLine]:
    fmt = fmt or detect_format(path)
    if fmt == "specwise-run":
        yield from _run_dir(path)
    elif fmt == "sharegpt":
        for n, item in _json_array(path):
            yield _parse(item, n) if not isinstance(item, BadLine) else item
    else:
        for n, line in _lines(path):
            if isinstance(line, BadLine):
                yield line
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                yield BadLine(n, f"not JSON ({str(exc)[:60]})")
                continue
            except RecursionError:
                yield BadLine(n, "nested too deeply")
                continue
            yield _parse(row, n)


def _lines(path: Path) -> Iterator[tuple[int, bytes | BadLine]]:
    """Non-blank lines with their numbers; a line past MAX_LINE_BYTES is skipped to its end, as bad."""
    n, buf, skipping = 0, b"", False
    with path.open("rb") as f:
        while chunk := f.read(READ_BYTES):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                n += 1
                if skipping:
                    skipping = False
                    yield n, BadLine(n, f"longer than {MAX_LINE_BYTES >> 20} MiB")
                elif line.strip():
                    yield n, line
            if len(buf) > MAX_LINE_BYTES:
                buf, skipping = b"", True
    if skipping or buf.strip():
        n += 1
        yield n, BadLine(n, f"longer than {MAX_LINE_BYTES >> 20} MiB") if skipping else buf


def _json_array(path: Path) -> Iterator[tuple[int, Any]]:
    """The items of a top-level JSON array, one at a time (numbered from 1): a ShareGPT file of any size."""
    decoder = json.JSONDecoder()
    with path.open(encoding="utf-8-sig", errors="replace") as f:
        buf, pos, n, started = "", 0, 0, False
        eof = False
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n,":
                pos += 1
            if not started and pos < len(buf):
                if buf[pos] != "[":
                    raise SpecwiseError("LOG", f"{path} is not a JSON array", "give a ShareGPT list of conversations")
                started, pos = True, pos + 1
                continue
            if pos < len(buf) and buf[pos] == "]":
                return
            if pos < len(buf):
                try:
                    item, end = decoder.raw_decode(buf, pos)
                except RecursionError:
                    n += 1
                    yield n, BadLine(n, "an item nested too deeply (the rest of the file is skipped)")
                    return
                except ValueError:
                    if eof or len(buf) - pos > MAX_LINE_BYTES:
                        n += 1
                        yield n, BadLine(n, "an item that is not JSON (the rest of the file is skipped)")
                        return
                else:
                    n += 1
                    yield n, item
                    pos = end
                    continue
            if eof:
                return
            chunk = f.read(READ_BYTES)
            eof = not chunk
            buf, pos = buf[pos:] + chunk, 0


def _run_dir(path: Path) -> Iterator[Observed | BadLine]:
    files = sorted(path.rglob("requests.jsonl"))
    if not files:
        raise SpecwiseError("LOG", f"{path} holds no requests.jsonl", "give a directory written by specwise bench/run")
    # Each run's send times start at its own zero: pooled, the runs would lie on top of each other, so an
    # experiment's many cells give no arrival profile (and a closed loop's sends are its server's pace anyway).
    timed = len(files) == 1
    n = 0
    for file in files:
        for _, line in _lines(file):
            n += 1
            if isinstance(line, BadLine):
                yield BadLine(n, line.why)
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise TypeError("not an object")
                if row.get("warmup") or row.get("error"):
                    continue
                temperature, sent, end = _temperature(row.get("temperature")), _number(row["sent_s"]), \
                    _number(row.get("end_s"))
                chunks = row.get("chunk_s") or []
                first = _number(chunks[0]) if isinstance(chunks, list) and chunks else None
                if temperature is None or sent is None:
                    raise ValueError("temperature or sent_s")
                yield Observed(line=n, temperature=temperature, temperature_set=True,
                               output_tokens=_count(row.get("output_tokens")),
                               arrival_s=_number(row.get("scheduled_s")) if timed else None,
                               ttft_ms=(first - sent) * 1000 if first is not None else None,
                               e2e_ms=(end - sent) * 1000 if end is not None else None)
            except (ValueError, TypeError, KeyError, RecursionError) as exc:
                yield BadLine(n, f"not a specwise request record ({type(exc).__name__})")


REQUEST_KEYS = ("request", "body", "request_body", "input")
RESPONSE_KEYS = ("response", "response_body", "output")
TIME_KEYS = ("timestamp", "time", "start_time", "startTime", "created_at", "request_time", "arrival_time")
TTFT_KEYS = {"ttft_ms": 1.0, "time_to_first_token_ms": 1.0, "ttft_s": 1000.0, "time_to_first_token": 1000.0}
E2E_KEYS = {"latency_ms": 1.0, "e2e_ms": 1.0, "duration_ms": 1.0, "latency_s": 1000.0, "latency": 1000.0,
            "duration": 1000.0}


def _parse(row: Any, n: int) -> Observed | BadLine:
    if not isinstance(row, dict):
        return BadLine(n, f"a JSON {type(row).__name__}, not an object")
    if isinstance(row.get("conversations"), list):
        return _sharegpt(row, n)
    request = next((row[k] for k in REQUEST_KEYS if isinstance(row.get(k), dict)), row)
    response = next((row[k] for k in RESPONSE_KEYS if isinstance(row.get(k), dict)), None)
    if isinstance(response, dict) and isinstance(response.get("body"), dict):   # OpenAI batch output
        response = response["body"]
    prompt = _prompt(request)
    if prompt is None:
        return BadLine(n, "no prompt or messages" + (" (a response alone: join it with its request, e.g. a batch "
                                                      "output with its input by custom_id)" if response else ""))
    raw = request.get("temperature")
    temperature = _temperature(raw)
    if raw is not None and temperature is None:
        # The value itself is not shown: it is the log's content.
        return BadLine(n, f"temperature is a {type(raw).__name__}, not a number in [0, 100]")
    output, usage = _response(response)
    timing = row
    start = _time(next((timing[k] for k in TIME_KEYS if k in timing), None))
    end = _time(timing.get("end_time") or timing.get("endTime"))
    e2e = _ms(timing, E2E_KEYS)
    if e2e is None and start is not None and end is not None and end >= start:
        e2e = (end - start) * 1000
    return Observed(
        line=n, temperature=temperature if temperature is not None else DEFAULT_TEMPERATURE,
        temperature_set=temperature is not None, prompt=prompt, output=output,
        prompt_tokens=_count(usage.get("prompt_tokens")), output_tokens=_count(usage.get("completion_tokens")),
        arrival_s=start, ttft_ms=_ms(timing, TTFT_KEYS), e2e_ms=e2e, structured_request=_structured(request))


def _sharegpt(row: dict, n: int) -> Observed | BadLine:
    turns = [t for t in row["conversations"] if isinstance(t, dict) and isinstance(t.get("value"), str)]
    human = next((i for i, t in enumerate(turns) if t.get("from") in ("human", "user")), None)
    if human is None:
        return BadLine(n, "a conversation without a human turn")
    reply = next((t["value"] for t in turns[human + 1:] if t.get("from") in ("gpt", "assistant", "chatgpt", "bard")),
                 None)
    temperature = _temperature(row.get("temperature"))
    ok = temperature is not None
    return Observed(line=n, temperature=temperature if ok else DEFAULT_TEMPERATURE, temperature_set=ok,
                    prompt=turns[human]["value"], output=reply)


def _text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):   # content parts: [{"type": "text", "text": ...}, ...]
        parts = [p.get("text") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return "\n".join(parts) if parts else None
    return None


def _prompt(request: dict) -> str | None:
    if isinstance(request.get("messages"), list):
        texts = [t for m in request["messages"] if isinstance(m, dict) and (t := _text(m.get("content")))]
        return "\n".join(texts) if texts else None
    prompt = request.get("prompt")
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return prompt[0]    # a batch of prompts: the first stands for the request
    return prompt if isinstance(prompt, str) else None


def _response(response: dict | None) -> tuple[str | None, dict]:
    if not isinstance(response, dict):
        return None, {}
    usage = response.get("usage") if isinstance(response.get("usage"), dict) else {}
    choices = response.get("choices")
    output = None
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        choice = choices[0]
        output = _text(choice.get("text")) or (_text(choice["message"].get("content"))
                                                if isinstance(choice.get("message"), dict) else None)
    return output, usage


def _structured(request: dict) -> bool:
    fmt = request.get("response_format")
    if isinstance(fmt, dict) and str(fmt.get("type", "")).startswith("json"):
        return True
    return any(request.get(k) for k in ("tools", "functions", "guided_json", "guided_regex", "guided_grammar",
                                        "structured_outputs"))


MAX_COUNT = 10**12    # tokens in one request: past it, a corrupt field, not a count
MAX_NUMBER = 1e18     # JSON integers can have thousands of digits; float() of those overflows


def _number(value: Any) -> float | None:
    """A finite JSON number as a float; None for anything else (strings, booleans, NaN, 400-digit integers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int) and abs(value) > MAX_NUMBER:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _temperature(value: Any) -> float | None:
    t = _number(value)
    return t if t is not None and 0 <= t <= 100 else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT else None


def _ms(row: dict, keys: dict[str, float]) -> float | None:
    for key, scale in keys.items():
        value = _number(row.get(key))
        if value is not None and value >= 0:
            return value * scale
    return None


def _time(value: Any) -> float | None:
    """Epoch seconds from seconds, milliseconds or nanoseconds (told apart by size) or an ISO 8601 string."""
    number = _number(value)
    if number is not None and number > 0:
        for scale in (1.0, 1e3, 1e6, 1e9):
            if number / scale < 1e10:     # year 2286 in seconds: anything larger is a finer unit
                return number / scale
        return None
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None
