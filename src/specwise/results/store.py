"""Writing a bench run as it goes and reading it back, whole or torn (see `results.schema` for the layout)."""

from __future__ import annotations

import json
import os
import shlex
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel

from specwise.errors import SpecwiseError, read_model
from specwise.results.schema import MANIFEST, METRICS, REQUESTS, Manifest, MetricSample, RequestRecord, Run

RUN_FIX = "give a directory written by specwise bench"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class WriteFailed(SpecwiseError):
    """The run directory stopped taking writes (disk full, quota, I/O error)."""

    def __init__(self, path: Path, exc: OSError) -> None:
        summarize = shlex.join(["specwise", "summarize", str(path.parent)])
        super().__init__("--out", f"cannot write {path}: {exc.strerror or exc}",
                         f"free space there; `{summarize}` reads what was written")


def require_fresh(directory: Path) -> None:
    """A run directory is new or empty: two runs in one directory would read back as one."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        what = "holds a run" if (directory / MANIFEST).exists() else "is not an empty directory"
        raise SpecwiseError("--out", f"{directory} {what}", "give a new --out directory, or remove this one")


class RunWriter:
    """Appends records as they come; every line is flushed to the OS before the next request is counted.

    The manifest is written first with `complete: false`, so a run that ends in any way but `close` reads
    back as incomplete. A failed write raises `WriteFailed`; `close` still tries to finalize the manifest.
    """

    def __init__(self, directory: Path, manifest: Manifest) -> None:
        require_fresh(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.manifest = manifest
        self._write_manifest()
        self._requests: IO[str] = (directory / REQUESTS).open("w", encoding="utf-8")
        self._metrics: IO[str] = (directory / METRICS).open("w", encoding="utf-8")

    def _write_manifest(self) -> None:
        write_json_atomic(self.directory / MANIFEST, self.manifest.model_dump())

    def request(self, record: RequestRecord) -> None:
        _append(self._requests, record)

    def metric(self, sample: MetricSample) -> None:
        _append(self._metrics, sample)

    def request_line(self, line: str) -> None:
        """A record already serialized (by a worker process): written as it came."""
        _append_line(self._requests, line)

    def close(self, complete: bool, stop_reason: str | None, senders: list[dict[str, Any]] | None = None) -> None:
        for handle in (self._requests, self._metrics):
            try:
                handle.close()
            except OSError:
                pass  # a line the disk refused stays lost; the manifest below matters more
        self.manifest = self.manifest.model_copy(update={"complete": complete, "stop_reason": stop_reason,
                                                         "finished_at": now_iso(), "senders": senders or []})
        try:
            self._write_manifest()
        except OSError:
            pass  # the manifest on disk still says complete: false, which stays true


def _append(handle: IO[str], model: BaseModel) -> None:
    _append_line(handle, model.model_dump_json())


def _append_line(handle: IO[str], line: str) -> None:
    try:
        handle.write(line + "\n")
        handle.flush()
    except OSError as exc:
        raise WriteFailed(Path(handle.name), exc) from None


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a write that failed half-way leaves no stray file


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
