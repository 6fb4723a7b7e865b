"""A ground-truth serving engine for verdict tests: a batched, GPU-like cost model behind vLLM's streaming
completions API and its speculative-decoding metrics, run in its own process. Its right verdict follows
from the model, not from specwise.

Continuous batching: every step serves all running sequences at once. A step of the baseline costs
`step_ms + token_ms × batch`; a speculative step drafts k tokens per sequence (k draft passes of
`draft_step_ms + draft_token_ms × batch`) and verifies k + 1 per sequence in one target pass
(`step_ms + token_ms × batch × (k + 1)`), emitting 1 + the accepted prefix of the k drafted tokens (each
accepted with the probability the sequence's temperature gives). So the expected speedup at batch B is
E(α, k) × baseline(B) / speculative(B), with E(α, k) = (1 − α^(k+1)) / (1 − α): `CostModel.speedup`.
At T = 0 every engine emits the same tokens for a prompt, unless it is told to change them.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import zlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CostModel:
    step_ms: float = 2.0
    token_ms: float = 0.1
    k: int = 0                                  # drafted tokens per step; 0: the baseline
    draft_step_ms: float = 0.0                  # 0: a proposer that costs nothing (n-gram-like)
    draft_token_ms: float = 0.0
    acceptance: dict[float, float] = field(default_factory=lambda: {0.0: 0.8})   # by temperature
    change_outputs: bool = False                # emit other tokens than the baseline would (a broken candidate)
    # vLLM's num_speculative_tokens_per_batch_size: ((first, last, k), …), k clamped to `k`; () : k always
    k_schedule: tuple[tuple[int, int, int], ...] = ()

    def k_at(self, batch: int) -> int:
        return next((min(k, self.k) for lo, hi, k in self.k_schedule if lo <= batch <= hi),
                    min(self.k_schedule[-1][2], self.k) if self.k_schedule else self.k)

    def step_s(self, batch: int) -> float:
        k = self.k_at(batch)
        verify = self.step_ms + self.token_ms * batch * (k + 1)
        return (k * (self.draft_step_ms + self.draft_token_ms * batch) + verify) / 1e3

    def tokens_per_step(self, temperature: float, batch: int = 1) -> float:
        a, k = self.acceptance.get(temperature, 0.0), self.k_at(batch)
        return (1 - a ** (k + 1)) / (1 - a) if k else 1.0

    def speedup(self, baseline: CostModel, batch: int, temperature: float = 0.0) -> float:
        """The expected TPOT speedup of this engine over `baseline` at a steady batch."""
        return self.tokens_per_step(temperature, batch) * baseline.step_s(batch) / self.step_s(batch)


@dataclass
class _Seq:
    prompt: str
    temperature: float
    remaining: int
    queue: asyncio.Queue
    emitted: int = 0
    drafted: int = 0
    accepted: int = 0


class _Engine:
    def __init__(self, model: CostModel, seed: int) -> None:
        self.model, self.rng = model, random.Random(seed)
        self.running: list[_Seq] = []
        self.wake = asyncio.Event()
        self.counters = {"drafts": 0, "draft_tokens": 0, "accepted": 0}
        self.per_pos = [0] * model.k
        self.batch_max = 0

    def token(self, seq: _Seq, i: int) -> str:
        if seq.temperature > 0:
            return f"r{self.rng.randrange(1000)}"
        salt = "changed" if self.model.change_outputs else ""
        return f"t{zlib.crc32((seq.prompt + salt + str(i)).encode()) % 1000}"

    async def run(self) -> None:
        # Steps keep an absolute schedule: the loop's timers wake up to a millisecond late, and a late wake-up
        # must not lengthen the next step, so each step ends its own length after the previous one's end.
        loop = asyncio.get_running_loop()
        end = loop.time()
        while True:
            if not self.running:
                self.wake.clear()
                await self.wake.wait()
                end = loop.time()
            batch = list(self.running)
            self.batch_max = max(self.batch_max, len(batch))
            end = max(end, loop.time() - self.model.step_s(len(batch))) + self.model.step_s(len(batch))
            await asyncio.sleep(max(0.0, end - loop.time()))
            k = self.model.k_at(len(batch))
            for seq in batch:
                accepted = 0
                if k and seq.emitted:  # the first token comes from the prefill
                    alpha = self.model.acceptance.get(seq.temperature, 0.0)
                    while accepted < k and self.rng.random() < alpha:
                        self.per_pos[accepted] += 1
                        accepted += 1
                    seq.drafted += k
                    seq.accepted += accepted
                    self.counters["drafts"] += 1
                    self.counters["draft_tokens"] += k
                    self.counters["accepted"] += accepted
                n = min(1 + accepted, seq.remaining)
                seq.queue.put_nowait([self.token(seq, seq.emitted + i) for i in range(n)])
                seq.emitted += n
                seq.remaining -= n
                if not seq.remaining:
                    self.running.remove(seq)
                    seq.queue.put_nowait(None)

    def metrics(self) -> str:
        c, lines = self.counters, []
        for name, value in (("drafts", c["drafts"]), ("draft_tokens", c["draft_tokens"]), ("accepted_tokens", c["accepted"])):
            lines += [f"# TYPE vllm:spec_decode_num_{name} counter", f"vllm:spec_decode_num_{name}_total {value}"]
        lines.append("# TYPE vllm:spec_decode_num_accepted_tokens_per_pos counter")
        lines += [f'vllm:spec_decode_num_accepted_tokens_per_pos_total{{position="{i}"}} {n}'
                  for i, n in enumerate(self.per_pos)]
        lines += ["# TYPE vllm:num_requests_running gauge", f"vllm:num_requests_running {len(self.running)}",
                  "# TYPE vllm:kv_cache_usage_perc gauge", f"vllm:kv_cache_usage_perc {len(self.running) / 512}"]
        return "\n".join(lines) + "\n"


async def _serve(model: CostModel, seed: int, port_out: multiprocessing.connection.Connection) -> None:
    engine = _Engine(model, seed)
    asyncio.get_running_loop().create_task(engine.run())

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
            method, path, _ = head[0].split(" ", 2)
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", 0)))
            if method == "POST" and path == "/v1/completions":
                await complete(json.loads(body), writer)
                return
            text, ctype = {"/v1/models": (json.dumps({"data": [{"id": "ground-truth"}]}), "application/json"),
                           "/version": (json.dumps({"version": "ground-truth"}), "application/json"),
                           "/metrics": (engine.metrics(), "text/plain")}.get(path, ("{}", "application/json"))
            data = text.encode()
            writer.write(f"HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ncontent-length: {len(data)}\r\n"
                         "connection: close\r\n\r\n".encode() + data)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def complete(request: dict, writer: asyncio.StreamWriter) -> None:
        seq = _Seq(request["prompt"], float(request.get("temperature", 0.0)), int(request["max_tokens"]),
                   asyncio.Queue())
        engine.running.append(seq)
        engine.wake.set()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")

        async def event(payload: str) -> None:
            writer.write(f"data: {payload}\n\n".encode())
            await writer.drain()

        while (tokens := await seq.queue.get()) is not None:
            await event(json.dumps({"choices": [{"text": "".join(tokens), "logprobs": {"tokens": tokens}}]}))
        spec = ({"speculative_decoding": {"num_draft_tokens": seq.drafted, "num_accepted_draft_tokens": seq.accepted,
                                          "draft_acceptance_rate": seq.accepted / seq.drafted}}
                if model.k and seq.drafted else {})
        await event(json.dumps({"choices": [], "usage": {"completion_tokens": seq.emitted}, "metrics": spec}))
        await event("[DONE]")

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port_out.send(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


def _main(model: CostModel, seed: int, port_out: multiprocessing.connection.Connection) -> None:
    asyncio.run(_serve(model, seed, port_out))


class GroundTruthServer:
    """`with GroundTruthServer(CostModel(...)) as url:` — the engine in its own process, so that its clock
    does not share an interpreter with the client that measures it."""

    def __init__(self, model: CostModel, seed: int = 0) -> None:
        self.model, self.seed = model, seed

    def __enter__(self) -> str:
        ctx = multiprocessing.get_context("spawn")
        receive, send = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=_main, args=(self.model, self.seed, send), daemon=True)
        self.process.start()
        if not receive.poll(60):
            raise RuntimeError("the ground-truth server did not start")
        return f"http://127.0.0.1:{receive.recv()}"

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.join(10)
