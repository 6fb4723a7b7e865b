"""The embedded pair's text domain, and the built-in prompt sets drawn from it.

The domain is Python source: predictable enough for a small draft to agree with
its target often, like code or JSON in production. Training uses the
interpreter's standard library, with every HOLDOUT-th file held out; the prompt
sets come only from held-out files, so no prompt was seen in training.

`python -m specwise.engine.corpus` regenerates ``specwise/data/prompts/``.
"""

from __future__ import annotations

import ast
import json
import random
import sysconfig
from pathlib import Path

from specwise.workload.datasets import PROMPTS_DIR

HOLDOUT = 10
MAX_FILE_BYTES = 200_000
PROMPTS_SEED = 4321
PROMPTS_PER_SET = 40


def stdlib_files() -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in stdlib.glob("*.py") if p.stat().st_size < MAX_FILE_BYTES)


def split_files() -> tuple[list[Path], list[Path]]:
    """(training files, held-out files)."""
    files = stdlib_files()
    held = [p for i, p in enumerate(files) if i % HOLDOUT == HOLDOUT - 1]
    train = [p for i, p in enumerate(files) if i % HOLDOUT != HOLDOUT - 1]
    return train, held


def chunk_code(text: str, min_chars: int = 400) -> list[str]:
    """Function- or class-sized documents."""
    docs: list[str] = []
    chunk: list[str] = []
    for line in text.splitlines(keepends=True):
        if line.startswith(("def ", "class ", "    def ")) and sum(map(len, chunk)) > min_chars:
            docs.append("".join(chunk))
            chunk = []
        chunk.append(line)
    if chunk:
        docs.append("".join(chunk))
    return docs


ECHO_HEADER = "# Original:\n"
ECHO_MARK = "# Repeated:\n"


def echo_doc(snippet: str) -> str:
    """A snippet followed by its verbatim repeat: output that copies its input, where n-gram lookup pays."""
    return f"{ECHO_HEADER}{snippet}{ECHO_MARK}{snippet}"


def training_documents(rng: random.Random) -> list[str]:
    train, _ = split_files()
    docs = [doc for path in train for doc in chunk_code(path.read_text(errors="replace"))]
    echoes = [echo_doc("".join(doc.splitlines(keepends=True)[:6])) for doc in rng.sample(docs, len(docs) // 5)]
    docs += echoes
    rng.shuffle(docs)
    return docs


def structured_prompts(files: list[Path], rng: random.Random) -> list[str]:
    """Code prefixes: the low-entropy, in-domain set."""
    out = []
    for path in files:
        for doc in chunk_code(path.read_text(errors="replace")):
            lines = doc.splitlines(keepends=True)
            if len(lines) < 12:
                continue
            prefix = "".join(lines[: rng.randint(5, 9)])
            if 120 <= len(prefix) <= 500 and prefix.strip():
                out.append(prefix)
    return out


def open_prompts(files: list[Path]) -> list[str]:
    """English paragraphs from docstrings: open-ended text, outside the code the pair mostly saw."""
    out = []
    for path in files:
        try:
            tree = ast.parse(path.read_text(errors="replace"))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
                continue
            for para in (ast.get_docstring(node) or "").split("\n\n"):
                words = para.split()
                if len(words) >= 20 and sum(w.isalpha() for w in words) / len(words) > 0.7:
                    out.append(" ".join(words[:40]))
    return out


def echo_prompts(files: list[Path]) -> list[str]:
    """A snippet, then the marker after which the model repeats it (summarization-like)."""
    out = []
    for path in files:
        for doc in chunk_code(path.read_text(errors="replace")):
            lines = doc.splitlines(keepends=True)
            snippet = "".join(lines[:6])
            if len(lines) >= 8 and 150 <= len(snippet) <= 400:
                out.append(f"{ECHO_HEADER}{snippet}{ECHO_MARK}")
    return out


def prompt_sets() -> dict[str, list[str]]:
    rng = random.Random(PROMPTS_SEED)
    _, held = split_files()
    sets = {"structured": structured_prompts(held, rng), "open": open_prompts(held), "echo": echo_prompts(held)}
    chosen = {}
    for name, items in sets.items():
        unique = sorted(set(items))
        rng.shuffle(unique)
        chosen[name] = unique[:PROMPTS_PER_SET]
    return chosen


def write_prompt_sets(directory: Path = PROMPTS_DIR) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, prompts in prompt_sets().items():
        lines = [json.dumps({"id": f"{name}-{i:02d}", "set": name, "prompt": p}) for i, p in enumerate(prompts)]
        (directory / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
        print(f"{name}: {len(prompts)} prompts -> {directory / (name + '.jsonl')}")


if __name__ == "__main__":
    write_prompt_sets()
