"""`specwise serve`: a real vLLM server — the embedded pair or local model directories — until Ctrl-C."""

from __future__ import annotations

import shlex
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from specwise.cli import app
from specwise.engine import require_vllm
from specwise.engine.server import MODES, EngineError, ServerSpec, VllmServer, embedded, is_loopback, write_secret
from specwise.errors import SpecwiseError, check_number, check_out_dir

EXIT_ENGINE_FAILED = 1


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@app.command()
def serve(
    mode: str = typer.Option("draft", "--mode", help=f"{' | '.join(MODES)}: no speculation, a draft model, or "
                             "n-gram prompt lookup."),
    k: int = typer.Option(4, "--k", help="Speculative tokens per step."),
    port: int = typer.Option(8000, "--port", help="Port to listen on (0: any free port)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; any but loopback (e.g. 0.0.0.0) "
                             "exposes the server and needs --allow-remote."),
    allow_remote: bool = typer.Option(False, "--allow-remote", help="Allow a --host reachable from other "
                                      "machines (the server still requires its generated API key)."),
    model: Optional[str] = typer.Option(None, "--model", help="Target model directory (default: the embedded "
                                        "pair's target, built on first use)."),
    draft: Optional[str] = typer.Option(None, "--draft", help="Draft model directory for --mode draft (default "
                                        "with the embedded target: its distilled draft)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="Weights dtype (default: float32 for the embedded "
                                        "pair, the model's own otherwise)."),
    max_model_len: int = typer.Option(1024, "--max-model-len", help="Context length."),
    kv_cache_gb: int = typer.Option(2, "--kv-cache-gb", help="KV cache size on the CPU (VLLM_CPU_KVCACHE_SPACE)."),
    log_dir: Path = typer.Option(Path("specwise-logs"), "--log-dir", help="Where the server's log goes."),
    ready_timeout: float = typer.Option(900.0, "--ready-timeout", help="Seconds to wait for /health."),
    print_command: bool = typer.Option(False, "--print-command", help="Print the equivalent `vllm serve` "
                                       "command for a GPU machine and exit."),
    vllm_version: Optional[str] = typer.Option(None, "--vllm-version", help="vLLM version for --print-command "
                                               "(default: the installed one, else the newest known)."),
) -> None:
    """Start a real vLLM server (CPU build here, any vLLM elsewhere), wait until it answers, keep it up until Ctrl-C."""
    # All before anything is built or started, --print-command or not.
    check_number("--k", k, 1, 16, "use e.g. --k 4")
    check_number("--port", port, 0, 65535, "e.g. --port 8000, or 0 for any free port")
    check_number("--max-model-len", max_model_len, 1, 100_000_000, "a number of tokens, e.g. 1024")
    check_number("--kv-cache-gb", kv_cache_gb, 1, 1_000_000, "GiB of memory for the KV cache, e.g. 2")
    check_number("--ready-timeout", ready_timeout, 1, fix="seconds (vLLM takes at least a few), e.g. 900")
    if not print_command:
        check_out_dir(log_dir, "--log-dir")
    console = Console(stderr=True)
    common = dict(k=k, host=host, port=port, max_model_len=max_model_len, kv_cache_space_gb=kv_cache_gb,
                  allow_remote=allow_remote)
    if model is None:
        if draft is not None:
            raise SpecwiseError("--draft", "a draft needs its own target", "give --model TARGET_DIR too")
        spec = embedded(mode, build=False, **common, **({"dtype": dtype} if dtype else {}))
    else:
        spec = ServerSpec(model=model, mode=mode, draft=draft, dtype=dtype, **common)
    spec.options()  # validates --mode / --draft before the pair is built or anything starts
    if print_command:
        command = spec.command(vllm_version=vllm_version)
        print(command.shell)
        for note in command.notes:
            console.print(f"note: {note}", highlight=False, markup=False)
        return
    require_vllm()
    if model is None:
        from specwise.engine.pair import ensure_pair

        ensure_pair(lambda msg: console.print(msg, highlight=False, markup=False))  # the paths `spec` names, built on first use
    server = VllmServer(spec, log_dir, ready_timeout_s=ready_timeout)
    if not is_loopback(host):
        console.print(f"[bold yellow]warning:[/] --host {escape(host)}: the server is reachable from other machines; "
                      "only its API key keeps them out", highlight=False)
    log_dir.mkdir(parents=True, exist_ok=True)
    key_file = server.log_path.with_suffix(".key")
    write_secret(key_file, server.api_key)
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        started = time.monotonic()
        # Paths and names are the user's words: escaped, so `[` in a directory name is text, not markup.
        log = escape(str(server.log_path))
        with console.status(f"starting vLLM ({mode}) on {escape(server.url)}") as status:
            server.start()
            server.wait_ready(on_tick=lambda: status.update(
                f"starting vLLM ({mode}) on {escape(server.url)} — {time.monotonic() - started:.0f} s, log {log}"))
        console.print(f"[green]ready[/] in {time.monotonic() - started:.0f} s: {escape(server.url)} — model "
                      f"[bold]{escape(spec.model_name)}[/], mode {mode}{f', k={k}' if mode != 'baseline' else ''}; "
                      f"log {log}. Ctrl-C stops it.", highlight=False)
        bench = shlex.join(["specwise", "bench", "--url", server.url, "--api-key-file", str(key_file)])
        console.print(f"its API key is in {key_file} (readable by you only): {bench}", highlight=False,
                      soft_wrap=True, markup=False)
        while server.alive():
            time.sleep(0.5)
        raise EngineError(f"vLLM exited with code {server.process.returncode if server.process else None}; "
                          f"log {server.log_path}")
    except KeyboardInterrupt:
        console.print("stopping vLLM …")
    except EngineError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(EXIT_ENGINE_FAILED) from None
    finally:
        server.stop()
        key_file.unlink(missing_ok=True)  # the key dies with its server
        signal.signal(signal.SIGTERM, previous)
