"""Issue 12 (hardening), results and secrets: credentials in URLs reach no file and no output, a run
directory holds one run, every ending (SIGTERM, a dead server, a full disk) leaves a finalized manifest,
and what the reports embed is escaped and shell-quoted."""

from __future__ import annotations

import errno
import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faultserver import FaultServer
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from specwise.cli import app
from specwise.errors import SpecwiseError
from specwise.load import BenchConfig, execute_bench
from specwise.results import load_run
from specwise.urls import has_userinfo, redact, request_url

PASSWORD = "hunter2-DO-NOT-LEAK"
QUERY_SECRET = "qs-DO-NOT-LEAK"
KEY = "sk-bearer-DO-NOT-LEAK"


def dataset(tmp_path: Path) -> str:
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps({"id": "ok", "prompt": "say hi"}) + "\n")
    return str(path)


def every_byte_under(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def assert_nowhere(secret: str, root: Path, *outputs: str) -> None:
    files = every_byte_under(root)
    assert files
    leaked = [str(p) for p, data in files.items() if secret.encode() in data]
    assert leaked == [], f"{secret} written to {leaked}"
    for text in outputs:
        assert secret not in text


@pytest.mark.parametrize("url, shown", [
    ("http://alice:pw@10.0.0.5:8000", "http://***@10.0.0.5:8000"),
    ("https://:pw@host/v1", "https://***@host/v1"),
    ("alice:pw@host:8000", "***@host:8000"),
    ("http://host:8000/?api_key=abc&model=x", "http://host:8000/?api_key=***&model=x"),
    ("http://host/?token=abc#frag", "http://host/?token=***#frag"),
    ("http://u:p@host/?X-Auth=1&Signature=2&page=3", "http://***@host/?X-Auth=***&Signature=***&page=3"),
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ("http://host/a@b", "http://host/a@b"),
])
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert redact(redact(url)) == shown


_SECRET_TEXT = st.text(st.characters(codec="ascii", exclude_characters="@/?#&=\r\n\t "), min_size=6, max_size=30)


@given(user=_SECRET_TEXT, password=_SECRET_TEXT, token=_SECRET_TEXT,
       param=st.sampled_from(["api_key", "apikey", "token", "access_token", "key", "secret", "X-Amz-Signature"]))
def test_redacted_urls_hold_no_secret(user: str, password: str, token: str, param: str) -> None:
    url = f"https://{user}:{password}@models.example:8443/v1?{param}={token}&model=m"
    assert redact(url) == f"https://***@models.example:8443/v1?{param}=***&model=m"
    assert request_url(url) == f"https://models.example:8443/v1?{param}={token}&model=m"


def test_userinfo_is_stripped_from_what_is_sent() -> None:
    assert request_url("http://alice:pw@10.0.0.5:8000/") == "http://10.0.0.5:8000/"
    assert request_url("http://10.0.0.5:8000/?token=t") == "http://10.0.0.5:8000/?token=t"
    assert has_userinfo("http://alice:pw@h") and not has_userinfo("http://h/a@b")


def test_credentials_in_the_url_reach_no_file_and_no_output(tmp_path: Path, monkeypatch) -> None:
    """A bench run and an experiment with its report, all on a URL with a password: every byte written
    and everything printed is free of it; the password is not sent as Basic auth, the key is sent."""
    monkeypatch.setenv("SPECWISE_TEST_KEY", KEY)
    runner = CliRunner()
    with FaultServer() as server:
        url = f"http://alice:{PASSWORD}@127.0.0.1:{server.port}"
        bench = runner.invoke(app, ["bench", "--url", url, "--concurrency", "1", "--requests", "3",
                                    "--max-tokens", "8", "--dataset", dataset(tmp_path), "--api-key-env",
                                    "SPECWISE_TEST_KEY", "--out", str(tmp_path / "bench")])
        assert bench.exit_code == 0, bench.output
        summarized = runner.invoke(app, ["summarize", str(tmp_path / "bench"), "--json"])
        assert summarized.exit_code == 0

        exp = tmp_path / "exp.yaml"
        exp.write_text(f"""
name: leak-check
servers:
  - {{name: base, role: baseline, url: "{url}", api_key_env: SPECWISE_TEST_KEY}}
  - {{name: spec, url: "{url}", k: 1, api_key_env: SPECWISE_TEST_KEY}}
workloads:
  - {{name: code, dataset: "{dataset(tmp_path)}", temperatures: "0"}}
loads: {{concurrency: [1]}}
repetitions: 1
requests: 6
max_tokens: 8
""")
        run = runner.invoke(app, ["run", str(exp), "--out", str(tmp_path / "experiment")])
        assert run.exit_code == 0, run.output
        report = runner.invoke(app, ["report", str(tmp_path / "experiment")])
        assert report.exit_code == 0, report.output
    assert "warning: --url: the URL carries credentials" in bench.output
    assert "warning: servers.base.url" in run.output
    assert not any(a and a.startswith("Basic") for a in server.auth)
    assert all(a == f"Bearer {KEY}" for a in server.auth)
    manifest = json.loads((tmp_path / "bench" / "manifest.json").read_text())
    assert manifest["url"] == manifest["config"]["url"] == f"http://***@127.0.0.1:{server.port}"
    assert {"report.html", "report.md", "report.json", "experiment.json", "findings.json"} <= {
        p.name for p in (tmp_path / "experiment").iterdir()}
    for secret in (PASSWORD, KEY):
        assert_nowhere(secret, tmp_path / "bench", bench.output, summarized.output)
        assert_nowhere(secret, tmp_path / "experiment", run.output, report.output)


def test_secrets_in_a_prescribed_command_are_redacted_and_it_is_shell_quoted(tmp_path: Path) -> None:
    from specwise.experiment import parse_config
    from specwise.experiment.controls import prescription

    config = parse_config(f"""
name: q
servers:
  - {{name: base, role: baseline, url: "http://u:{PASSWORD}@h:1/?api_key={QUERY_SECRET}"}}
  - {{name: spec, url: "http://h:2/?token={QUERY_SECRET}", k: 2}}
workloads:
  - {{name: chat, dataset: mixed, temperatures: "0.1:60,1.0:40"}}
loads: {{concurrency: [1]}}
requests: 6
""")
    command = prescription(config, config.servers[0], config.workloads[0], 1.0)
    assert PASSWORD not in command and QUERY_SECRET not in command
    argv = shlex.split(command)
    assert argv[:4] == ["specwise", "bench", "--url", "http://***@h:1/?api_key=***"]
    dumped = json.dumps(config.model_dump(mode="json"))
    assert PASSWORD not in dumped and QUERY_SECRET not in dumped
    assert config.servers[1].url == f"http://h:2/?token={QUERY_SECRET}"  # what requests use is untouched


def test_an_out_directory_holding_a_run_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["--concurrency", "1", "--requests", "2", "--max-tokens", "8", "--dataset", dataset(tmp_path),
            "--out", str(out)]
    (out).mkdir()  # an empty directory is fine
    with FaultServer() as server:
        first = CliRunner().invoke(app, ["bench", "--url", server.url, *args])
        assert first.exit_code == 0, first.output
        before = every_byte_under(out)
        again = CliRunner().invoke(app, ["bench", "--url", server.url, *args])
    assert again.exit_code == 2
    assert again.output.strip().splitlines() == [f"error: --out: {out} holds a run; give a new --out directory, "
                                                 "or remove this one"]
    assert every_byte_under(out) == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(SpecwiseError, match="is not an empty directory"):
        execute_bench(BenchConfig(url="http://127.0.0.1:9", concurrency=1, requests=1), tmp_path / "other")


def test_an_experiment_out_directory_holding_something_else_is_refused(tmp_path: Path) -> None:
    from specwise.experiment import parse_config
    from specwise.experiment.layout import prepare

    config = parse_config("""
name: ab
servers:
  - {name: base, role: baseline, url: "http://127.0.0.1:8000"}
  - {name: spec, url: "http://127.0.0.1:8001", k: 4}
workloads:
  - {name: code, dataset: structured, temperatures: "0"}
loads: {concurrency: [1]}
requests: 6
""")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "manifest.json").write_text("{}")
    with pytest.raises(SpecwiseError, match="holds something else than an experiment"):
        prepare(config, tmp_path / "bench")
    prepare(config, tmp_path / "fresh")
    prepare(config, tmp_path / "fresh")  # the same experiment: resumed


def _disk_fills_after(monkeypatch, lines: int, manifest_too: bool = False) -> None:
    """requests.jsonl takes `lines` lines, then the disk is full (and, with `manifest_too`, for the
    manifest's final write as well)."""
    from specwise.results import store

    real_append, real_write_text = store._append, Path.write_text
    written = {"n": 0}

    class Full:
        def __init__(self, name: str) -> None:
            self.name = name

        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self) -> None:
            pass

    def append(handle, model) -> None:
        if handle.name.endswith("requests.jsonl"):
            written["n"] += 1
            if written["n"] > lines:
                return real_append(Full(handle.name), model)
        return real_append(handle, model)

    def write_text(path: Path, text: str, *args, **kwargs) -> int:
        if manifest_too and written["n"] > lines and path.name == ".manifest.json.tmp":
            real_write_text(path, text[:10], *args, **kwargs)  # the file is created, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_text(path, text, *args, **kwargs)

    monkeypatch.setattr(store, "_append", append)
    monkeypatch.setattr(Path, "write_text", write_text)


def test_a_full_disk_finalizes_the_manifest_and_leaves_a_summarizable_run(tmp_path: Path, monkeypatch) -> None:
    _disk_fills_after(monkeypatch, 3)
    out = tmp_path / "run"
    with FaultServer() as server:
        result = CliRunner().invoke(app, ["bench", "--url", server.url, "--concurrency", "1", "--requests", "20",
                                          "--max-tokens", "8", "--dataset", dataset(tmp_path), "--out", str(out)])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: --out: cannot write {out / 'requests.jsonl'}: No space")
    run = load_run(out)
    assert not run.manifest.complete and run.manifest.stop_reason == "write_failed"
    assert len(run.requests) == 3
    monkeypatch.undo()
    summarized = CliRunner().invoke(app, ["summarize", str(out), "--json"])
    assert summarized.exit_code == 0 and json.loads(summarized.stdout)["ok"] == 3


def test_a_full_disk_that_refuses_the_manifest_too_leaves_it_incomplete(tmp_path: Path, monkeypatch) -> None:
    _disk_fills_after(monkeypatch, 2, manifest_too=True)
    out = tmp_path / "run"
    with FaultServer() as server:
        with pytest.raises(SpecwiseError, match="No space left"):
            execute_bench(BenchConfig(url=server.url, concurrency=1, requests=10, max_tokens=8,
                                      dataset=dataset(tmp_path)), out)
    run = load_run(out)
    assert not run.manifest.complete and run.manifest.stop_reason is None  # the first manifest, still true
    assert len(run.requests) == 2
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "metrics.jsonl", "requests.jsonl"]


def test_a_server_that_dies_ends_the_run_early_and_the_cli_exits_3(tmp_path: Path) -> None:
    from specwise.load.bench import SERVER_DEAD_AFTER

    out = tmp_path / "run"
    with FaultServer(tokens=8, chunk=1, gap_s=0.02) as server:
        killer = __import__("threading").Timer(1.0, server.stop)
        killer.start()
        result = CliRunner().invoke(app, ["bench", "--url", server.url, "--concurrency", "2", "--requests", "500",
                                          "--max-tokens", "8", "--dataset", dataset(tmp_path), "--scrape-interval",
                                          "0.2", "--out", str(out)])
        killer.join()
    assert result.exit_code == 3, result.output
    assert "INCOMPLETE (server_died)" in result.output and "stopped accepting connections" in result.output
    run = load_run(out)
    assert not run.manifest.complete and run.manifest.stop_reason == "server_died"
    ok = [r for r in run.requests if r.ok]
    refused = [r for r in run.requests if r.error == "connect_error"]
    assert ok and len(refused) >= SERVER_DEAD_AFTER
    assert len(run.requests) < 100  # it stopped sending once the server was gone
    assert json.loads((out / "summary.json").read_text())["stop_reason"] == "server_died"


def test_report_md_escapes_names_and_commands(tmp_path: Path) -> None:
    from specwise.report.html_page import html
    from specwise.report.markdown_page import markdown
    from test_safety_net_report import findings  # the hostile findings of bug 12

    page_md, page_html = markdown(findings()), html(findings())
    for page in (page_md, page_html):
        assert "<script>" not in page and "<b>bold" not in page
    assert "&lt;script&gt;" in page_md


def test_terminal_verdicts_show_names_and_reasons_as_written() -> None:
    from rich.console import Console

    from specwise.report.console import render_verdicts
    from test_safety_net_report import findings

    hostile = findings()
    hostile.findings[0].verdict.headline = "use [bold red]this[/] or data[x].jsonl"
    console = Console(record=True, width=300)
    render_verdicts(hostile, console)
    assert "use [bold red]this[/] or data[x].jsonl" in console.export_text()


def test_sigterm_stops_an_experiment_which_then_resumes(tmp_path: Path) -> None:
    """`specwise run` on SIGTERM: the cell in flight is marked terminated, exit 143; the same command
    then redoes that cell and keeps the finished ones."""
    out = tmp_path / "exp"
    with FaultServer(tokens=8, chunk=1, gap_s=0.05) as server:
        exp = tmp_path / "exp.yaml"
        exp.write_text(f"""
name: stop-resume
servers:
  - {{name: base, role: baseline, url: "{server.url}"}}
  - {{name: spec, url: "{server.url}", k: 1}}
workloads:
  - {{name: code, dataset: "{dataset(tmp_path)}", temperatures: "0"}}
loads: {{concurrency: [1]}}
repetitions: 1
requests: 12
max_tokens: 8
""")
        proc = subprocess.Popen([sys.executable, "-m", "specwise", "run", str(exp), "--out", str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = out / "cells" / "code" / "c1" / "base" / "rep0"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            requests = first / "requests.jsonl"
            if requests.exists() and len(requests.read_text().splitlines()) >= 2:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 143, stdout + stderr
        manifest = load_run(first).manifest
        assert not manifest.complete and manifest.stop_reason == "terminated"
        server.gap_s = 0.0
        again = CliRunner().invoke(app, ["run", str(exp), "--out", str(out)])
    assert again.exit_code == 0, again.output
    redone = load_run(first)
    assert redone.manifest.complete and len([r for r in redone.requests if not r.warmup]) == 12
    assert (out / "report.md").exists()


def test_an_experiment_whose_server_dies_stops_naming_it(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    with FaultServer(tokens=8, chunk=1, gap_s=0.02) as server:
        exp = tmp_path / "exp.yaml"
        exp.write_text(f"""
name: dies
servers:
  - {{name: base, role: baseline, url: "{server.url}"}}
  - {{name: spec, url: "{server.url}", k: 1}}
workloads:
  - {{name: code, dataset: "{dataset(tmp_path)}", temperatures: "0"}}
loads: {{concurrency: [2]}}
repetitions: 1
requests: 400
max_tokens: 8
""")
        killer = __import__("threading").Timer(1.0, server.stop)
        killer.start()
        result = CliRunner().invoke(app, ["run", str(exp), "--out", str(out)])
        killer.join()
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == ["error: servers.base: stopped accepting connections during base · code · c2 · rep 1; check "
                      "it (a launched server's log is under logs/), then rerun the same command: finished cells are "
                      "kept"]
    manifest = load_run(out / "cells" / "code" / "c2" / "base" / "rep0").manifest
    assert not manifest.complete and manifest.stop_reason == "server_died"
    assert not (out / "cells" / "code" / "c2" / "spec").exists()  # nothing more was sent to a dead server
