"""Start and stop a real vLLM server: argument lists (no shell), localhost by default, a log file,
a readiness wait that shows the log's tail on failure, and no orphan processes.

A launched server is closed to other users: it gets a fresh API key (`VllmServer.api_key`, held in
memory; `write_secret` stores it 0600 for a user who needs it), an environment with only what vLLM
needs (`launch_env`), and binds beyond loopback only when asked to (`ServerSpec.allow_remote`).

The same launcher serves the embedded CPU pair and any local model directory;
the argument list comes from the planner's command generator, so
`specwise serve --print-command` and what runs here cannot drift apart.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from specwise.errors import SpecwiseError
from specwise.engine.vllm import installed_vllm_version
from specwise.plan.command import SpecOptions, VllmCommand, parse_version, vllm_command

MODES = ("baseline", "draft", "ngram")
API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
READY_TIMEOUT_S = 600.0
STOP_GRACE_S = 20.0
# A measuring tool should not make its engine phone home; and a model served from
# a local directory needs no hub: on a closed network a lookup can stall for minutes.
QUIET_ENV = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# What a launched vLLM inherits of specwise's environment, and nothing else: a shell's environment holds
# other services' secrets (OPENAI_API_KEY, cloud credentials) that a model server has no use for.
INHERITED = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "PYTHONPATH",
                       "VIRTUAL_ENV", "LD_LIBRARY_PATH", "LD_PRELOAD", "XDG_CACHE_HOME", "SPECWISE_CACHE_DIR"})
INHERITED_PREFIXES = ("LC_", "VLLM_", "OMP_", "KMP_", "TORCH", "PYTORCH_", "HF_", "TRANSFORMERS", "CUDA_", "NCCL_",
                      "TRITON_")


class EngineError(RuntimeError):
    """The server did not come up or died; the message carries the tail of its log."""


@dataclass(frozen=True)
class ServerSpec:
    model: str
    mode: str = "baseline"
    draft: str | None = None
    k: int = 4
    k_schedule: tuple[tuple[int, int, int], ...] | None = None   # k by batch size (see SpecOptions)
    host: str = "127.0.0.1"
    port: int = 0                     # 0: pick a free port at start
    dtype: str | None = None           # None: the model's own (the embedded pair uses float32)
    served_model_name: str | None = None  # None: the model directory's name
    max_model_len: int = 1024
    kv_cache_space_gb: int = 2
    per_request_metrics: bool = False
    ngram_prompt_lookup_max: int = 4
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    allow_remote: bool = False         # bind a non-loopback host (see `VllmServer`)

    @property
    def model_name(self) -> str:
        return self.served_model_name or Path(self.model).name

    def options(self, launcher: tuple[str, ...] | None = None, port: int | None = None) -> SpecOptions:
        if self.mode not in MODES:
            raise SpecwiseError("--mode", f"unknown mode {self.mode!r}", f"use one of {', '.join(MODES)}")
        if self.mode == "draft" and not self.draft:
            raise SpecwiseError("--draft", "--mode draft needs a draft model", "give --draft DIR")
        extra = ["--served-model-name", self.model_name]
        if self.dtype:
            extra = ["--dtype", self.dtype, *extra]
        if self.per_request_metrics and self.mode != "baseline":
            extra += ["--per-request-spec-decode-metrics", "summary"]
        return SpecOptions(
            target=self.model, method="ngram" if self.mode == "ngram" else "draft_model",
            draft=self.draft if self.mode == "draft" else None, k=self.k, k_schedule=self.k_schedule, host=self.host,
            port=port if port is not None else (self.port or None), max_model_len=self.max_model_len,
            ngram_prompt_lookup_max=self.ngram_prompt_lookup_max, ngram_prompt_lookup_min=1,
            extra_args=(*extra, *self.extra_args),
            **({"launcher": launcher, "model_as_flag": True} if launcher else {}),
        )

    def command(self, launcher: tuple[str, ...] | None = None, port: int | None = None,
                vllm_version: str | None = None) -> VllmCommand:
        """The launch command; without `launcher`, the `vllm serve` form for a GPU machine."""
        return vllm_command(self.options(launcher, port), parse_version(vllm_version or installed_vllm_version()),
                            speculative=self.mode != "baseline")


def embedded(mode: str = "draft", k: int = 4, log: Any = print, build: bool = True, **overrides: Any) -> ServerSpec:
    """A server spec for the embedded pair (built on first use unless `build=False`): float32 target, distilled draft."""
    from specwise.engine.pair import ensure_pair, pair_paths

    pair = ensure_pair(log) if build else pair_paths()
    return ServerSpec(model=str(pair.target), mode=mode, draft=str(pair.draft) if mode == "draft" else None, k=k,
                      **{"dtype": "float32", "served_model_name": "specwise-target", "per_request_metrics": True,
                         **overrides})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def launch_env(spec: ServerSpec, api_key: str, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The launched server's environment: what vLLM needs of ours (`INHERITED`), its settings and its key.
    The key goes through VLLM_API_KEY, not --api-key: argv is readable by every local user (ps, /proc) and
    vLLM logs its non-default arguments to the log file."""
    local = all(Path(m).is_dir() for m in (spec.model, spec.draft) if m)
    kept = {k: v for k, v in environ.items() if k in INHERITED or k.startswith(INHERITED_PREFIXES)}
    return {**kept, **QUIET_ENV, **(OFFLINE_ENV if local else {}),
            "VLLM_CPU_KVCACHE_SPACE": str(spec.kv_cache_space_gb), "TOKENIZERS_PARALLELISM": "false",
            "VLLM_API_KEY": api_key}


def write_secret(path: Path, text: str) -> None:
    """`text` in a file only its owner can read, from its creation on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT leaves an existing file's mode as it was
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 20) -> str:
    try:
        with path.open(errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines))
    except OSError:
        return ""


class VllmServer:
    """A vLLM server process: `with VllmServer(spec, log_dir) as server: server.url, server.api_key ...`.

    Its /v1 API takes `api_key`, generated here (vLLM leaves /health and /metrics open). A host other
    than loopback needs `spec.allow_remote`."""

    def __init__(self, spec: ServerSpec, log_dir: Path, python: str = sys.executable,
                 ready_timeout_s: float = READY_TIMEOUT_S) -> None:
        if not (is_loopback(spec.host) or spec.allow_remote):
            raise SpecwiseError("--host", f"{spec.host} would expose the server beyond this machine",
                                "add --allow-remote if that is meant (the server takes a generated API key)")
        self.spec = spec
        self.api_key = secrets.token_urlsafe(32)
        self.log_dir = log_dir
        self.python = python
        self.ready_timeout_s = ready_timeout_s
        self.port = spec.port or free_port(spec.host)
        self.log_path = log_dir / f"vllm-{spec.mode}-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.spec.host}:{self.port}"

    @property
    def argv(self) -> list[str]:
        return self.spec.command((self.python, "-m", API_SERVER_MODULE), self.port).argv

    def start(self) -> VllmServer:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = launch_env(self.spec, self.api_key)
        with self.log_path.open("wb") as log:
            # A new session makes the server and its workers one process group,
            # so stop() can take down the whole tree.
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, on_tick: object = None) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.process.returncode if self.process else None
                raise EngineError(f"vLLM exited with code {code} before it was ready; log {self.log_path}:\n"
                                  f"{tail(self.log_path)}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if callable(on_tick):
                on_tick()
            time.sleep(0.5)
        self.stop()
        raise EngineError(f"vLLM was not ready after {self.ready_timeout_s:.0f} s; log {self.log_path}:\n"
                          f"{tail(self.log_path)}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                pass
        # Workers that outlived the parent are still in its process group; the
        # caller is promised that none of them is left when stop() returns.
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.1)

    def __enter__(self) -> VllmServer:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
