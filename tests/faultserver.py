"""A small in-process OpenAI-style streaming server for fault injection and timing tests.

The prompt picks the behaviour: a prompt containing `FAULT:<name>` triggers that fault,
anything else streams `tokens` tokens in chunks of `chunk` tokens (with logprobs, usage
and [DONE], as vLLM does). HTTP/1.1 with chunked transfer encoding, one request per
connection, written by hand so that each fault is exactly the bytes a broken server sends.
Beside the transport faults (`FAULTS`), replies that are valid but untrustworthy: events
of the wrong shape, implausible usage or spec metrics, no logprobs, `usage_inflated`,
`spec_bad`/`spec`, a server that ignores max_tokens (`over_max`), never ends (`endless`)
or never ends a line (`long_line`). What the server says about itself (`models`,
`version`, `metrics`, `metrics_delay_s`) is set per server; `pause` refuses connections
for a while.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from dataclasses import dataclass, field

FAULTS = ("reset", "http429", "http503", "malformed", "nonjson", "empty", "stall")
# Valid JSON of the wrong shape, sent as the first event (the stream then goes on as usual).
BAD_EVENTS: dict[str, object] = {
    "choices_str": {"choices": "abc"},
    "choice_int": {"choices": [1]},
    "logprobs_list": {"choices": [{"text": "a", "delta": {"content": "a"}, "logprobs": [1]}]},
    "tokens_not_list": {"choices": [{"text": "a", "delta": {"content": "a"},
                                     "logprobs": {"tokens": "a", "content": "a"}}]},
    "delta_str": {"choices": [{"text": 5, "delta": "a"}]},
    "error_list": {"error": ["boom", 1]},
}
# The last event's usage (and per-request metrics) replaced by a value no record may believe.
BAD_USAGE: dict[str, object] = {"usage_list": [1, 2], "usage_many": {"completion_tokens": "many"},
                                "usage_negative": {"completion_tokens": -3}}
# Tokens as text only: a server (or proxy) that drops logprobs, with a sane, missing or 8× inflated usage.
NO_LOGPROBS = ("no_logprobs", "no_logprobs_no_usage", "no_logprobs_inflated")


@dataclass
class FaultServer:
    tokens: int = 8
    chunk: int = 2
    gap_s: float = 0.005
    stall_s: float = 30.0
    host: str = "127.0.0.1"
    port: int = 0
    models: list[object] = field(default_factory=lambda: [{"id": "fault-model"}])
    version: object = None                  # /version's "version"; None: no /version endpoint
    metrics: str | None = None              # the /metrics page; None: a drafts counter of the requests served
    metrics_delay_s: float = 0.0
    backlog: int = 100                      # the listening socket's: raise it for a thousand connections at once
    requests: list[dict] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)

    def __enter__(self) -> FaultServer:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._listen()
        return self

    def _listen(self) -> None:
        async def start() -> None:
            self._server = await asyncio.start_server(self._handle, self.host, self.port, backlog=self.backlog)
            self.port = self._server.sockets[0].getsockname()[1]

        asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)

    def pause(self, seconds: float) -> None:
        """Stop listening for `seconds` (new connections are refused, those waiting in the backlog reset), then
        listen again on the same port; the connections already open go on. Accepting stops first and the socket
        closes a loop step later: a connection asyncio had accepted but not yet handed to its handler would
        otherwise be closed unread by `Server.close` — asyncio's race, not the restart this stands for."""
        def stop() -> None:
            for sock in self._server.sockets:
                self._loop.remove_reader(sock.fileno())
            self._loop.call_soon(self._server.close)

        self._loop.call_soon_threadsafe(stop)
        time.sleep(seconds)
        self._listen()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        """Close the listening socket and every connection: the server 'dies'."""
        def close() -> None:
            self._server.close()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
        self._loop.call_soon_threadsafe(close)
        time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", 0)))
            self.auth.append(headers.get("authorization"))
            if path == "/v1/models":
                await self._plain(writer, 200, json.dumps({"data": self.models}), "application/json")
            elif path == "/version" and self.version is not None:
                await self._plain(writer, 200, json.dumps({"version": self.version}), "application/json")
            elif path == "/metrics":
                await asyncio.sleep(self.metrics_delay_s)
                n = len(self.requests)
                await self._plain(writer, 200, self.metrics if self.metrics is not None else
                                  "# TYPE vllm:spec_decode_num_drafts counter\n"
                                  f"vllm:spec_decode_num_drafts_total {n}\n", "text/plain")
            elif method == "POST":
                request = json.loads(body)
                self.requests.append(request)
                await self._completion(writer, request)
            else:
                await self._plain(writer, 404, "{}", "application/json")
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _plain(self, writer: asyncio.StreamWriter, status: int, text: str, ctype: str,
                     extra: str = "") -> None:
        data = text.encode()
        writer.write(f"HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {len(data)}\r\n"
                     f"{extra}connection: close\r\n\r\n".encode() + data)
        await writer.drain()

    async def _completion(self, writer: asyncio.StreamWriter, request: dict) -> None:
        text = request.get("prompt") or request["messages"][-1]["content"]
        named = re.search(r"FAULT:(\w+)", text)
        fault = named.group(1) if named else None
        if fault == "http429":
            return await self._plain(writer, 429, '{"error": "rate limited"}', "application/json",
                                     "retry-after: 3\r\n")
        if fault == "http503":
            return await self._plain(writer, 503, '{"error": "overloaded"}', "application/json")
        if fault == "nonjson":
            return await self._plain(writer, 200, "<html>upstream error</html>", "application/json")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
                     b"connection: close\r\n\r\n")

        async def send(data: bytes) -> None:
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()

        async def event(payload: str) -> None:
            await send(f"data: {payload}\n\n".encode())

        chat = "messages" in request
        if fault == "long_line":  # one line that never ends
            await send(b"data: ")
            while True:
                await send(b"x" * 65536)
        if fault in BAD_EVENTS:
            await event(json.dumps(BAD_EVENTS[fault]))
        if fault == "empty":
            await event(json.dumps({"choices": []}))
            await event("[DONE]")
        else:
            sent = 0
            while sent < self.tokens or fault == "over_max":  # over_max: a server that ignores max_tokens
                n = min(self.chunk, self.tokens - sent) if fault != "over_max" else self.chunk
                toks = [f"t{sent + i}" for i in range(n)]
                logprobs = None if fault in NO_LOGPROBS else (
                    {"content": [{"token": t} for t in toks]} if chat else {"tokens": toks})
                choice = ({"delta": {"content": "".join(toks)}, "logprobs": logprobs} if chat
                          else {"text": "".join(toks), "logprobs": logprobs})
                await asyncio.sleep(self.gap_s)
                await event(json.dumps({"choices": [choice], "usage": None}))
                sent += n
                if fault == "reset" and sent >= self.chunk:
                    writer.transport.abort()
                    return
                if fault == "malformed":
                    await event("{not json")
                if fault == "stall":
                    await asyncio.sleep(self.stall_s)
            while fault == "endless":  # alive and streaming, but never done
                await asyncio.sleep(self.gap_s)
                await event(json.dumps({"choices": [], "usage": None}))
            await event(json.dumps(self._last_event(fault)))
            await event("[DONE]")
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    def _last_event(self, fault: str | None) -> dict:
        """The usage event that ends a stream, as `fault` bends it."""
        last: dict = {"choices": [], "usage": {"completion_tokens": self.tokens}}
        if fault in ("usage_inflated", "no_logprobs_inflated"):
            last["usage"] = {"completion_tokens": 8 * self.tokens}
        elif fault in BAD_USAGE:
            last["usage"] = BAD_USAGE[fault]
        elif fault == "no_logprobs_no_usage":
            del last["usage"]
        elif fault == "spec_bad":
            last["metrics"] = {"speculative_decoding": {"num_draft_tokens": "six", "draft_acceptance_rate": 2.0}}
        elif fault == "spec":
            last["metrics"] = {"speculative_decoding": {"num_draft_tokens": 6, "num_accepted_draft_tokens": 3,
                                                        "draft_acceptance_rate": 0.5}}
        return last
