"""Request logs built with known contents — temperature mix, echo, code, lengths, send times — for
`specwise analyze`'s tests: what the profile must recover is what was put in."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = ["river", "stone", "market", "lantern", "engine", "harbor", "winter", "signal", "garden", "copper", "valley", "thunder", "orchard", "mirror", "canvas", "meadow", "silver", "bridge", "candle", "forest", "anchor", "velvet", "summit", "beacon"]


def sentence(rng: random.Random, n: int = 14) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)) + "."


def summarization(rng: random.Random) -> tuple[str, str]:
    """An article and a summary made of its own sentences: output that echoes the prompt."""
    sentences = [sentence(rng) for _ in range(8)]
    return "Summarize the article.\n\n" + " ".join(sentences), " ".join(rng.sample(sentences, 3))


def code(rng: random.Random) -> tuple[str, str]:
    name = rng.choice(WORDS)
    body = "\n".join(f"    total += item.{rng.choice(WORDS)} * {rng.randint(2, 9)};" for _ in range(5))
    return (f"Write a function {name}_total that sums the weights of a list.",
            f"```python\ndef {name}_total(items):\n    total = 0\n    for item in items:\n{body}\n    return total\n```")


def chat(rng: random.Random) -> tuple[str, str]:
    return (f"Tell me a story about a {rng.choice(WORDS)}.",
            " ".join(sentence(rng, rng.randint(8, 20)) for _ in range(4)))


KINDS = {"summarization": summarization, "code": code, "chat": chat}


def write_log(path: Path, classes: list[tuple[str, float, int]], *, seed: int = 0, rate: float | None = None,
              burstiness: float = 1.0, outputs: tuple[int, int] = (8, 40), shape: str = "gateway",
              ttft_share: float | None = None) -> list[dict]:
    """`classes`: (kind, temperature, count). Lines are shuffled; send times follow gamma gaps of mean 1/rate.
    `shape`: "gateway" (request, response, timestamp), "body" (request bodies alone) or "batch" (OpenAI's batch
    output). Returns the rows written."""
    rng = random.Random(seed)
    rows = []
    for kind, temperature, count in classes:
        for _ in range(count):
            prompt, output = KINDS[kind](rng)
            rows.append({"kind": kind, "temperature": temperature, "prompt": prompt, "output": output,
                         "output_tokens": rng.randint(*outputs)})
    rng.shuffle(rows)
    t = 1_760_000_000.0
    lines = []
    for i, row in enumerate(rows):
        request = {"model": "m", "messages": [{"role": "user", "content": row["prompt"]}],
                   "temperature": row["temperature"], "max_tokens": 256}
        response = {"choices": [{"message": {"role": "assistant", "content": row["output"]}}],
                    "usage": {"prompt_tokens": len(row["prompt"]) // 4, "completion_tokens": row["output_tokens"]}}
        if shape == "body":
            line = request
        elif shape == "batch":
            line = {"id": f"b{i}", "custom_id": f"r{i}", "response": {"status_code": 200, "body": response},
                    "body": request}
        else:
            line = {"request": request, "response": response}
            if rate:
                line["timestamp"] = t
                t += rng.gammavariate(burstiness, 1 / (rate * burstiness))
            if ttft_share is not None:
                line["latency_ms"] = 1000.0
                line["ttft_ms"] = 1000.0 * ttft_share
        lines.append(json.dumps(line))
    path.write_text("\n".join(lines) + "\n")
    return rows
