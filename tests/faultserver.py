"""A small in-process OpenAI-style streaming server for fault injection and timing tests.

The prompt picks the behaviour: a prompt containing `FAULT:<name>` triggers that fault,
anything else streams `tokens` tokens in chunks of `chunk` tokens (with logprobs, usage
and [DONE], as vLLM does). HTTP/1.1 with chunked transfer encoding, one request per
connection, written by hand so that each fault is exactly the bytes a broken server sends.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field

FAULTS = ("reset", "http429", "http503", "malformed", "nonjson", "empty", "stall")


@dataclass
class FaultServer:
    tokens: int = 8
    chunk: int = 2
    gap_s: float = 0.005
    stall_s: float = 30.0
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[dict] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)

    def __enter__(self) -> FaultServer:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def start() -> None:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()

        self._thread = threading.Thread(target=lambda: (self._loop.run_until_complete(start()),
                                                        self._loop.run_forever()), daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

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
                await self._plain(writer, 200, json.dumps({"data": [{"id": "fault-model"}]}), "application/json")
            elif path == "/metrics":
                n = len(self.requests)
                await self._plain(writer, 200, "# TYPE vllm:spec_decode_num_drafts counter\n"
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
        fault = next((f for f in FAULTS if f"FAULT:{f}" in text), None)
        if fault == "http429":
            return await self._plain(writer, 429, '{"error": "rate limited"}', "application/json",
                                     "retry-after: 3\r\n")
        if fault == "http503":
            return await self._plain(writer, 503, '{"error": "overloaded"}', "application/json")
        if fault == "nonjson":
            return await self._plain(writer, 200, "<html>upstream error</html>", "application/json")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
                     b"connection: close\r\n\r\n")

        async def event(payload: str) -> None:
            data = f"data: {payload}\n\n".encode()
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()

        chat = "messages" in request
        if fault == "empty":
            await event(json.dumps({"choices": []}))
            await event("[DONE]")
        else:
            sent = 0
            while sent < self.tokens:
                n = min(self.chunk, self.tokens - sent)
                toks = [f"t{sent + i}" for i in range(n)]
                choice = ({"delta": {"content": "".join(toks)}, "logprobs": {"content": [{"token": t} for t in toks]}}
                          if chat else {"text": "".join(toks), "logprobs": {"tokens": toks}})
                await asyncio.sleep(self.gap_s)
                await event(json.dumps({"choices": [choice]}))
                sent += n
                if fault == "reset" and sent >= self.chunk:
                    writer.transport.abort()
                    return
                if fault == "malformed":
                    await event("{not json")
                if fault == "stall":
                    await asyncio.sleep(self.stall_s)
            await event(json.dumps({"choices": [], "usage": {"completion_tokens": self.tokens}}))
            await event("[DONE]")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
