"""Writing a bench run as it goes and reading it back, whole or torn (see `results.schema` for the layout)."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel

from specwise.errors import SpecwiseError, read_model
from specwise.results.schema import MANIFEST, METRICS, REQUESTS, Manifest, MetricSample, RequestRecord, Run

RUN_FIX = "give a directory written by specwise bench"


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
    try:
        # Bytes a crash or a disk error garbled decode to U+FFFD: their line fails validation and is skipped.
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise SpecwiseError("RUN_DIR", f"cannot read {path}: {exc.strerror or exc}", RUN_FIX) from None
    records = []
    for line in text.splitlines():
        try:
            records.append(model.model_validate_json(line))
        except ValueError:
            continue  # a line torn by a crash mid-write
    return records


def load_run(directory: Path) -> Run:
    manifest_path = directory / MANIFEST
    if not manifest_path.exists():
        raise SpecwiseError("RUN_DIR", f"{directory} holds no {MANIFEST}", RUN_FIX)
    return Run(directory=directory, manifest=read_model(manifest_path, Manifest, "RUN_DIR", RUN_FIX),
               requests=_read_lines(directory / REQUESTS, RequestRecord),
               samples=_read_lines(directory / METRICS, MetricSample))
