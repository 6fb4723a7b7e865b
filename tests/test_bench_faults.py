"""`specwise bench` against a broken server: every fault is recorded per request, the run goes on,
and what was already written stays intact and summarizable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from faultserver import FAULTS, FaultServer
from typer.testing import CliRunner

from specwise.load import BenchConfig, execute_bench
from specwise.cli import app
from specwise.results import load_run
from specwise.analysis import summarize

EXPECTED = {"reset": "stream_reset", "http429": "http_429", "http503": "http_503", "malformed": "malformed_sse",
            "nonjson": "non_json_body", "empty": "empty_choices", "stall": "timeout"}


def dataset(tmp_path, names) -> str:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"id": name, "prompt": f"say hi FAULT:{name}" if name != "ok" else "say hi"})
                            + "\n" for name in names))
    return str(path)


def check_intact(out, n: int) -> list:
    """Every line of requests.jsonl parses, indices are unique, and the summary can be computed."""
    lines = (out / "requests.jsonl").read_text().splitlines()
    assert len(lines) == n
    run = load_run(out)
    assert len(run.requests) == n and len({r.index for r in run.requests}) == n
    summarize(run)
    return run.requests


@pytest.mark.parametrize("api, workers", [("completions", 1), ("chat", 1), ("completions", 2)])
def test_each_fault_is_recorded_and_the_run_goes_on(tmp_path, api, workers):
    """Also from worker processes: each records its share's faults the same way."""
    names = ["ok", *FAULTS]
    with FaultServer(tokens=8, chunk=2, stall_s=5) as server:
        config = BenchConfig(url=server.url, api=api, concurrency=2, requests=2 * len(names), max_tokens=8,
                             dataset=dataset(tmp_path, names), stall_timeout_s=1.0, scrape_interval_s=0.5, k=1,
                             workers=workers)
        execute_bench(config, tmp_path / "run")
    records = check_intact(tmp_path / "run", 2 * len(names))
    by_prompt = {}
    for record in records:
        by_prompt.setdefault(record.prompt_id, set()).add(record.error)
    assert by_prompt.pop("ok") == {None}
    assert by_prompt == {name: {EXPECTED[name]} for name in FAULTS}
    for record in records:
        if record.prompt_id == "http429":
            assert record.retry_after_s == 3 and record.http_status == 429
        if record.prompt_id == "ok":
            assert record.chunk_tokens == [2, 2, 2, 2] and record.output_tokens == 8
            # 2 tokens per chunk at k=1: every draft accepted.
            assert record.acceptance == 1.0 and record.acceptance_source == "chunks"
    run = load_run(tmp_path / "run")
    assert run.manifest.complete and {r.sender for r in run.requests} == set(range(workers))
    assert len(run.manifest.senders) == workers


def test_connection_refused_is_recorded_per_request(tmp_path):
    with FaultServer() as server:
        url = server.url
        config = BenchConfig(url=url, concurrency=1, requests=3, max_tokens=8, dataset=dataset(tmp_path, ["ok"]))
        server.stop()  # the listening socket is gone: refused
        with pytest.raises(Exception, match="cannot reach"):
            execute_bench(config, tmp_path / "never")  # refused before the run starts: one clear error


@pytest.mark.parametrize("workers", [1, 2])
def test_server_killed_mid_run_keeps_what_was_measured(tmp_path, workers):
    with FaultServer(tokens=8, chunk=1, gap_s=0.05) as server:
        config = BenchConfig(url=server.url, concurrency=workers, requests=12, max_tokens=8,
                             dataset=dataset(tmp_path, ["ok"]), scrape_interval_s=0.2, workers=workers)
        def kill() -> None:   # once a few requests were served (worker processes take a moment to start)
            deadline = time.monotonic() + 60
            while len(server.requests) < 4 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.1)
            server.stop()

        killer = __import__("threading").Thread(target=kill)
        killer.start()
        execute_bench(config, tmp_path / "run")
        killer.join()
    records = check_intact(tmp_path / "run", 12)
    ok = [r for r in records if r.ok]
    failed = [r for r in records if not r.ok]
    assert ok and failed
    assert {r.error for r in failed} <= {"connect_error", "stream_reset"}
    # Requests before the kill are whole; those after it failed — no record in between was lost.
    assert max(r.index for r in ok) < min(r.index for r in failed if r.error == "connect_error")
    # The run does not pass for complete: the last requests and the final scrape were refused.
    manifest = load_run(tmp_path / "run").manifest
    assert not manifest.complete and manifest.stop_reason == "server_died"


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("sig, code, reason", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_or_sigterm_leaves_a_readable_incomplete_run(tmp_path, sig, code, reason, workers):
    with FaultServer(tokens=8, chunk=1, gap_s=0.05) as server:
        out = tmp_path / "run"
        # The child gets SIGINT's default disposition whatever its parent's (a shell's background job starts with
        # SIGINT ignored, and Python then raises no KeyboardInterrupt), as a bench in a terminal has.
        proc = subprocess.Popen([sys.executable, "-m", "specwise", "bench", "--url", server.url, "--concurrency", "2",
                                 "--requests", "1000", "--max-tokens", "8", "--dataset", "open", "--out", str(out),
                                 "--workers", str(workers)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            requests = out / "requests.jsonl"
            if requests.exists() and len(requests.read_text().splitlines()) >= 5:
                break
            time.sleep(0.2)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    run = load_run(out)
    assert not run.manifest.complete and run.manifest.stop_reason == reason
    assert run.manifest.finished_at is not None
    assert len(run.requests) >= 5 and all(r.ok for r in run.requests)
    assert len({r.index for r in run.requests}) == len(run.requests)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and summary["stop_reason"] == reason
    assert summary["requests"] == len(run.requests)
    again = CliRunner().invoke(app, ["summarize", str(out), "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["ok"] == len(run.requests)


def test_a_torn_last_line_is_skipped(tmp_path):
    with FaultServer() as server:
        execute_bench(BenchConfig(url=server.url, concurrency=1, requests=3, max_tokens=8,
                              dataset=dataset(tmp_path, ["ok"])), tmp_path / "run")
    with (tmp_path / "run" / "requests.jsonl").open("a") as handle:
        handle.write('{"schema_version": 1, "index": 99, "warm')  # the process died mid-write
    assert len(load_run(tmp_path / "run").requests) == 3


def test_api_key_is_sent_but_never_stored_or_printed(tmp_path, monkeypatch):
    secret = "sk-test-DO-NOT-LEAK-1234"
    monkeypatch.setenv("SPECWISE_TEST_KEY", secret)
    with FaultServer() as server:
        result = CliRunner().invoke(app, ["bench", "--url", server.url, "--concurrency", "1", "--requests", "2",
                                          "--max-tokens", "8", "--dataset", dataset(tmp_path, ["ok"]),
                                          "--api-key-env", "SPECWISE_TEST_KEY", "--out", str(tmp_path / "run")])
        assert result.exit_code == 0, result.output
        assert f"Bearer {secret}" in server.auth
    assert secret not in result.output
    for path in (tmp_path / "run").iterdir():
        assert secret not in path.read_text(), path.name


@pytest.mark.parametrize("args, field", [
    (["--rate", "-1", "--requests", "3"], "--rate"),
    (["--concurrency", "1", "--requests", "3", "--dataset", "nonesuch"], "--dataset"),
    (["--concurrency", "1", "--requests", "3", "--temperatures", "hot"], "--temperatures"),
    (["--concurrency", "1"], "--requests/--duration"),
    (["--concurrency", "0", "--requests", "3"], "--concurrency"),
    (["--concurrency", "1", "--requests", "3", "--api", "grpc"], "--api"),
    (["--concurrency", "1", "--requests", "3", "--request-timeout", "0"], "--request-timeout"),
])
def test_bad_options_give_one_line_and_exit_2(tmp_path, args, field):
    result = CliRunner().invoke(app, ["bench", "--url", "http://127.0.0.1:9", *args, "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}:"), result.output
    assert not (tmp_path / "r").exists()


def test_unreachable_url_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["bench", "--url", "http://127.0.0.1:9", "--concurrency", "1",
                                      "--requests", "1", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: --url: cannot reach http://127.0.0.1:9")
    assert len(result.output.strip().splitlines()) == 1


def test_help_documents_every_option():
    result = CliRunner().invoke(app, ["bench", "--help"], env={"COLUMNS": "200", **os.environ})
    for option in ("--url", "--api", "--concurrency", "--rate", "--arrivals", "--burstiness", "--requests",
                   "--duration", "--max-tokens", "--temperatures", "--dataset", "--k", "--out", "--json",
                   "--warmup", "--max-in-flight", "--seed", "--api-key-env", "--api-key-file", "--timeout",
                   "--request-timeout", "--workers", "--ray"):
        assert option in result.output


def test_warmup_is_left_out_of_the_results_and_of_the_counters_window(tmp_path):
    with FaultServer() as server:  # its drafts counter counts the requests it served
        execute_bench(BenchConfig(url=server.url, concurrency=2, requests=5, warmup=3, max_tokens=8,
                              dataset=dataset(tmp_path, ["ok"])), tmp_path / "run")
    run = load_run(tmp_path / "run")
    assert [r.warmup for r in sorted(run.requests, key=lambda r: r.index)] == [True] * 3 + [False] * 5
    summary = summarize(run)
    assert summary.requests == 5 and summary.warmup == 3
    assert summary.acceptance.server.drafts == 5


def test_open_loop_sends_on_schedule(tmp_path):
    with FaultServer() as server:
        execute_bench(BenchConfig(url=server.url, rate=40, arrivals="constant", requests=12, max_tokens=8,
                              dataset=dataset(tmp_path, ["ok"])), tmp_path / "run")
    records = sorted(load_run(tmp_path / "run").requests, key=lambda r: r.index)
    gaps = [b.scheduled_s - a.scheduled_s for a, b in zip(records, records[1:])]
    assert gaps == pytest.approx([0.025] * 11)
    assert all(r.sent_s >= r.scheduled_s for r in records)


@pytest.mark.parametrize("request_seeds", [False, True])
def test_request_seeds_are_sent_only_when_asked(tmp_path, request_seeds):
    with FaultServer() as server:
        execute_bench(BenchConfig(url=server.url, concurrency=1, requests=3, max_tokens=8, temperatures="1.0",
                              request_seeds=request_seeds, dataset=dataset(tmp_path, ["ok"])), tmp_path / "run")
    assert [("seed" in r) for r in server.requests] == [request_seeds] * 3
    assert all(r["temperature"] == 1.0 and r["ignore_eos"] and r["logprobs"] == 0 for r in server.requests)
