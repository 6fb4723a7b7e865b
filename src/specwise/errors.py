"""The one error type users see: it names the field at fault and the fix. Beside it, the checks every room
runs where it reads input — numbers, files, URLs, output directories — so that each failure becomes one."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

    M = TypeVar("M", bound=BaseModel)


class SpecwiseError(ValueError):
    """Bad input. Rendered by the CLI as one line and a non-zero exit."""

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(self.line())

    def line(self) -> str:
        text = f"{self.field}: {self.problem}"
        return f"{text}; {self.fix}" if self.fix else text


def shown(value: object) -> str:
    """A value as an error message quotes it: a pasted megabyte or a 400-digit number stays one short line."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else f"{text[:40]}… ({len(text)} characters)"


def check_number(field: str, value: float, low: float = -math.inf, high: float = math.inf, fix: str = "",
                 *, above: bool = False) -> float:
    """`value` when it is finite and in [low, high] (`above`: in (low, high]); else a SpecwiseError naming `field`.
    NaN passes every comparison of the form `value < low`, so the test is written the other way round."""
    finite = isinstance(value, int) or math.isfinite(value)
    if finite and (value > low if above else value >= low) and value <= high:
        return value
    if high == math.inf:
        bounds = f"{'>' if above else '>='} {_bound(low)}"
    else:
        bounds = f"in {'(' if above else '['}{_bound(low)}, {_bound(high)}]"
    raise SpecwiseError(field, f"must be a finite number {bounds}, got {shown(value)}", fix)


def _bound(x: float) -> str:
    return f"{int(x):_}" if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def field_path(loc: tuple[Any, ...], root: str = "experiment") -> str:
    """pydantic's error location as a field path: ('servers', 0, 'k') → servers[0].k."""
    path = ""
    for part in loc:
        if isinstance(part, str) and part.startswith("function-"):
            continue  # a validator's name, not a field
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or root


def validation_error(exc: ValidationError, source: str, fix: str) -> SpecwiseError:
    """The first problem pydantic found, naming its field inside `source` (a file or a flag)."""
    err = exc.errors()[0]
    return SpecwiseError(field_path(tuple(err["loc"]), source), err["msg"].removeprefix("Value error, "), fix)


def read_text(path: Path, field: str, fix: str, limit: int | None = None) -> str:
    """A file users handed in, as UTF-8 text; a missing, unreadable, binary or (over `limit` bytes) oversized file
    is one error naming the flag or field and the file."""
    try:
        if limit is not None and path.stat().st_size > limit:
            raise SpecwiseError(field, f"{path} is larger than {limit // 1024} KiB", fix)
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecwiseError(field, f"cannot read {path}: {exc.strerror or exc}", fix) from None
    except UnicodeDecodeError as exc:
        raise SpecwiseError(field, f"{path} is not UTF-8 text (byte {exc.start})", "save it as UTF-8") from None


def parse_json(text: str, field: str, source: str, fix: str) -> Any:
    """JSON from a file; invalid or absurdly nested JSON (the parser recurses) is one error."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SpecwiseError(field, f"{source} is not valid JSON ({exc})", fix) from None
    except RecursionError:
        raise SpecwiseError(field, f"{source} is nested too deeply", fix) from None


def read_model(path: Path, model: type[M], field: str, fix: str) -> M:
    """A file specwise wrote, read back into its model: a missing, truncated or edited file names itself."""
    from pydantic import ValidationError

    text = read_text(path, field, fix)
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        if exc.errors()[0]["type"] == "json_invalid":
            raise SpecwiseError(field, f"{path} is not valid JSON (truncated?)", fix) from None
        inner = validation_error(exc, "", fix)
        raise SpecwiseError(field, f"{path}{f' at {inner.field}' if inner.field else ''}: {inner.problem}",
                            fix) from None
    except RecursionError:
        raise SpecwiseError(field, f"{path} is nested too deeply", fix) from None


def check_out_dir(path: Path, field: str = "--out") -> Path:
    """Fail before any work when `path` cannot become a writable directory; leaves nothing behind."""
    fix = "give a writable directory path"
    for part in path.parts:
        if len(os.fsencode(part)) > 255:   # NAME_MAX of every common file system
            raise SpecwiseError(field, f"a name in {shown(str(path))} is longer than 255 bytes", fix)
    if path.exists() and not path.is_dir():
        raise SpecwiseError(field, f"{path} exists and is not a directory", fix)
    ancestor = path.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise SpecwiseError(field, f"{ancestor} is not a directory", fix)
    try:
        # A real try, not os.access: root passes that everywhere, and a read-only or virtual file system
        # (/proc, a full disk) says no only when asked to create.
        os.rmdir(tempfile.mkdtemp(prefix=".specwise-probe-", dir=ancestor))
    except OSError as exc:
        raise SpecwiseError(field, f"cannot create a directory in {ancestor}: {exc.strerror or exc}", fix) from None
    return path


def check_url(url: str, field: str = "--url") -> str:
    """An http(s) server root with a host and a valid port, checked before anything is sent (httpx would raise
    on a bad port only when the first request is built)."""
    from urllib.parse import urlsplit

    fix = "write it like http://127.0.0.1:8000"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (reading it validates it)
    except ValueError as exc:
        raise SpecwiseError(field, f"{shown(url)} is not a URL ({exc})", fix) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SpecwiseError(field, f"{shown(url)} is not an http(s) URL with a host", fix)
    if any(c.isspace() or not c.isprintable() for c in url):
        raise SpecwiseError(field, f"{shown(url)} holds spaces or control characters", fix)
    return url
