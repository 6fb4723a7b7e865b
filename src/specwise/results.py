"""A run's results on disk: one directory, written as the run goes, readable however it ended.

    RUN_DIR/manifest.json     config, versions, hardware, seed; `complete` turns true at the very end
    RUN_DIR/requests.jsonl    one RequestRecord per line, appended and flushed as each request ends
    RUN_DIR/metrics.jsonl     one MetricSample per scrape of the server's /metrics
    RUN_DIR/summary.json      written at the end; `specwise bench --summarize RUN_DIR` recomputes it

A crash, a killed server or Ctrl-C leaves every finished request on disk and the
manifest marked incomplete; a torn last line (the process died mid-write) is skipped.
Every file carries `schema_version`.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, Field

from specwise.errors import SpecwiseError

SCHEMA_VERSION = 1
MANIFEST, REQUESTS, METRICS, SUMMARY = "manifest.json", "requests.jsonl", "metrics.jsonl", "summary.json"

AcceptanceSource = Literal["server", "chunks", "none"]


class Manifest(BaseModel):
    schema_version: int = SCHEMA_VERSION
    kind: str = "specwise.bench"
    specwise_version: str
    started_at: str
    finished_at: str | None = None
    complete: bool = False
    stop_reason: str | None = None
    url: str
    api: str
    model: str
    server_version: str | None = None
    seed: int
    config: dict[str, Any]
    hardware: dict[str, Any]


class RequestRecord(BaseModel):
    """One request. Times are seconds on the run's monotonic clock (0 = the run's start)."""

    schema_version: int = SCHEMA_VERSION
    index: int
    warmup: bool = False
    prompt_id: str
    temperature: float
    scheduled_s: float
    sent_s: float
    end_s: float
    chunk_s: list[float] = Field(default_factory=list, description="arrival of each content chunk")
    chunk_tokens: list[int] = Field(default_factory=list, description="tokens carried by each content chunk")
    output_tokens: int | None = Field(None, description="from the server's usage; else the sum of chunk_tokens")
    error: str | None = None
    error_detail: str | None = None
    http_status: int | None = None
    retry_after_s: float | None = None
    spec: dict[str, Any] | None = Field(None, description="the server's per-request speculative-decoding metrics")
    acceptance: float | None = None
    acceptance_source: AcceptanceSource = "none"
    merged_chunks: int = Field(0, description="chunks carrying more tokens than one speculative step can emit")

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def tokens(self) -> int:
        return self.output_tokens if self.output_tokens is not None else sum(self.chunk_tokens)

    @property
    def ttft_s(self) -> float | None:
        return self.chunk_s[0] - self.sent_s if self.ok and self.chunk_s else None

    @property
    def e2e_s(self) -> float | None:
        return self.end_s - self.sent_s if self.ok else None

    @property
    def tpot_s(self) -> float | None:
        """(last chunk − first chunk) / (output tokens − 1): a multi-token chunk counts for all its tokens."""
        if not self.ok or len(self.chunk_s) < 2 or self.tokens < 2:
            return None
        return (self.chunk_s[-1] - self.chunk_s[0]) / (self.tokens - 1)

    @property
    def itl_s(self) -> list[float]:
        """Gaps between consecutive chunks, each spread over the tokens its chunk carried."""
        if not self.ok:
            return []
        return [(b - a) / n for a, b, n in zip(self.chunk_s, self.chunk_s[1:], self.chunk_tokens[1:]) for _ in range(n)]

    @property
    def send_lag_s(self) -> float:
        return self.sent_s - self.scheduled_s


class MetricSample(BaseModel):
    schema_version: int = SCHEMA_VERSION
    t_s: float
    phase: Literal["before", "during", "after"]
    values: dict[str, float] = Field(default_factory=dict)
    error: str | None = None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunWriter:
    """Appends records as they come; every line is flushed to the OS before the next request is counted."""

    def __init__(self, directory: Path, manifest: Manifest) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.manifest = manifest
        self._write_manifest()
        self._requests: IO[str] = (directory / REQUESTS).open("a", encoding="utf-8")
        self._metrics: IO[str] = (directory / METRICS).open("a", encoding="utf-8")

    def _write_manifest(self) -> None:
        write_json_atomic(self.directory / MANIFEST, self.manifest.model_dump())

    def request(self, record: RequestRecord) -> None:
        _append(self._requests, record)

    def metric(self, sample: MetricSample) -> None:
        _append(self._metrics, sample)

    def close(self, complete: bool, stop_reason: str | None) -> None:
        self._requests.close()
        self._metrics.close()
        self.manifest = self.manifest.model_copy(update={"complete": complete, "stop_reason": stop_reason,
                                                         "finished_at": now_iso()})
        self._write_manifest()


def _append(handle: IO[str], model: BaseModel) -> None:
    handle.write(model.model_dump_json() + "\n")
    handle.flush()


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_lines(path: Path, model: type[BaseModel]) -> list[Any]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(model.model_validate_json(line))
        except ValueError:
            continue  # a line torn by a crash mid-write
    return records


class Run(BaseModel):
    directory: Path
    manifest: Manifest
    requests: list[RequestRecord]
    samples: list[MetricSample]


def load_run(directory: Path) -> Run:
    manifest_path = directory / MANIFEST
    if not manifest_path.exists():
        raise SpecwiseError("RUN_DIR", f"{directory} holds no {MANIFEST}", "give a directory written by specwise bench")
    return Run(directory=directory, manifest=Manifest.model_validate_json(manifest_path.read_text()),
               requests=_read_lines(directory / REQUESTS, RequestRecord),
               samples=_read_lines(directory / METRICS, MetricSample))
